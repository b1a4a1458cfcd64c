"""How a sweep ends when something other than Ctrl-C stops it, and the per-sweep identities
(tracking URI, workdir, ESD namespace) the driver settles before it starts.

Real parts only: run_sweep in this process, a loopback port nobody listens on as a tracking
server that is down, real sqlite MLflow/Optuna stores, the session's local Ray.
"""

from __future__ import annotations

import io
import json
import pickle
import time

import pytest
from sweep_helpers import tiny_spec

mlflow = pytest.importorskip("mlflow")

from services.mlflow_server import free_port  # noqa: E402
from sweeps.spec import SpecError, SweepSpec  # noqa: E402
from sweeps.tune_runner import run_sweep  # noqa: E402
from sweeps.workdir import SweepMeta, choose_workdir, esd_namespace_for  # noqa: E402

_HTTP_VARS = ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT")


@pytest.fixture()
def clean_env(monkeypatch):
    """No tracking URI and MLflow's HTTP defaults, as for a user; restored afterwards."""
    for var in ("MLFLOW_TRACKING_URI", "HTSWEEP_TRACKING_URI", *_HTTP_VARS):
        monkeypatch.setenv(var, "x")  # recorded, so whatever the driver sets is undone after
        monkeypatch.delenv(var)
    return monkeypatch


def _status_line(workdir) -> str:
    from rich.console import Console

    from sweeps.status import print_status

    out = io.StringIO()
    print_status(workdir, console=Console(file=out, width=200))
    return out.getvalue()


def test_unreachable_tracking_server_fails_in_one_line_and_marks_the_sweep_failed(tmp_path, clean_env):
    uri = f"http://127.0.0.1:{free_port()}"
    clean_env.setenv("HTSWEEP_TRACKING_URI", uri)  # the sweep must honour it (not only $MLFLOW_...)
    spec = SweepSpec.from_dict(tiny_spec("down"))
    t0 = time.monotonic()
    with pytest.raises(SpecError) as info:
        run_sweep(spec, workdir=tmp_path / "sweep")
    took = time.monotonic() - t0
    message = str(info.value)
    assert message.startswith(f"cannot reach the MLflow tracking server at {uri}: ") and "\n" not in message
    assert took < 60, f"took {took:.0f} s: MLflow's default HTTP retries were not tightened"
    meta = SweepMeta.load(tmp_path / "sweep")
    assert meta.tracking_uri == uri and meta.status == "failed"
    assert "sweep failed" in _status_line(tmp_path / "sweep")


def test_a_failure_inside_the_sweep_marks_it_failed_and_ends_the_parent_run(tmp_path, clean_env, ray_local):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    # An Optuna store that cannot be opened fails the sweep after the parent run and the ESD actor
    # exist (the searcher is built last).
    spec = SweepSpec.from_dict(tiny_spec("broken", optuna_storage=f"sqlite:///{blocker}/optuna.db"))
    with pytest.raises(Exception) as info:
        run_sweep(spec, workdir=tmp_path / "sweep")
    assert not isinstance(info.value, KeyboardInterrupt)
    meta = SweepMeta.load(tmp_path / "sweep")
    assert meta.status == "failed" and meta.parent_run_id
    assert meta.tracking_uri == f"sqlite:///{(tmp_path / 'sweep').resolve()}/mlflow.db"
    run = mlflow.MlflowClient(meta.tracking_uri).get_run(meta.parent_run_id)
    assert run.info.status == "FAILED"
    assert run.data.tags["htsweep.sweep_run"] == meta.sweep_id
    # The ESD actor lived in a namespace of this sweep only, and it is gone again.
    assert meta.esd_namespace == esd_namespace_for("broken", tmp_path / "sweep")
    with pytest.raises(ValueError):
        ray_local.get_actor("htsweep-esd", namespace=meta.esd_namespace)


def test_esd_namespace_differs_between_sweeps_of_one_spec(tmp_path):
    a, b = esd_namespace_for("quick", tmp_path / "runs/quick"), esd_namespace_for("quick", tmp_path / "runs/quick-2")
    assert a != b and a.startswith("htsweep-quick-") and b.startswith("htsweep-quick-")
    assert esd_namespace_for("quick", tmp_path / "runs/quick") == a  # resume finds the same one


def test_choose_workdir_skips_taken_directories(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = SweepSpec.from_dict(tiny_spec("taken"))
    assert choose_workdir(spec) == (tmp_path / "runs" / "taken").resolve()
    (tmp_path / "runs" / "taken").mkdir(parents=True)
    (tmp_path / "runs" / "taken" / "sweep.json").write_text(json.dumps({}))
    assert choose_workdir(spec) == (tmp_path / "runs" / "taken-2").resolve()
    assert choose_workdir(spec, "elsewhere") == (tmp_path / "elsewhere").resolve()


def test_restored_progress_callback_follows_the_quiet_setting_of_this_run(monkeypatch, capsys):
    from types import SimpleNamespace

    from sweeps.progress import QUIET_ENV, ProgressCallback

    trial = SimpleNamespace(trial_id="t1", config={}, last_result={})
    # Tune pickles the callback into its experiment state; `htsweep resume --quiet` restores it.
    restored = pickle.loads(pickle.dumps(ProgressCallback(4, ["lr"], quiet=False)))
    monkeypatch.setenv(QUIET_ENV, "1")
    restored.setup()
    restored.on_trial_result(0, [], trial, {"step": 3})
    assert "report" not in capsys.readouterr().out
    monkeypatch.setenv(QUIET_ENV, "0")
    restored.setup()
    restored.on_trial_result(0, [], trial, {"step": 3})
    assert "report t1" in capsys.readouterr().out


def test_diverged_result_keeps_the_mlflow_link_and_phase(tmp_path):
    from analysis.phases import PHASES
    from services.tracking import MlflowTrialLogger, TrackingConfig, init_store
    from sweeps.spec import ObjectiveSpec
    from sweeps.trainable import diverged_result
    from trainers.monitor import SpectralMonitor, model_phase
    from trainers.train import TrainConfig, Trainer

    cfg = TrackingConfig.for_workdir(tmp_path, experiment="diverge")
    init_store(cfg.tracking_uri)
    logger = MlflowTrialLogger(cfg, trial_id="trial_div")
    # Diverges at step 7, after the spectral snapshot of step 5.
    config = TrainConfig(model="mlp3", dataset="digits", steps=60, eval_every=5, spectral_every=5, batch_size=32,
                         lr=100.0, seed=0, device="cpu", threads=1, eval_samples=128, model_kwargs={"width": 32})
    trainer = Trainer(config, callbacks=[SpectralMonitor(), logger])
    with pytest.raises(FloatingPointError) as info:
        trainer.fit()
    out = diverged_result(trainer, ObjectiveSpec(penalty=10.0), str(info.value), logger=logger)
    assert out["diverged"] == 1.0 and out["objective"] == 20.0
    assert out["mlflow_run_id"] == logger.run_id
    assert trainer.spectral is not None and out["phase"] == model_phase(trainer.spectral.rows)
    assert out["phase"] in PHASES
