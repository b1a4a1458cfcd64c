"""Faults around the driver, end to end through the real `htsweep` CLI, on one sweep directory.

One sweep of 4 tiny trials lives through, in order:

1. ``htsweep run``: a trial worker's process and the ESD actor's process are SIGKILLed mid-training
   (the trial is retried from its checkpoint, the actor restarts), then Ctrl-C (SIGINT) → exit 130;
2. ``htsweep resume``: the driver alone is SIGKILLed mid-sweep (no chance to save anything);
3. two ``htsweep resume`` started at once: one is refused by the sweep directory's lock, the other
   ends what is left of the killed driver's Ray and finishes the sweep.

The tests then check the exact Optuna and MLflow state, and finally corrupt ``sweep.json``,
``optuna.db`` and ``mlflow.db`` in turn for the one-line errors. Real parts only: local Ray,
sqlite MLflow and Optuna stores, real training.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
from sweep_helpers import (
    REPO,
    cli_env,
    htsweep_cmd,
    kill_pids,
    killable_trial,
    last_step,
    ray_session_dir,
    study_trials,
    tiny_spec,
    write_spec,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(2400)]

NAME = "drv"
N_TRIALS, STEPS, EVERY = 4, 100, 20
REPORT_STEPS = list(range(EVERY, STEPS + 1, EVERY))


def _study_trials(workdir: Path) -> list:
    return study_trials(workdir, NAME)


def _progress(workdir: Path) -> tuple[int, list]:
    """(completed trials, running trials that reported at least once)."""
    from optuna.trial import TrialState

    trials = _study_trials(workdir)
    done = sum(t.state == TrialState.COMPLETE for t in trials)
    return done, [t for t in trials if t.state == TrialState.RUNNING and t.intermediate_values]


def _wait(proc: subprocess.Popen, what: str, condition, timeout: float = 900.0):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if proc.poll() is not None:
            raise AssertionError(f"the driver ended before {what}:\n{proc.stdout.read()[-4000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {timeout:.0f} s")
        time.sleep(0.1)


def _named(session: str, title: str) -> list[int]:
    from htsweep.sweeps.processes import session_processes

    out = []
    for pid in session_processes(session):
        try:
            if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(title.encode()):
                out.append(pid)
        except OSError:
            continue
    return out


def _start(*args, env) -> subprocess.Popen:
    return subprocess.Popen(htsweep_cmd(*args), cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


@pytest.fixture(scope="module")
def story(tmp_path_factory):
    """Run the whole story once; every test below checks one part of the outcome."""
    tmp = tmp_path_factory.mktemp("driver")
    spec = write_spec(tmp / f"{NAME}.yaml", tiny_spec(NAME, train={"steps": STEPS}, max_failures=1,
                                                      monitor={"eval_every": EVERY, "spectral_every": EVERY}))
    workdir = tmp / "sweep"
    env = cli_env()
    out: dict = {"workdir": workdir, "env": env}
    procs: list[subprocess.Popen] = []
    t0 = time.monotonic()

    def mark(what: str) -> None:  # shown with the failure report (or with -s): where the time went
        print(f"[{time.monotonic() - t0:6.1f} s] {what}", flush=True)

    try:
        # 1. run: kill a trial worker and the ESD actor mid-training, then Ctrl-C.
        run = _start("run", spec, "--workdir", workdir, "--quiet", "--no-report", env=env)
        procs.append(run)
        victim, worker = _wait(run, "a trial mid-training and its worker process",
                               lambda: killable_trial(workdir, NAME, EVERY, STEPS), 300)
        session = ray_session_dir(workdir)
        actor = _wait(run, "the ESD actor's process", lambda: _named(session, "ray::ESDService"), 60)
        mark(f"killing trial worker {worker} ({victim.user_attrs['tune_trial_id']}) and ESD actor {actor[0]}")
        os.kill(worker, signal.SIGKILL)
        os.kill(actor[0], signal.SIGKILL)
        out.update(victim=victim.user_attrs["tune_trial_id"], victim_last_step=last_step(workdir, NAME, victim.number, EVERY),
                   actor_pid=actor[0])
        _wait(run, "a new ESD actor process",
              lambda: [p for p in _named(session, "ray::ESDService") if p != actor[0]], 120)
        _wait(run, "a completed trial and a busy one", lambda: _progress(workdir)[0] >= 1 and _progress(workdir)[1])
        mark("SIGINT")
        run.send_signal(signal.SIGINT)
        out["run_out"], _ = run.communicate(timeout=240)
        mark(f"run exited {run.returncode}")
        out["run_code"] = run.returncode
        out["done_after_run"] = _progress(workdir)[0]

        # 2. resume, then SIGKILL of the driver alone while a trial trains.
        first = _start("resume", workdir, "--quiet", "--no-report", env=env)
        procs.append(first)
        before = out["done_after_run"]
        _wait(first, "one more completed trial and a busy one",
              lambda: _progress(workdir)[0] > before and _progress(workdir)[1])
        killed_session = ray_session_dir(workdir)
        mark("SIGKILL of the resumed driver")
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
        out["resume1_out"] = first.stdout.read()
        out["killed_session"] = killed_session
        out["trials_after_kill"] = [(t.number, t.state.name) for t in _study_trials(workdir)]
        from htsweep.sweeps.processes import session_processes

        # Workers of the dead driver exit on their own within seconds; what is still there once the
        # count stops falling (raylet, GCS, ...) is what the resume has to end.
        orphans, deadline = session_processes(killed_session), time.monotonic() + 20
        while time.monotonic() < deadline:
            time.sleep(2.0)
            now = session_processes(killed_session)
            if len(now) == len(orphans):
                break
            orphans = now
        # Freeze them: one that exits on its own between here and the resume would make the check
        # below a race; a stopped process can only go if the resume ends it (SIGKILL still works).
        for pid in orphans:
            try:
                os.kill(pid, signal.SIGSTOP)
            except ProcessLookupError:
                pass
        out["orphans_after_kill"] = orphans
        mark(f"{len(out['orphans_after_kill'])} process(es) of the killed driver's Ray session still alive")

        # 3. two resumes at once: the lock lets one through.
        pair = [_start("resume", workdir, "--quiet", "--no-report", env=env) for _ in range(2)]
        procs.extend(pair)
        results = []
        for proc in pair:
            text, _ = proc.communicate(timeout=600)
            results.append((proc.pid, proc.returncode, text))
            mark(f"a concurrent resume exited {proc.returncode}")
        out["pair"] = results
        out["orphans_after_resume"] = session_processes(killed_session)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if out.get("killed_session"):  # frozen orphans the resume did not end (the test then fails)
            from htsweep.sweeps.processes import session_processes

            kill_pids(session_processes(out["killed_session"]), signals=(signal.SIGKILL,))
    return out


def test_trial_and_actor_kills_then_sigint_save_the_sweep(story):
    assert story["run_code"] == 130, story["run_out"][-4000:]
    out = story["run_out"]
    assert "Sweep interrupted" in out and f"htsweep resume {story['workdir']}" in out
    assert 1 <= story["done_after_run"] <= 2


def test_killed_driver_is_resumed_by_exactly_one_of_two_concurrent_resumes(story):
    (pid_a, code_a, out_a), (pid_b, code_b, out_b) = story["pair"]
    codes = sorted([code_a, code_b])
    assert codes == [0, 2], (out_a[-3000:], out_b[-3000:])
    winner, loser = (pid_a, pid_b) if code_a == 0 else (pid_b, pid_a)
    refused = out_b if code_a == 0 else out_a
    message = [line for line in refused.splitlines() if line.startswith("error:")]
    assert message == [f"error: {story['workdir']} is in use by another htsweep driver (pid {winner} on "
                       f"{socket.gethostname()}); wait for it to end or stop it (Ctrl-C)"], refused[-2000:]
    done = out_a if code_a == 0 else out_b
    assert re.search(rf"{NAME}: \d+/{N_TRIALS} trials \({N_TRIALS} complete", done), done[-3000:]
    assert json.loads((story["workdir"] / "sweep.json").read_text())["status"] == "finished"
    assert loser != winner


def test_nothing_of_the_killed_drivers_ray_session_survives_the_resume(story):
    assert story["killed_session"]
    assert story["orphans_after_resume"] == []
    if story["orphans_after_kill"]:  # Ray did not take them down with the driver: the resume had to
        done = next(text for _, code, text in story["pair"] if code == 0)
        assert "process(es) left by the previous driver's Ray session" in done


def test_optuna_holds_each_trial_once_and_nothing_stays_running(story):
    from optuna.trial import TrialState

    trials = _study_trials(story["workdir"])
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == N_TRIALS
    assert len({t.user_attrs["tune_trial_id"] for t in complete}) == N_TRIALS
    rest = [t for t in trials if t.state != TrialState.COMPLETE]
    assert all(t.state == TrialState.FAIL and "stale" in t.user_attrs for t in rest), [
        (t.number, t.state, t.user_attrs) for t in rest]
    # The SIGKILL left at least the trial that was training RUNNING; the resume closed it.
    assert any(state == "RUNNING" for _, state in story["trials_after_kill"])
    for t in complete:
        assert t.user_attrs["trained"] is True and t.user_attrs["step"] == STEPS


def test_mlflow_every_trial_run_ended_with_a_reason_and_no_step_twice(story):
    import mlflow
    from optuna.trial import TrialState

    workdir = story["workdir"]
    client = mlflow.MlflowClient(f"sqlite:///{workdir}/mlflow.db")
    exp = client.get_experiment_by_name(NAME)
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if r.data.tags.get("htsweep.role") == "sweep"]
    trial_runs = [r for r in runs if r.data.tags.get("htsweep.role") == "trial"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    ids = [r.data.tags["trial_id"] for r in trial_runs]
    assert len(ids) == len(set(ids))  # one run per Tune trial, re-opened on retry and resume
    complete = {t.user_attrs["tune_trial_id"] for t in _study_trials(workdir) if t.state == TrialState.COMPLETE}
    assert complete <= set(ids)
    for run in trial_runs:
        status, reason = run.info.status, run.data.tags.get("htsweep.end_reason", "")
        assert status in ("FINISHED", "FAILED", "KILLED") and reason, (run.data.tags["trial_id"], status, reason)
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "alpha_mean")]
        assert steps == sorted(set(steps)), (run.data.tags["trial_id"], steps)  # no metric step twice
        for key in ("test_acc", "train_loss"):
            other = [m.step for m in client.get_metric_history(run.info.run_id, key)]
            assert other == sorted(set(other)), (key, other)
        if run.data.tags["trial_id"] in complete:
            assert status == "FINISHED" and reason.startswith("completed"), reason
            assert steps == REPORT_STEPS
        else:  # a trial the killed driver had started; the resumed sweep ran a replacement
            assert status == "KILLED" and reason.startswith("orphaned:"), reason
            assert steps == REPORT_STEPS[:len(steps)]


def test_killed_trial_was_retried_from_its_checkpoint(story):
    import mlflow

    workdir = story["workdir"]
    victim = story["victim"]
    client = mlflow.MlflowClient(f"sqlite:///{workdir}/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name(NAME).experiment_id],
                              filter_string=f"tags.trial_id = '{victim}'")
    assert len(runs) == 1
    steps = [m.step for m in client.get_metric_history(runs[0].info.run_id, "alpha_mean")]
    assert steps == sorted(set(steps)) and steps[0] == EVERY
    # Tune's own log of the trial: it went on from its checkpoint, it did not start over at step 20.
    trial_dirs = [d for d in (workdir / "tune").iterdir() if d.is_dir() and victim in d.name]
    assert len(trial_dirs) == 1
    reported = [json.loads(line)["step"] for line in (trial_dirs[0] / "result.json").read_text().splitlines()]
    first_after_kill = story["victim_last_step"] + EVERY
    assert story["victim_last_step"] < STEPS
    assert reported.count(EVERY) == 1 and first_after_kill in reported, reported
    # ... and it was restored: Tune counts iterations since the last restore from 1 again, past step EVERY.
    rows = [json.loads(line) for line in (trial_dirs[0] / "result.json").read_text().splitlines()]
    assert any(r["iterations_since_restore"] == 1 and r["step"] > EVERY for r in rows), rows


def test_resuming_a_finished_sweep_is_a_no_op_that_says_so(story):
    from typer.testing import CliRunner

    from htsweep.sweeps.cli import app

    result = CliRunner().invoke(app, ["resume", str(story["workdir"]), "--no-report"])
    assert result.exit_code == 0, result.output
    assert re.search(rf"{NAME}: \d+/{N_TRIALS} trials \({N_TRIALS} complete", result.output)


def test_corrupt_files_give_one_line_errors(story):
    from typer.testing import CliRunner

    from htsweep.sweeps.cli import app

    workdir = story["workdir"]
    runner = CliRunner()

    def one_line(args, match):
        result = runner.invoke(app, args)
        lines = [line for line in result.output.splitlines() if line.strip()]
        errors = [line for line in lines if line.startswith("error: ")]
        # (`resume` prints its one-line header first.)
        assert result.exit_code == 2 and errors == lines[-1:] and len(lines) <= 2, result.output
        assert match in errors[0], errors[0]
        assert "Traceback" not in result.output
        assert result.exception is None or isinstance(result.exception, SystemExit)

    def corrupted(name):
        target = workdir / name
        backup = target.with_name(name + ".bak")
        shutil.copyfile(target, backup)
        target.write_bytes(b"\x00garbage, not what htsweep wrote\xff" * 64)
        return target, backup

    target, backup = corrupted("sweep.json")
    try:
        one_line(["status", str(workdir)], "sweep.json: corrupt sweep metadata")
        one_line(["resume", str(workdir)], "sweep.json: corrupt sweep metadata")
    finally:
        shutil.move(backup, target)

    target, backup = corrupted("optuna.db")
    try:
        one_line(["status", str(workdir)], "cannot open the Optuna storage at sqlite:///")
        one_line(["status", str(workdir)], "file is not a database")
    finally:
        shutil.move(backup, target)

    meta = json.loads((workdir / "sweep.json").read_text())
    (workdir / "sweep.json").write_text(json.dumps({**meta, "status": "interrupted"}))
    target, backup = corrupted("mlflow.db")
    try:
        one_line(["resume", str(workdir), "--no-report"], "cannot open the MLflow tracking store at sqlite:///")
        assert json.loads((workdir / "sweep.json").read_text())["status"] == "failed"
    finally:
        shutil.move(backup, target)
        (workdir / "sweep.json").write_text(json.dumps(meta))
