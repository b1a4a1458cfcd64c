"""The user's own training loop as the trainable: ``trainable: "pkg.module:train"`` and its session.

Real parts: run_sweep in this process on the session's local Ray, the shared ESD actor, real
sqlite MLflow and Optuna stores, the loops of ``own_loops.py`` (importable on the workers because
Ray puts the driver's working directory, the repository root, on their path).
"""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

mlflow = pytest.importorskip("mlflow")

from htsweep.analysis.phases import PHASES, UNDETERMINED  # noqa: E402
from htsweep.sweeps.spec import SpecError, SweepSpec  # noqa: E402
from htsweep.sweeps.tune_runner import check_trainable, run_sweep  # noqa: E402
from htsweep.sweeps.workdir import SweepMeta  # noqa: E402

LOOPS = "tests.sweeps.own_loops"


def _spec(name: str, trainable: str, search: dict, **extra) -> SweepSpec:
    n = len(next(iter(search.values()))["values"])
    raw = {"name": name, "trainable": trainable, "search": search, "sampler": {"type": "grid"}, "num_samples": n,
           "objective": {"target_alpha": 2.0, "min_test_accuracy": 0.3}, "max_concurrent_trials": 2,
           "max_failures": 0, **extra}
    return SweepSpec.from_dict(raw)


def _trial_runs(meta: SweepMeta, experiment: str) -> dict:
    client = mlflow.MlflowClient(meta.tracking_uri)
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id],
                              filter_string="tags.`htsweep.role` = 'trial'")
    return client, {r.data.tags["trial_id"]: r for r in runs}


@pytest.fixture()
def clean_env(monkeypatch):
    for var in ("MLFLOW_TRACKING_URI", "HTSWEEP_TRACKING_URI"):
        monkeypatch.delenv(var, raising=False)
    return monkeypatch


@pytest.mark.integration
def test_two_trials_of_the_users_loop_monitor_report_and_complete(tmp_path, clean_env, ray_local):
    spec = _spec("ownloop", f"{LOOPS}:train", {"lr": {"type": "grid", "values": [0.02, 0.1]}},
                 train={"steps": 60, "monitor_every": 20, "batch_size": 32, "width": 64})
    outcome = run_sweep(spec, workdir=tmp_path / "sweep", quiet=True)
    assert (outcome.status, outcome.n_trials, outcome.n_errors) == ("finished", 2, 0), outcome.errors

    meta = SweepMeta.load(tmp_path / "sweep")
    trials = optuna.load_study(study_name="ownloop", storage=meta.optuna_storage).get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2
    for t in trials:
        assert t.user_attrs["test_acc"] > 0.3  # a 10-class problem: chance is 0.1
        assert abs(t.value - abs(t.user_attrs["alpha_agg"] - 2.0)) < 1e-9  # feasible: the objective is |α - 2|
        assert t.user_attrs["phase"] and t.user_attrs["mlflow_run_id"]
    client, runs = _trial_runs(meta, "ownloop")
    assert len(runs) == 2
    for run in runs.values():
        assert run.info.status == "FINISHED" and run.data.tags["htsweep.end_reason"] == "completed"
        for layer in ("0", "2", "4"):
            assert [m.step for m in client.get_metric_history(run.info.run_id, f"alpha/{layer}")] == [20, 40, 60]
            assert run.data.tags[f"phase.{layer}"]
        assert [m.step for m in client.get_metric_history(run.info.run_id, "test_acc")] == [20, 40, 60]
        assert run.data.params["lr"] in ("0.02", "0.1") and run.data.params["width"] == "64"
        arts = {a.path for a in client.list_artifacts(run.info.run_id, "esd")}
        assert {"esd/step_20.npz", "esd/step_60.npz"} <= arts


@pytest.mark.integration  # ~14 s on an idle 2-core box; the session side without Ray: tests/integrations
def test_a_lightning_loop_reports_alpha_and_phase_through_the_trials_session(tmp_path, clean_env, ray_local):
    pytest.importorskip("lightning")
    spec = _spec("lightloop", f"{LOOPS}:lightning_train", {"lr": {"type": "grid", "values": [0.1]}},
                 train={"steps": 60, "monitor_every": 20, "batch_size": 32, "width": 48})
    outcome = run_sweep(spec, workdir=tmp_path / "sweep", quiet=True)
    assert (outcome.status, outcome.n_trials, outcome.n_errors) == ("finished", 1, 0), outcome.errors

    meta = SweepMeta.load(tmp_path / "sweep")
    (trial,) = optuna.load_study(study_name="lightloop", storage=meta.optuna_storage).get_trials()
    assert trial.state == TrialState.COMPLETE and trial.user_attrs["test_acc"] > 0.3  # chance is 0.1
    assert abs(trial.value - abs(trial.user_attrs["alpha_agg"] - 2.0)) < 1e-9 and trial.user_attrs["phase"]
    client, runs = _trial_runs(meta, "lightloop")
    (run,) = runs.values()
    assert run.info.run_id == trial.user_attrs["mlflow_run_id"] and run.info.status == "FINISHED"
    for layer in ("net.0", "net.2", "net.4"):
        assert [m.step for m in client.get_metric_history(run.info.run_id, f"alpha/{layer}")] == [20, 40, 60]
        assert run.data.tags[f"phase.{layer}"] in (*PHASES, UNDETERMINED)
    assert [m.step for m in client.get_metric_history(run.info.run_id, "test_acc")] == [20, 40, 60]
    assert run.data.metrics["alpha"] == trial.user_attrs["alpha_agg"]  # the objective's α, from the last analysis


