"""MLflow tracking on a real sqlite store: run hierarchy, params, metrics, tags, artifacts, resume.

Each test trains a real (tiny) model with the real ``SpectralMonitor`` and ``MlflowTrialLogger``.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from numpy.testing import assert_allclose

mlflow = pytest.importorskip("mlflow")

from htsweep.analysis.aggregate import model_phase  # noqa: E402
from htsweep.services.tracking import (  # noqa: E402
    TrackingConfig,
    default_tracking_uri,
    end_sweep_run,
    init_store,
    start_sweep_run,
)
from htsweep.sweeps.trial_logger import MlflowTrialLogger  # noqa: E402
from htsweep.trainers.callbacks import Callback  # noqa: E402
from htsweep.trainers.monitor import SpectralMonitor  # noqa: E402
from htsweep.trainers.train import Trainer  # noqa: E402


@pytest.fixture()
def tracking(tmp_path, sqlite_uri):
    cfg = TrackingConfig.for_workdir(tmp_path, experiment="sweep-test", figure_every=2)
    assert cfg.tracking_uri == sqlite_uri
    init_store(cfg.tracking_uri)
    # The fluent mlflow.search_runs reads the global URI; point it here and restore it after.
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(cfg.tracking_uri)
    yield cfg
    mlflow.set_tracking_uri(previous)


@pytest.fixture()
def fit(tiny_train_config):
    """Train a tiny model with the monitor and a trial logger; return (trainer, logger)."""

    def run(cfg, trial_id, *, parent=None, extra=(), **train):
        logger = MlflowTrialLogger(cfg, trial_id=trial_id, params={"lr": 0.05, "optim": {"name": "sgd"}},
                                   parent_run_id=parent)
        trainer = Trainer(tiny_train_config(**train), callbacks=[SpectralMonitor(), *extra, logger])
        trainer.fit()
        return trainer, logger

    return run


def test_default_store_is_sqlite_in_workdir(tmp_path, monkeypatch):
    assert default_tracking_uri(tmp_path) == f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:1")
    assert TrackingConfig.for_workdir(tmp_path, experiment="e").tracking_uri == "http://127.0.0.1:1"


def test_tracking_uri_precedence(tmp_path, monkeypatch):
    """spec.tracking.uri, then $HTSWEEP_TRACKING_URI, then $MLFLOW_TRACKING_URI, then sqlite."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:1")
    monkeypatch.setenv("HTSWEEP_TRACKING_URI", "http://127.0.0.1:2")
    assert default_tracking_uri(tmp_path) == "http://127.0.0.1:2"
    assert default_tracking_uri(tmp_path, "http://127.0.0.1:3") == "http://127.0.0.1:3"
    assert TrackingConfig.for_workdir(tmp_path, experiment="e").tracking_uri == "http://127.0.0.1:2"


def test_parent_run_is_per_sweep_not_per_experiment(tracking):
    first = start_sweep_run(tracking, sweep_id="sweep-a")
    end_sweep_run(tracking, first, status="FINISHED")
    second = start_sweep_run(tracking, sweep_id="sweep-b")  # same spec again (or --overwrite)
    assert second != first
    assert start_sweep_run(tracking, sweep_id="sweep-a") == first  # resume re-opens its own
    client = mlflow.MlflowClient(tracking.tracking_uri)
    assert client.get_run(second).info.status == "RUNNING"


def test_flush_buffers_timeout_bounds_the_whole_call(tmp_path):
    import time

    from htsweep.services.buffer import BufferedClient
    from htsweep.services.mlflow_server import free_port
    from htsweep.services.tracking import flush_buffers

    down = TrackingConfig(f"http://127.0.0.1:{free_port()}", experiment="exp", buffer_dir=str(tmp_path / "buf"))
    for trial in "abcd":
        buf = BufferedClient(down.tracking_uri, journal=tmp_path / "buf" / f"{trial}.jsonl", retry_interval=60.0)
        buf.submit({"op": "ensure_run", "ref": f"local:{trial}", "experiment": "exp", "match": ["trial_id", trial]})
    t0 = time.monotonic()
    assert flush_buffers(down, timeout=2.5) == 4
    # Per journal, 4 journals would take at least 4 x 2 s (a retry every second).
    assert time.monotonic() - t0 < 6.0
    with pytest.raises(ValueError, match="figure_every must be >= 0"):
        TrackingConfig("sqlite:///x.db", figure_every=-1)


