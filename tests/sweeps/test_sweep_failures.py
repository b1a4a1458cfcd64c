"""How a sweep ends when something other than Ctrl-C stops it, and the per-sweep identities
(tracking URI, workdir, ESD namespace) the driver settles before it starts.

Real parts only: run_sweep in this process, a loopback port nobody listens on as a tracking
server that is down, real sqlite MLflow/Optuna stores, the session's local Ray.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import signal
import socket
import subprocess
import sys
import time

import optuna
import pytest
import yaml
from optuna.trial import TrialState
from sweep_helpers import REPO, tiny_spec

mlflow = pytest.importorskip("mlflow")

from htsweep.services.mlflow_server import free_port  # noqa: E402
from htsweep.sweeps.spec import SpecError, SweepSpec  # noqa: E402
from htsweep.sweeps.tune_runner import run_sweep  # noqa: E402
from htsweep.sweeps.workdir import SweepMeta, choose_workdir, esd_namespace_for  # noqa: E402

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

    from htsweep.sweeps.status import print_status

    out = io.StringIO()
    print_status(workdir, console=Console(file=out, width=200))
    return out.getvalue()


@pytest.mark.integration
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


@pytest.mark.integration
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

    from htsweep.sweeps.progress import QUIET_ENV, ProgressCallback

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


def test_progress_lines_show_test_loss_and_r2_for_regression(monkeypatch, capsys):
    from types import SimpleNamespace

    from htsweep.sweeps.progress import QUIET_ENV, ProgressCallback

    monkeypatch.setenv(QUIET_ENV, "0")
    progress = ProgressCallback(2, ["lr"])
    regression = {"step": 5, "alpha_agg": 2.5, "test_loss": 0.125, "test_r2": 0.75, "objective": 0.5}
    progress.on_trial_result(0, [], SimpleNamespace(trial_id="r1", config={}), regression)
    progress.on_trial_complete(0, [], SimpleNamespace(trial_id="r1", config={}, last_result=regression))
    progress.on_trial_result(0, [], SimpleNamespace(trial_id="c1", config={}), {"step": 5, "test_acc": 0.875})
    lines = capsys.readouterr().out.splitlines()
    assert all("test loss 0.125  R² 0.75" in line and "test acc" not in line for line in lines[:2]), lines
    assert "test acc 0.875" in lines[2] and "test loss" not in lines[2]


def test_diverged_result_keeps_the_mlflow_link_and_phase(tmp_path):
    from htsweep.analysis.aggregate import model_phase
    from htsweep.analysis.phases import PHASES
    from htsweep.services.tracking import TrackingConfig, init_store
    from htsweep.sweeps.spec import ObjectiveSpec
    from htsweep.sweeps.trainable import diverged_result
    from htsweep.sweeps.trial_logger import MlflowTrialLogger
    from htsweep.trainers.monitor import SpectralMonitor
    from htsweep.trainers.train import TrainConfig, Trainer

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


# -- fault injection: resources, errors, divergence, credentials, the lock, Optuna's tell ------------------------
@pytest.mark.integration
def test_gpu_asked_on_a_cpu_only_cluster_fails_at_once_in_one_line_naming_the_field(tmp_path, clean_env, ray_local):
    from typer.testing import CliRunner

    from htsweep.sweeps.cli import app

    spec = tmp_path / "gpu.yaml"
    spec.write_text(yaml.safe_dump(tiny_spec("gpu", resources={"cpu": 1, "gpu": 1})))
    t0 = time.monotonic()
    result = CliRunner().invoke(app, ["run", str(spec), "--workdir", str(tmp_path / "sweep"), "--no-report"])
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert result.exit_code == 2, result.output
    assert lines == ["error: resources.gpu: each trial asks for 1 GPU, but the Ray cluster is CPU-only (1 node(s)); "
                     "lower resources.gpu or run on a cluster that has it"], result.output
    assert time.monotonic() - t0 < 60
    meta = SweepMeta.load(tmp_path / "sweep")
    assert meta.status == "failed"
    assert not (tmp_path / "sweep" / "optuna.db").exists()  # nothing was launched
    run = mlflow.MlflowClient(meta.tracking_uri).get_run(meta.parent_run_id)
    assert run.info.status == "FAILED"


@pytest.mark.parametrize(("field", "cpu", "gpu", "nodes", "types", "verdict"), [
    ("esd_actor", 0.0, 0.25, [{"CPU": 8.0}], None,
     ("fail", "esd_actor.gpu: the ESD actor asks for 0.25 GPU, but the Ray cluster is CPU-only (1 node(s)); "
              "lower esd_actor.gpu or run on a cluster that has it")),
    ("resources", 4.0, 0.0, [{"CPU": 2.0}, {"CPU": 2.0}], None,
     ("fail", "resources.cpu: each trial asks for 4 CPU, but the Ray cluster has at most 2 CPU per node (2 node(s)); "
              "lower resources.cpu or run on a cluster that has it")),
    ("resources", 2.0, 0.5, [{"CPU": 8.0}], [{"CPU": 48.0, "GPU": 4.0}],
     ("wait", "resources.gpu: each trial asks for 0.5 GPU, but the Ray cluster is CPU-only (1 node(s))")),
    ("resources", 2.0, 1.0, [{"CPU": 8.0}], [{"CPU": 8.0}],
     ("fail", "resources.gpu: each trial asks for 1 GPU, but the Ray cluster is CPU-only (1 node(s)) and none of its "
              "autoscaler's node types has it; lower resources.gpu or run on a cluster that has it")),
    ("resources", 2.0, 0.5, [{"CPU": 1.0, "GPU": 1.0}, {"CPU": 8.0, "GPU": 1.0}], None, None),
])
def test_resource_shortfall_names_the_field_and_waits_only_for_an_autoscaler(field, cpu, gpu, nodes, types, verdict):
    from htsweep.sweeps.tune_runner import resource_shortfall

    who = "the ESD actor" if field == "esd_actor" else "each trial"
    assert resource_shortfall(field, who, cpu, gpu, nodes, types) == verdict


@pytest.mark.integration
def test_every_trial_erroring_exits_non_zero_with_a_summary(tmp_path, clean_env, ray_local):
    from typer.testing import CliRunner

    from htsweep.sweeps.cli import app

    # Accepted by the spec (model_kwargs are free-form) but rejected by the model at trial start.
    spec = tmp_path / "bad.yaml"
    spec.write_text(yaml.safe_dump(tiny_spec(
        "allbad", num_samples=2, max_failures=0, train={"model_kwargs": {"width": 32, "bogus": 1}})))
    result = CliRunner().invoke(app, ["run", str(spec), "--workdir", str(tmp_path / "sweep"), "--no-report", "-q"])
    assert result.exit_code == 1, result.output
    assert "All 2 trials errored" in result.output
    summary = [line for line in result.output.splitlines() if "bogus" in line]
    assert len(summary) == 2 and all("unexpected keyword argument 'bogus'" in line for line in summary), result.output
    meta = SweepMeta.load(tmp_path / "sweep")
    assert meta.status == "finished"
    trials = optuna.load_study(study_name="allbad", storage=meta.optuna_storage).get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.FAIL]
    client = mlflow.MlflowClient(meta.tracking_uri)
    runs = client.search_runs([client.get_experiment_by_name("allbad").experiment_id])
    assert [(r.data.tags["htsweep.role"], r.info.status) for r in runs] == [("sweep", "FAILED")]  # no trial got far


@pytest.mark.integration
def test_nan_weights_at_a_monitoring_step_are_a_divergence_not_an_error(tmp_path, clean_env, ray_local):
    """Inf weights after the first update, whose loss was still finite: the monitor sees them first.

    With weight decay 1e20, lr = 1e20 makes SGD's update lr * wd * w overflow float32; lr = 1e-21
    keeps it at a tenth of the weights per step (a trial that just finishes).
    """
    raw = tiny_spec("nanw", num_samples=2, max_failures=1, train={"steps": 6, "weight_decay": 1e20},
                    monitor={"eval_every": 3, "spectral_every": 1})
    raw.update(search={"lr": {"type": "grid", "values": [1e-21, 1e20]}}, sampler={"type": "grid"})
    spec = SweepSpec.from_dict(raw)
    outcome = run_sweep(spec, workdir=tmp_path / "sweep", quiet=True)
    assert (outcome.status, outcome.n_trials, outcome.n_errors) == ("finished", 2, 0)  # no ERROR, so no retry
    meta = SweepMeta.load(tmp_path / "sweep")
    trials = {t.params["lr"]: t for t in optuna.load_study(study_name="nanw", storage=meta.optuna_storage).get_trials()}
    assert [t.state for t in trials.values()] == [TrialState.COMPLETE] * 2
    bad, good = trials[1e20], trials[1e-21]
    assert bad.user_attrs["diverged"] == 1.0 and bad.value == 2 * spec.objective.penalty
    assert bad.user_attrs["error"] == "non-finite weights in layer fc1 at step 1"
    assert "diverged" not in good.user_attrs and good.value < 2 * spec.objective.penalty
    client = mlflow.MlflowClient(meta.tracking_uri)
    runs = {r.data.tags["trial_id"]: r for r in client.search_runs(
        [client.get_experiment_by_name("nanw").experiment_id], filter_string="tags.`htsweep.role` = 'trial'")}
    assert len(runs) == 2
    bad_run, good_run = runs[bad.user_attrs["tune_trial_id"]], runs[good.user_attrs["tune_trial_id"]]
    assert bad_run.info.status == "FAILED"
    assert bad_run.data.tags["htsweep.end_reason"] == "diverged: non-finite weights in layer fc1 at step 1"
    assert [m.step for m in client.get_metric_history(bad_run.info.run_id, "alpha_mean")] == []
    assert good_run.info.status == "FINISHED" and good_run.data.tags["htsweep.end_reason"] == "completed"
    assert [m.step for m in client.get_metric_history(good_run.info.run_id, "alpha_mean")] == [1, 2, 3, 4, 5, 6]


@pytest.mark.integration
@pytest.mark.parametrize("kind", ["refused", "hung"])
def test_credentials_in_the_tracking_uri_never_reach_errors_or_sweep_json(tmp_path, clean_env, kind):
    listener = None
    if kind == "hung":
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)  # the kernel accepts; nobody ever answers
        port = listener.getsockname()[1]
        clean_env.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    else:
        port = free_port()
    uri = f"http://alice:s3cret@127.0.0.1:{port}"
    clean_env.setenv("HTSWEEP_TRACKING_URI", uri)
    spec = SweepSpec.from_dict(tiny_spec("creds", optuna_storage=f"sqlite:///{tmp_path}/optuna.db?token=t0ps3cret"))
    t0 = time.monotonic()
    try:
        with pytest.raises(SpecError) as info:
            run_sweep(spec, workdir=tmp_path / "sweep")
    finally:
        if listener is not None:
            listener.close()
    took = time.monotonic() - t0
    message = str(info.value)
    assert message.startswith(f"cannot reach the MLflow tracking server at http://alice:***@127.0.0.1:{port}: ")
    assert "s3cret" not in message and "\n" not in message
    assert took < (60 if kind == "refused" else 2 * 2 + 30), took  # hung: (retries + 1) x timeout, bounded
    text = (tmp_path / "sweep" / "sweep.json").read_text()
    assert "s3cret" not in text and "t0ps3cret" not in text and "alice:***@" in text and "token=***" in text
    assert oct((tmp_path / "sweep" / "spec.yaml").stat().st_mode & 0o777) == "0o600"
    # Reading the sweep back restores the secrets from the environment and the persisted spec.
    meta = SweepMeta.load(tmp_path / "sweep")
    assert meta.tracking_uri == uri and meta.optuna_storage.endswith("optuna.db?token=t0ps3cret")
    clean_env.delenv("HTSWEEP_TRACKING_URI")
    with pytest.raises(SpecError, match=r"tracking_uri http://alice:\*\*\*@127.0.0.1:\d+ had credentials that were "
                                        r"not stored; set them again in tracking.uri in the spec"):
        SweepMeta.load(tmp_path / "sweep")


def test_sweep_params_in_mlflow_are_redacted(tmp_path, clean_env):
    from htsweep.sweeps.lifecycle import SweepLifecycle

    spec = SweepSpec.from_dict(tiny_spec("params", optuna_storage="postgresql://bob:hunter2@db.internal/optuna",
                                         storage_path="s3://bucket/tune?X-Amz-Signature=abc123"))
    meta = SweepMeta(name="params", workdir=str(tmp_path), tracking_uri=f"sqlite:///{tmp_path}/mlflow.db",
                     optuna_storage=spec.optuna_storage, storage_path=spec.storage_path, experiment="params",
                     sweep_id="x" * 32)
    life = SweepLifecycle(meta, spec)
    life.open_parent_run()
    assert life.run_open and json.loads((tmp_path / "sweep.json").read_text())["parent_run_id"] == meta.parent_run_id
    params = mlflow.MlflowClient(meta.tracking_uri).get_run(meta.parent_run_id).data.params
    assert params["optuna_storage"] == "postgresql://bob:***@db.internal/optuna"
    assert params["storage_path"] == "s3://bucket/tune?X-Amz-Signature=***"
    assert not any("hunter2" in v or "abc123" in v for v in params.values())


def test_sweep_lock_is_exclusive_names_the_holder_and_dies_with_it(tmp_path):
    from htsweep.sweeps.workdir import SweepLock

    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; sys.path.insert(0, '.'); from sweeps.workdir import SweepLock; "
        f"lock = SweepLock({str(tmp_path)!r}).acquire(); print('locked', flush=True); time.sleep(600)")],
        cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(SpecError, match=rf"^{tmp_path} is in use by another htsweep driver \(pid {holder.pid} on "
                                            rf"{socket.gethostname()}\); wait for it to end or stop it \(Ctrl-C\)$"):
            SweepLock(tmp_path).acquire()
        holder.send_signal(signal.SIGKILL)  # no chance to clean up: the kernel releases the lock
        holder.wait()
        with SweepLock(tmp_path):
            assert json.loads((tmp_path / ".lock").read_text())["pid"] == os.getpid()
    finally:
        if holder.poll() is None:
            holder.kill()


def _locked_searcher(tmp_path):
    """A real searcher on a sqlite study whose storage waits only 0.3 s for a lock."""
    from htsweep.sweeps.search import ResumableOptunaSearch, search_space

    spec = SweepSpec.from_dict(tiny_spec("tell"))
    url = f"sqlite:///{tmp_path}/optuna.db"
    storage = optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 0.3}})
    searcher = ResumableOptunaSearch(space=search_space(spec), metric="objective", mode="min",
                                     sampler=optuna.samplers.RandomSampler(seed=0), study_name="tell", storage=storage)
    searcher._pending_dir = str(tmp_path)
    return searcher, url


def _hold_write_lock(url: str, seconds: float):
    import sqlite3
    import threading

    conn = sqlite3.connect(url[len("sqlite:///"):], check_same_thread=False)
    conn.execute("BEGIN EXCLUSIVE")
    timer = threading.Timer(seconds, conn.rollback)
    timer.start()
    return timer


def test_study_tell_retries_a_locked_store_and_never_drops_a_finished_value(tmp_path, monkeypatch, caplog):
    import htsweep.sweeps.search as search

    searcher, url = _locked_searcher(tmp_path)
    searcher.suggest("t1")
    searcher.suggest("t2")
    # Locked for 1.5 s: sqlite gives up after 0.3 s each time; the searcher keeps retrying.
    _hold_write_lock(url, 1.5)
    searcher.on_trial_complete("t1", {"objective": 0.25, "alpha_agg": 2.25})
    study = optuna.load_study(study_name="tell", storage=url)
    t1 = study.trials[0]
    assert (t1.state, t1.value, t1.user_attrs["alpha_agg"]) == (TrialState.COMPLETE, 0.25, 2.25)
    # Locked for longer than the retry budget: surfaced as an error, kept on disk, recorded at the end.
    monkeypatch.setattr(search, "TELL_RETRY_S", 0.5)
    timer = _hold_write_lock(url, 2.0)
    with caplog.at_level("ERROR", logger="htsweep.sweeps.search"):
        searcher.on_trial_complete("t2", {"objective": 0.5, "alpha_agg": 2.5})
    assert "Optuna could not record the result of Tune trial t2 (trial #1)" in caplog.text
    assert study.trials[1].state == TrialState.RUNNING
    pending = [json.loads(line) for line in (tmp_path / search.PENDING_FILE).read_text().splitlines()]
    assert [(p["number"], p["values"], p["state"]) for p in pending] == [(1, 0.5, "COMPLETE")]
    timer.join()
    assert search.tell_pending(tmp_path, url) == 1
    t2 = optuna.load_study(study_name="tell", storage=url).trials[1]
    assert (t2.state, t2.value, t2.user_attrs["alpha_agg"]) == (TrialState.COMPLETE, 0.5, 2.5)
    assert not (tmp_path / search.PENDING_FILE).exists()
