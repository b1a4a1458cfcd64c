"""Losing a worker node mid-sweep, on a real two-node Ray cluster on this machine.

The worker node's raylet and every Ray worker it started (the trial training on it included) are
SIGKILLed while a trial trains there. Ray Tune retries that trial on the head from its last
checkpoint; the sweep finishes, and MLflow and Optuna each hold every trial exactly once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest
from sweep_helpers import REPO, htsweep_cmd, kill_pids, tiny_spec, write_spec

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1800)]

NAME = "nodeloss"
N_TRIALS, STEPS, EVERY = 4, 100, 20
REPORT_STEPS = list(range(EVERY, STEPS + 1, EVERY))


def _running_on(pids: list[int], trials) -> tuple | None:
    """(Optuna trial, worker pid) of a trial that reported at least once and trains in one of ``pids``."""
    for trial in trials:
        tune_id = trial.user_attrs.get("tune_trial_id")
        if not (tune_id and trial.intermediate_values):
            continue
        for pid in pids:
            try:
                if tune_id in os.readlink(f"/proc/{pid}/cwd"):  # Tune runs a trial in its own directory
                    return trial, pid
            except OSError:
                continue
    return None


def test_worker_node_lost_mid_sweep_trials_retry_on_the_head_and_nothing_is_duplicated(two_node_cluster, tmp_path):
    import mlflow
    import optuna
    from optuna.trial import TrialState

    cluster = two_node_cluster
    spec = write_spec(tmp_path / f"{NAME}.yaml", tiny_spec(NAME, train={"steps": STEPS}, max_failures=2))
    workdir = tmp_path / "sweep"
    storage = f"sqlite:///{workdir}/optuna.db"
    proc = subprocess.Popen(htsweep_cmd("run", spec, "--address", cluster.address, "--workdir", workdir, "--quiet",
                                        "--no-report"), cwd=REPO, env=cluster.env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 400
        while True:
            assert proc.poll() is None, proc.stdout.read()[-4000:]
            assert time.monotonic() < deadline, "no trial trained on the worker node within 400 s"
            try:
                trials = optuna.load_study(study_name=NAME, storage=storage).get_trials(deepcopy=False)
            except Exception:  # noqa: BLE001 - the driver is still creating the study
                trials = []
            found = _running_on(cluster.worker_pids, [t for t in trials if t.state == TrialState.RUNNING])
            if found:
                break
            time.sleep(0.1)
        victim, worker = found
        victim_id = victim.user_attrs["tune_trial_id"]
        last_step = EVERY * max(victim.intermediate_values)  # intermediate values are keyed by report
        node_b = cluster.worker_pids
        assert worker in node_b
        kill_pids(node_b, signals=(signal.SIGKILL,))  # the node is gone: raylet, agents, workers
        out, _ = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, out[-4000:]
    assert f"{NAME}: {N_TRIALS}/{N_TRIALS} trials ({N_TRIALS} complete)" in out
    # Stores only this machine sees are named at start (the two nodes here share a disk; a real cluster would not).
    assert "2-node cluster, but storage_path" in out and "is node-local" in out
    assert "2-node cluster, but the tracking store sqlite:///" in out

    trials = optuna.load_study(study_name=NAME, storage=storage).get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * N_TRIALS  # the retried trial kept its Optuna trial
    tune_ids = [t.user_attrs["tune_trial_id"] for t in trials]
    assert len(set(tune_ids)) == N_TRIALS and victim_id in tune_ids
    survivor = next(t for t in trials if t.user_attrs["tune_trial_id"] == victim_id)
    assert survivor.user_attrs["step"] == STEPS and survivor.user_attrs["trained"] is True
    assert len({t.user_attrs["node_id"] for t in trials}) >= 1

    client = mlflow.MlflowClient(f"sqlite:///{workdir}/mlflow.db")
    exp = client.get_experiment_by_name(NAME)
    runs = [r for r in client.search_runs([exp.experiment_id]) if r.data.tags.get("htsweep.role") == "trial"]
    assert sorted(r.data.tags["trial_id"] for r in runs) == sorted(tune_ids)  # one run per trial
    for run in runs:
        assert run.info.status == "FINISHED" and run.data.tags["htsweep.end_reason"] == "completed"
        for key in ("alpha_mean", "test_acc"):
            steps = [m.step for m in client.get_metric_history(run.info.run_id, key)]
            assert steps == REPORT_STEPS, (run.data.tags["trial_id"], key, steps)  # no step lost, none twice
    # The victim went on from its checkpoint on the head: Tune's log of it never went back to step 20.
    trial_dir = next(d for d in (workdir / "tune").iterdir() if d.is_dir() and victim_id in d.name)
    reported = [json.loads(line)["step"] for line in (trial_dir / "result.json").read_text().splitlines()]
    assert reported.count(EVERY) == 1 and last_step + EVERY in reported, reported