def test_trial_run_records_everything_and_is_searchable(tracking, tmp_path, fit):
    parent = start_sweep_run(tracking, params={"space": {"lr": [0.01, 0.1]}})
    assert start_sweep_run(tracking) == parent  # re-opened on resume, not duplicated
    trainer, logger = fit(tracking, "trial_00001", parent=parent, steps=40)
    client = mlflow.MlflowClient(tracking.tracking_uri)
    run = client.get_run(logger.run_id)
    exp = client.get_experiment_by_name("sweep-test")
    assert run.info.experiment_id == exp.experiment_id
    assert exp.artifact_location.startswith((tmp_path.resolve() / "mlartifacts").as_uri())

    # Hierarchy and identity.
    assert run.data.tags["mlflow.parentRunId"] == parent
    assert run.data.tags["trial_id"] == "trial_00001"
    assert run.info.status == "FINISHED"
    # Hyperparameters: the trial's config (flattened) and the full TrainConfig.
    assert run.data.params["lr"] == "0.05" and run.data.params["optim.name"] == "sgd"
    assert run.data.params["train.batch_size"] == "32" and run.data.params["train.model"] == "mlp3"

    # Per-layer and aggregate metrics at every monitoring step, with explicit steps.
    rows = trainer.spectral.rows
    names = [r["name"] for r in rows]
    for key in ("alpha", "alpha_hill", "stable_rank", "mp_soft_rank", "n_spikes", "phase_code"):
        hist = client.get_metric_history(logger.run_id, f"{key}/{names[0]}")
        assert sorted(m.step for m in hist) == [10, 20, 30, 40], key
    for key in ("alpha_mean", "alpha_weighted_mean", "frac_heavy_tailed", "phase_code", "test_acc", "train_loss"):
        assert sorted(m.step for m in client.get_metric_history(logger.run_id, key)) == [10, 20, 30, 40], key
    last_alpha = {m.step: m.value for m in client.get_metric_history(logger.run_id, f"alpha/{names[-1]}")}
    assert_allclose(last_alpha[40], rows[-1]["alpha"], rtol=1e-12, equal_nan=True)

    # Phase tags: per layer (latest) and for the model, by analysis.aggregate.model_phase.
    phase = model_phase(rows)
    assert run.data.tags["phase"] == phase
    assert all(run.data.tags[f"phase.{r['name']}"] == r["phase"] for r in rows)
    found = mlflow.search_runs(experiment_ids=[exp.experiment_id], filter_string=f"tags.phase = '{phase}'",
                               output_format="list")
    assert [r.info.run_id for r in found] == [logger.run_id]
    other = "heavy_tailed" if phase != "heavy_tailed" else "random_like"
    assert mlflow.search_runs(experiment_ids=[exp.experiment_id], filter_string=f"tags.phase = '{other}'",
                              output_format="list") == []

    # Artifacts: eigenvalues per step, figures every 2nd monitoring step and at the end, a summary.
    listed = {a.path for a in client.list_artifacts(logger.run_id, "esd")}
    assert {f"esd/step_{s}.npz" for s in (10, 20, 30, 40)} <= listed
    assert {"esd/step_20", "esd/step_40", "esd/final"} <= listed and "esd/step_10" not in listed
    assert {a.path for a in client.list_artifacts(logger.run_id, "esd/final")} == {
        f"esd/final/{n}.png" for n in names}
    local = client.download_artifacts(logger.run_id, "esd/step_40.npz", str(tmp_path / "dl"))
    with np.load(local) as npz:
        assert sorted(npz.files) == sorted(names)
        for r in rows:
            assert_allclose(npz[r["name"]], r["eigs"], rtol=0, atol=0)
    summary = json.loads(open(client.download_artifacts(logger.run_id, "spectral_summary.json",
                                                         str(tmp_path / "dl"))).read())
    assert summary["phase"] == phase and summary["status"] == "FINISHED" and summary["step"] == 40
    assert [layer["name"] for layer in summary["layers"]] == names and "eigs" not in summary["layers"][0]
    assert logger.pending == 0 and not list(tracking.resolved_buffer_dir().glob("*.jsonl"))
    assert not logger.staging_dir.exists()  # staged files removed once uploaded

    assert start_sweep_run(tracking) == parent  # a resumed sweep finds its parent, not a trial run
    end_sweep_run(tracking, parent, metrics={"best_test_acc": 0.5})
    assert client.get_run(parent).info.status == "FINISHED"


def test_resumed_trial_reopens_its_run(tracking, fit):
    _, first = fit(tracking, "trial_r", steps=10)
    _, second = fit(tracking, "trial_r", steps=20)
    assert second.run_id == first.run_id
    client = mlflow.MlflowClient(tracking.tracking_uri)
    runs = client.search_runs([client.get_experiment_by_name("sweep-test").experiment_id],
                              filter_string="tags.trial_id = 'trial_r'")
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    # The re-run starts over at step 0: step 10 is already in the run and is not logged a second time.
    assert [m.step for m in client.get_metric_history(first.run_id, "alpha_mean")] == [10, 20]
    assert second._buffer.n_skipped > 0


class _Boom(Callback):
    def on_train_step_end(self, trainer, model, step, loss):
        if step == 15:
            raise RuntimeError("diverged")


def test_failed_trial_ends_failed_with_what_was_logged(tracking, tiny_train_config):
    logger = MlflowTrialLogger(tracking, trial_id="trial_f", params={"lr": 1.0})
    trainer = Trainer(tiny_train_config(steps=20), callbacks=[SpectralMonitor(), _Boom(), logger])
    with pytest.raises(RuntimeError, match="diverged"):
        trainer.fit()
    client = mlflow.MlflowClient(tracking.tracking_uri)
    run = client.get_run(logger.run_id)
    assert run.info.status == "FAILED"
    assert [m.step for m in client.get_metric_history(logger.run_id, "alpha_mean")] == [10]
    summary = {a.path for a in client.list_artifacts(logger.run_id)}
    assert "spectral_summary.json" in summary


def test_spectral_metrics_are_logged_only_at_the_steps_they_were_measured(tracking, fit):
    # Evaluation every 10 steps, spectra every 20: alpha must not be re-logged at 10 and 30.
    trainer, logger = fit(tracking, "trial_cadence", steps=40, eval_every=10, spectral_every=20)
    client = mlflow.MlflowClient(tracking.tracking_uri)
    name = trainer.spectral.rows[0]["name"]
    for key in ("alpha_mean", "phase_code", f"alpha/{name}"):
        assert sorted(m.step for m in client.get_metric_history(logger.run_id, key)) == [20, 40], key
    assert sorted(m.step for m in client.get_metric_history(logger.run_id, "test_acc")) == [10, 20, 30, 40]
