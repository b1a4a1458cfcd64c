"""End to end, real parts only: `htsweep run` in a subprocess with a local Ray, MLflow on sqlite,
an Optuna sqlite study and real (tiny) training; then `status`, `best` and `report` on the result.
The sweep is the session fixture `finished` (tests/sweeps/conftest.py)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from sweep_helpers import cli_env, run_cli, tiny_spec, write_spec

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

N_TRIALS = 4


def _study(workdir: Path):
    import optuna

    return optuna.load_study(study_name="e2e", storage=f"sqlite:///{workdir}/optuna.db")


def test_run_finishes_and_prints_summary(finished):
    workdir, proc = finished
    out = proc.stdout
    assert proc.returncode == 0, out[-4000:]
    assert f"e2e: {N_TRIALS}/{N_TRIALS} trials ({N_TRIALS} complete)" in out
    assert "Best trial of e2e" in out and "phase" in out
    assert f"Report:     {workdir}/report/index.html" in out
    assert f"htsweep ui {workdir}" in out
    for name in ("spec.yaml", "sweep.json", "optuna.db", "mlflow.db"):
        assert (workdir / name).exists(), name


def test_optuna_study_has_every_trial_with_objective(finished):
    from optuna.trial import TrialState

    workdir, _ = finished
    trials = _study(workdir).get_trials()
    assert len(trials) == N_TRIALS
    assert all(t.state == TrialState.COMPLETE for t in trials)
    for t in trials:
        assert math.isfinite(t.value)
        attrs = t.user_attrs
        assert {"tune_trial_id", "alpha_agg", "test_acc", "phase", "mlflow_run_id"} <= set(attrs)
        assert attrs["trained"] is True  # FIFO: every trial ran to its last step
        # The objective Optuna saw is |alpha - target| (+ penalty when infeasible).
        err = abs(attrs["alpha_agg"] - 2.0)
        if attrs["test_acc"] >= 0.15:
            np.testing.assert_allclose(t.value, err, rtol=1e-9)
        else:
            assert t.value > 10.0
    assert len({t.user_attrs["tune_trial_id"] for t in trials}) == N_TRIALS


def test_every_trial_has_mlflow_run_with_layers_esd_and_phase(finished):
    import mlflow

    from htsweep.analysis.phases import PHASES

    workdir, _ = finished
    client = mlflow.MlflowClient(f"sqlite:///{workdir}/mlflow.db")
    exp = client.get_experiment_by_name("e2e")
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if r.data.tags.get("htsweep.role") == "sweep"]
    trials = [r for r in runs if r.data.tags.get("htsweep.role") == "trial"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert len(trials) == N_TRIALS
    assert len({r.data.tags["trial_id"] for r in trials}) == N_TRIALS
    for run in trials:
        assert run.info.status == "FINISHED"
        assert run.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
        metrics = run.data.metrics
        for layer in ("fc1", "fc2", "fc3"):
            assert f"alpha/{layer}" in metrics and f"stable_rank/{layer}" in metrics
        assert "alpha_farms/fc1" in metrics and "alpha_farms_mean" in metrics  # monitor.farms: true
        assert "test_acc" in metrics and "alpha_mean" in metrics
        assert run.data.tags["phase"] in PHASES
        assert all(run.data.tags[f"phase.{layer}"] in PHASES for layer in ("fc1", "fc2", "fc3"))
        esd = [f.path for f in client.list_artifacts(run.info.run_id, "esd")]
        assert any(p.endswith(".npz") for p in esd), esd
        history = client.get_metric_history(run.info.run_id, "alpha/fc2")
        assert sorted(m.step for m in history) == [20, 40]


def test_best_is_closest_to_target_among_feasible(finished):
    from htsweep.sweeps.status import best_trial, load_trials

    workdir, _ = finished
    _, spec, rows = load_trials(workdir)
    # Independent computation straight from the study.
    trials = _study(workdir).get_trials()
    feasible = [t for t in trials if t.user_attrs["test_acc"] >= spec.objective.min_test_accuracy]
    assert feasible, "the tiny spec's constraint must leave feasible trials"
    expected = min(feasible, key=lambda t: abs(t.user_attrs["alpha_agg"] - spec.objective.target_alpha))
    best = best_trial(rows)
    assert best is not None and best.number == expected.number

    proc = run_cli("best", workdir, env=cli_env())
    assert proc.returncode == 0, proc.stdout
    assert f"#{expected.number}" in proc.stdout
    assert f"{expected.user_attrs['alpha_agg']:.4g}" in proc.stdout
    assert expected.user_attrs["phase"] in proc.stdout


def test_status_table(finished):
    workdir, _ = finished
    proc = run_cli("status", workdir, env=cli_env())
    assert proc.returncode == 0, proc.stdout
    assert proc.stdout.count("COMPLETE") == N_TRIALS
    for column in ("lr", "batch_size", "alpha (mean)", "phase", "test acc", "state"):
        assert column in proc.stdout


def test_report_written(finished):
    workdir, _ = finished
    report = workdir / "report"
    html = (report / "index.html").read_text()
    for png in ("esd_grid.png", "alpha_phase_vs_lr.png", "alpha_phase_vs_batch_size.png",
                "alpha_vs_accuracy.png", "optimization_history.png", "param_importances.png"):
        assert (report / png).stat().st_size > 5_000, png
        assert png in html


def test_run_refuses_existing_sweep_dir(finished, tmp_path):
    workdir, _ = finished
    spec = write_spec(tmp_path / "again.yaml", tiny_spec("e2e"))
    proc = run_cli("run", spec, "--workdir", workdir, env=cli_env())
    assert proc.returncode == 2
    assert "already holds a sweep (finished)" in proc.stdout