@pytest.mark.slow  # ~20 s on an idle 2-core box; the causes are also checked without Ray below
@pytest.mark.integration
def test_misbehaving_loops_are_trial_errors_with_one_line_causes(tmp_path, clean_env, ray_local):
    modes = ["never_reports", "raises", "text_metric", "not_a_module"]
    spec = _spec("badloop", f"{LOOPS}:misbehave", {"mode": {"type": "grid", "values": modes}},
                 max_concurrent_trials=2)
    outcome = run_sweep(spec, workdir=tmp_path / "sweep", quiet=True)
    assert (outcome.n_trials, outcome.n_errors) == (4, 4)
    text = "\n".join(outcome.errors)
    assert "the trainable returned without calling session.report(metrics, step)" in text
    assert "RuntimeError: the user's loop broke at step 2" in text
    assert "session.report: metric 'test_acc' must be a number, got str 'high'" in text
    assert "spectral monitoring needs a torch.nn.Module, got OrderedDict" in text
    meta = SweepMeta.load(tmp_path / "sweep")
    client, runs = _trial_runs(meta, "badloop")
    reasons = sorted(r.data.tags["htsweep.end_reason"] for r in runs.values())
    assert len(reasons) == 4 and all(r.startswith("error: ") for r in reasons)
    (broke,) = [r for r in runs.values() if "broke at step 2" in r.data.tags["htsweep.end_reason"]]
    assert broke.info.status == "FAILED"
    path = client.download_artifacts(broke.info.run_id, "traceback.txt", str(tmp_path))
    tb = open(path).read()
    assert "Traceback (most recent call last)" in tb and "own_loops.py" in tb and "in misbehave" in tb


@pytest.mark.parametrize(("path", "match"), [
    (f"{LOOPS}:nowhere", r"^trainable: .*has no attribute 'nowhere'"),
    ("no_such_pkg_x.loop:train", r"^trainable: cannot import"),
    (f"{LOOPS}:not_a_function", r"^trainable: 'tests.sweeps.own_loops:not_a_function' is a int, not a function"),
    (f"{LOOPS}:wrong_signature", r"^trainable: tests.sweeps.own_loops:wrong_signature must accept \(config, session\)"),
])
def test_a_bad_trainable_path_is_one_line_before_any_trial(path, match):
    with pytest.raises(SpecError, match=match) as info:
        check_trainable(path)
    assert "\n" not in str(info.value)


def test_spec_takes_a_trainable_or_a_model_and_dataset():
    spec = SweepSpec.from_dict({"name": "x", "trainable": f"{LOOPS}:train", "train": {"anything": 1},
                                "search": {"my_knob": {"type": "choice", "values": [1, 2]}}})
    assert spec.subject == f"the loop {LOOPS}:train" and spec.train == {"anything": 1}
    with pytest.raises(SpecError, match="drop model and dataset"):
        SweepSpec.from_dict({"name": "x", "trainable": f"{LOOPS}:train", "model": "mlp3"})
    with pytest.raises(SpecError, match=r"model and dataset: required field is missing \(or name your own"):
        SweepSpec.from_dict({"name": "x"})


def _session(tmp_path):
    from htsweep.sweeps.session import TrialSession
    from htsweep.sweeps.spec import ObjectiveSpec
    from htsweep.trainers.monitor import InProcessAnalyzer, SpectralMonitor

    return TrialSession({"steps": 4}, objective=ObjectiveSpec(), trial_id="t0", trial_dir=tmp_path, device="cpu",
                        monitor=SpectralMonitor(InProcessAnalyzer(device="cpu")))


def test_session_bad_input_is_one_line(tmp_path):
    import torch

    session = _session(tmp_path)
    with pytest.raises(TypeError, match=r"^session.report: metric 'test_acc' must be a number, got str 'high'$"):
        session.report({"test_acc": "high"}, 1)
    with pytest.raises(TypeError, match=r"^spectral monitoring needs a torch.nn.Module, got OrderedDict$"):
        session.monitor(torch.nn.Linear(4, 4).state_dict(), 1)
    with pytest.raises(TypeError, match=r"^session.monitor: step must be an int, got float 1.5$"):
        session.monitor(torch.nn.Linear(4, 4), 1.5)
    with pytest.raises(TypeError, match=r"^session.save_checkpoint: state must be a dict, got list$"):
        session.save_checkpoint([1])
    with pytest.raises(RuntimeError, match=r"^the trainable returned without calling session.report"):
        session.finish()


def test_session_merges_the_last_analysis_into_reports(tmp_path):
    import torch

    class _Recorder:
        checkpoint = False

        def __init__(self):
            self.reports = []

        def on_report(self, trainer, model, step, metrics):
            self.reports.append((step, trainer.step, dict(metrics)))

    session = _session(tmp_path)
    session._reporter = recorder = _Recorder()
    torch.manual_seed(0)
    df = session.monitor(torch.nn.Sequential(torch.nn.Linear(64, 48), torch.nn.Linear(48, 40)), 3)
    assert list(df["name"]) == ["0", "1"] and session.spectral.step == 3
    session.report({"test_acc": torch.tensor(0.75), "n": 2}, 3)
    step, seen_step, metrics = recorder.reports[-1]
    assert (step, seen_step, metrics["test_acc"], metrics["n"]) == (3, 3, 0.75, 2.0)
    assert metrics["alpha/0"] == df.loc[0, "alpha"] and "alpha_mean" in metrics
    session.finish()
    assert len(recorder.reports) == 1  # the analysis reached Tune with the report: nothing re-sent
