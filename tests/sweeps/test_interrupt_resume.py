"""Ctrl-C on a running `htsweep run`, then `htsweep resume`: the sweep finishes, no trial twice."""

from __future__ import annotations

import json
import signal
import subprocess
import time

import pytest
from sweep_helpers import REPO, cli_env, htsweep_cmd, run_cli, tiny_spec, write_spec

pytestmark = pytest.mark.timeout(600)


def _states(workdir) -> tuple[int, int]:
    """(completed trials, running trials that reported at least once) in the sweep's study."""
    import optuna
    from optuna.trial import TrialState

    db = workdir / "optuna.db"
    if not db.exists():
        return 0, 0
    try:
        trials = optuna.load_study(study_name="intr", storage=f"sqlite:///{db}").get_trials(deepcopy=False)
    except Exception:  # noqa: BLE001 - the driver is still creating the study
        return 0, 0
    done = sum(t.state == TrialState.COMPLETE for t in trials)
    busy = sum(t.state == TrialState.RUNNING and bool(t.intermediate_values) for t in trials)
    return done, busy


def _n_complete(workdir) -> int:
    return _states(workdir)[0]


def test_sigint_then_resume_finishes_without_duplicates(tmp_path):
    import mlflow
    import optuna
    from optuna.trial import TrialState

    # Longer trials (10 reports each) so the interrupt lands while trials are mid-training.
    spec = write_spec(tmp_path / "intr.yaml", tiny_spec("intr", train={"steps": 200}))
    workdir = tmp_path / "sweep"
    env = cli_env()
    proc = subprocess.Popen(htsweep_cmd("run", spec, "--workdir", workdir, "--quiet", "--no-report"), cwd=REPO,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 300
        while True:  # interrupt once a trial is done and another is mid-training
            done, busy = _states(workdir)
            if done >= 1 and busy >= 1:
                break
            assert proc.poll() is None, proc.stdout.read()[-4000:]
            assert time.monotonic() < deadline, "no trial completed within 300 s"
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, out[-4000:]
    assert "Sweep interrupted" in out and f"htsweep resume {workdir}" in out
    assert json.loads((workdir / "sweep.json").read_text())["status"] == "interrupted"
    n_before = _n_complete(workdir)
    assert 1 <= n_before < 4

    resumed = run_cli("resume", workdir, "--quiet", "--no-report", env=env)
    assert resumed.returncode == 0, resumed.stdout[-4000:]
    assert "intr: 4/4 trials (4 complete)" in resumed.stdout
    assert json.loads((workdir / "sweep.json").read_text())["status"] == "finished"

    study = optuna.load_study(study_name="intr", storage=f"sqlite:///{workdir}/optuna.db")
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 4
    tune_ids = [t.user_attrs["tune_trial_id"] for t in trials]
    assert len(set(tune_ids)) == 4

    client = mlflow.MlflowClient(f"sqlite:///{workdir}/mlflow.db")
    exp = client.get_experiment_by_name("intr")
    runs = [r for r in client.search_runs([exp.experiment_id]) if r.data.tags.get("htsweep.role") == "trial"]
    assert sorted(r.data.tags["trial_id"] for r in runs) == sorted(tune_ids)  # one run per trial, reopened
    assert all(r.info.status == "FINISHED" for r in runs)
    for run in runs:  # a resumed trial continues its run to the last step, no step logged twice
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "alpha_mean")]
        assert max(steps) == 200

    # Resuming a finished sweep is a no-op that says so.
    again = run_cli("resume", workdir, "--no-report", env=env)
    assert again.returncode == 0
    assert "4/4 trials" in again.stdout
