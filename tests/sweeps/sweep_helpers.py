"""Helpers for the sweep integration tests: tiny specs and running the real `htsweep` CLI."""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]


def tiny_spec(name: str, **overrides: Any) -> dict[str, Any]:
    """A sweep of 4 tiny MLPs on sklearn digits (a few seconds of training each)."""
    spec: dict[str, Any] = {
        "name": name,
        "model": "mlp3",
        "dataset": "digits",
        "train": {"steps": 40, "optimizer": "sgd", "model_kwargs": {"width": 32}, "threads": 1},
        "search": {
            "lr": {"type": "loguniform", "low": 0.02, "high": 0.5},
            "batch_size": {"type": "choice", "values": [8, 32]},
        },
        "monitor": {"eval_every": 20, "spectral_every": 20},
        "objective": {"target_alpha": 2.0, "min_test_accuracy": 0.15},
        "num_samples": 4,
        "max_concurrent_trials": 2,
        "sampler": {"type": "tpe", "n_startup_trials": 2},
        "seed": 0,
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(spec.get(key), dict):
            spec[key] = {**spec[key], **value}
        else:
            spec[key] = value
    return spec


def write_spec(path: Path, spec: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def cli_env(ray_tmp: str | None = None) -> dict[str, str]:
    """Environment for a CLI subprocess: its own Ray temp dir, no inherited tracking URI."""
    env = dict(os.environ)
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("HTSWEEP_TRACKING_URI", None)
    env.pop("RAY_ADDRESS", None)
    if ray_tmp is None:  # short path: Ray's unix sockets live under it (~107 char limit)
        ray_tmp = tempfile.mkdtemp(prefix="htsw-", dir="/tmp")
        atexit.register(shutil.rmtree, ray_tmp, ignore_errors=True)
    env["RAY_TMPDIR"] = ray_tmp
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("COLUMNS", "160")
    return env


def htsweep_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "htsweep.sweeps.cli", *map(str, args)]


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run ``htsweep ARGS`` to completion; stdout and stderr merged into ``.stdout``."""
    return subprocess.run(htsweep_cmd(*args), cwd=REPO, env=env or cli_env(), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=timeout)


# -- a two-node Ray cluster on one machine (see conftest.two_node_cluster) ------------------------------------
RAY = str(Path(sys.executable).with_name("ray"))
# Notice a lost node within seconds (Ray's defaults take ~15-30 s).
FAST_HEALTH_CHECKS = {"RAY_health_check_initial_delay_ms": "1000", "RAY_health_check_period_ms": "1000",
                      "RAY_health_check_timeout_ms": "1000", "RAY_health_check_failure_threshold": "3"}


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def session_pids(sid: int) -> list[int]:
    """PIDs of processes in session ``sid`` (everything a `ray start` daemonized, and their workers)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[3]) == sid and int(entry.name) != os.getpid() and fields[0] != "Z":
            pids.append(int(entry.name))
    return pids


def cmdline_pids(needle: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if needle in (entry / "cmdline").read_bytes().decode(errors="replace"):
                    pids.append(int(entry.name))
            except OSError:
                continue
    return [p for p in pids if p != os.getpid()]


def kill_pids(pids: list[int], signals=(signal.SIGTERM, signal.SIGKILL)) -> None:
    for sig in signals:
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        time.sleep(1.0)


@dataclass
class Cluster:
    """A head (custom resource ``node_a``) and a worker (``node_b``) node, 1 CPU each, one auth token."""

    address: str
    env: dict[str, str]
    temp_dir: str
    sessions: list[int] = field(default_factory=list)  # the session of each `ray start` (head, worker)

    @property
    def worker_pids(self) -> list[int]:
        """The worker node's processes: its raylet and every Ray worker it started."""
        return session_pids(self.sessions[1])
