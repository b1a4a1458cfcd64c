"""Slow, real multi-process scenarios: a two-node local Ray cluster, and a hard kill of the driver.

* Two nodes on one machine (``ray start --head`` + ``ray start --address``, 1 CPU and a custom
  resource each, one token for head, worker and driver): ``htsweep run --address`` runs trials on
  both nodes and every trial reaches MLflow.
* SIGKILL of ``htsweep run`` (no chance to save), then ``htsweep resume``: the sweep finishes with
  the planned number of completed Optuna trials; trials orphaned RUNNING are marked FAIL.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from sweep_helpers import REPO, cli_env, htsweep_cmd, run_cli, tiny_spec, write_spec

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

RAY = str(Path(sys.executable).with_name("ray"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _session_pids(sid: int) -> list[int]:
    """PIDs of processes in session ``sid`` (everything `ray start` daemonized for us)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[3]) == sid and int(entry.name) != os.getpid():
            pids.append(int(entry.name))
    return pids


def _cmdline_pids(needle: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if needle in (entry / "cmdline").read_bytes().decode(errors="replace"):
                    pids.append(int(entry.name))
            except OSError:
                continue
    return [p for p in pids if p != os.getpid()]


def _kill(pids: list[int]) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        time.sleep(1.0)


@pytest.fixture()
def two_node_cluster():
    """Head (node_a) + worker (node_b), 1 CPU each, token auth; torn down by process id."""
    temp_dir = tempfile.mkdtemp(prefix="htsc-", dir="/tmp")
    token = Path(temp_dir) / "auth_token"
    token.write_text(secrets.token_hex(32))
    env = cli_env(ray_tmp=temp_dir)
    env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token))
    port = _free_port()
    sessions = []
    try:
        for args in (
            ["--head", f"--port={port}", "--num-cpus=1", '--resources={"node_a": 1}', f"--temp-dir={temp_dir}",
             "--include-dashboard=false", "--disable-usage-stats"],
            [f"--address=127.0.0.1:{port}", "--num-cpus=1", '--resources={"node_b": 1}', "--disable-usage-stats"],
        ):
            p = subprocess.Popen([RAY, "start", *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                 text=True, start_new_session=True)
            sessions.append(p.pid)
            out, _ = p.communicate(timeout=120)
            assert p.returncode == 0, out
        yield f"127.0.0.1:{port}", env
    finally:
        pids = set(_cmdline_pids(temp_dir))
        for sid in sessions:
            pids.update(_session_pids(sid))
        _kill(sorted(pids))
        shutil.rmtree(temp_dir, ignore_errors=True)


def test_sweep_on_two_node_cluster(two_node_cluster, tmp_path):
    import mlflow
    import optuna
    from optuna.trial import TrialState

    address, env = two_node_cluster
    spec = write_spec(tmp_path / "cluster.yaml", tiny_spec("cluster"))
    workdir = tmp_path / "sweep"
    proc = run_cli("run", spec, "--address", address, "--workdir", workdir, "--quiet", "--no-report", env=env)
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert f"Ray at {address}" in proc.stdout

    trials = optuna.load_study(study_name="cluster", storage=f"sqlite:///{workdir}/optuna.db").get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 4
    nodes = {t.user_attrs["node_id"] for t in trials}
    assert len(nodes) == 2, nodes  # 1 CPU per node, 2 concurrent 1-CPU trials: both nodes work

    client = mlflow.MlflowClient(f"sqlite:///{workdir}/mlflow.db")
    exp = client.get_experiment_by_name("cluster")
    runs = [r for r in client.search_runs([exp.experiment_id]) if r.data.tags.get("htsweep.role") == "trial"]
    assert sorted(r.data.tags["trial_id"] for r in runs) == sorted(t.user_attrs["tune_trial_id"] for t in trials)
    for run in runs:
        assert run.info.status == "FINISHED"
        assert "alpha/fc2" in run.data.metrics and "phase" in run.data.tags
        assert any(f.path.endswith(".npz") for f in client.list_artifacts(run.info.run_id, "esd"))


def test_hard_kill_then_resume(tmp_path):
    import optuna
    from optuna.trial import TrialState

    spec = write_spec(tmp_path / "kill.yaml", tiny_spec("kill", train={"steps": 200}))
    workdir = tmp_path / "sweep"
    env = cli_env()
    proc = subprocess.Popen(htsweep_cmd("run", spec, "--workdir", workdir, "--quiet", "--no-report"), cwd=REPO,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    storage = f"sqlite:///{workdir}/optuna.db"
    try:
        deadline = time.monotonic() + 300
        while True:
            assert proc.poll() is None and time.monotonic() < deadline
            try:
                trials = optuna.load_study(study_name="kill", storage=storage).get_trials(deepcopy=False)
            except Exception:  # noqa: BLE001 - the driver is still creating the study
                trials = []
            done = sum(t.state == TrialState.COMPLETE for t in trials)
            busy = sum(t.state == TrialState.RUNNING and bool(t.intermediate_values) for t in trials)
            if done >= 1 and busy >= 1:  # one trial done, another mid-training
                break
            time.sleep(0.1)
        os.killpg(proc.pid, signal.SIGKILL)  # driver and everything in its session: no goodbye
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    # Ray workers the driver forked live in other sessions; end those that belonged to this sweep.
    _kill(_cmdline_pids(env["RAY_TMPDIR"]))

    before = optuna.load_study(study_name="kill", storage=storage).get_trials()
    assert sum(t.state == TrialState.COMPLETE for t in before) < 4
    assert any(t.state == TrialState.RUNNING for t in before)

    resumed = run_cli("resume", workdir, "--quiet", "--no-report", env=env)
    assert resumed.returncode == 0, resumed.stdout[-4000:]
    trials = optuna.load_study(study_name="kill", storage=storage).get_trials()
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 4
    assert all(t.state in (TrialState.COMPLETE, TrialState.FAIL) for t in trials)  # nothing left RUNNING
    assert len({t.user_attrs["tune_trial_id"] for t in complete}) == 4
