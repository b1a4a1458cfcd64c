"""Fixtures shared by the sweep tests: a two-node Ray cluster on this machine, and one small
finished sweep for every read-only assertion."""

from __future__ import annotations

import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from sweep_helpers import (
    FAST_HEALTH_CHECKS,
    RAY,
    Cluster,
    cli_env,
    cmdline_pids,
    free_port,
    kill_pids,
    run_cli,
    session_pids,
    tiny_spec,
    write_spec,
)


@pytest.fixture()
def two_node_cluster():
    """Head + worker node on this machine, token auth; torn down by process id."""
    temp_dir = tempfile.mkdtemp(prefix="htsc-", dir="/tmp")
    token = Path(temp_dir) / "auth_token"
    token.write_text(secrets.token_hex(32))
    env = cli_env(ray_tmp=temp_dir)
    env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token), **FAST_HEALTH_CHECKS)
    port = free_port()
    cluster = Cluster(f"127.0.0.1:{port}", env, temp_dir)
    try:
        for args in (
            ["--head", f"--port={port}", "--num-cpus=1", '--resources={"node_a": 1}', f"--temp-dir={temp_dir}",
             "--include-dashboard=false", "--disable-usage-stats"],
            [f"--address=127.0.0.1:{port}", "--num-cpus=1", '--resources={"node_b": 1}', "--disable-usage-stats"],
        ):
            p = subprocess.Popen([RAY, "start", *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                 text=True, start_new_session=True)
            cluster.sessions.append(p.pid)
            out, _ = p.communicate(timeout=180)
            assert p.returncode == 0, out
        yield cluster
    finally:
        pids = set(cmdline_pids(temp_dir))
        for sid in cluster.sessions:
            pids.update(session_pids(sid))
        kill_pids(sorted(pids))
        shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def finished(tmp_path_factory):
    """One completed sweep of 4 trials (`htsweep run` in a subprocess): (workdir, CompletedProcess).

    Session-scoped so the end-to-end checks, the report and the MLflow UI tests read the same
    sweep instead of training it again; tests must not modify it.
    """
    tmp = tmp_path_factory.mktemp("e2e")
    # monitor.farms: the opt-in FARMS α travels the whole way (monitor, MLflow, report) without steering
    spec = write_spec(tmp / "tiny.yaml", tiny_spec("e2e", monitor={"farms": True}))
    workdir = tmp / "sweep"
    proc = run_cli("run", spec, "--workdir", workdir, "--quiet", env=cli_env())
    return workdir, proc
