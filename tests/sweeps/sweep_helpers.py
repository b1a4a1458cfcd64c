"""Helpers for the sweep integration tests: tiny specs and running the real `htsweep` CLI."""

from __future__ import annotations

import atexit
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
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


# -- killing one trial's worker mid-training ------------------------------------------------------------------
def study_trials(workdir: Path, name: str) -> list:
    """The Optuna trials of sweep ``name`` in ``workdir`` ([] while the driver is still creating the study)."""
    import optuna

    db = workdir / "optuna.db"
    if not db.exists():
        return []
    try:
        return optuna.load_study(study_name=name, storage=f"sqlite:///{db}").get_trials(deepcopy=False)
    except Exception:  # noqa: BLE001 - the driver is still creating the study
        return []


def last_step(workdir: Path, name: str, number: int, every: int) -> int:
    """The last step trial ``number`` reported to Optuna (one report, keyed by training_iteration, per ``every``)."""
    trial = next(t for t in study_trials(workdir, name) if t.number == number)
    return every * max(trial.intermediate_values, default=0)


def ray_session_dir(workdir: Path) -> str | None:
    try:
        return json.loads((workdir / "sweep.json").read_text()).get("ray_session_dir")
    except (OSError, ValueError):
        return None


def worker_of(session: str, tune_trial_id: str) -> int | None:
    """PID of the Ray worker training ``tune_trial_id`` (Tune runs it in the trial's directory)."""
    from htsweep.sweeps.processes import session_processes

    for pid in session_processes(session):
        try:
            if tune_trial_id in os.readlink(f"/proc/{pid}/cwd"):
                return pid
        except OSError:
            continue
    return None


def killable_trial(workdir: Path, name: str, every: int, steps: int):
    """``(optuna trial, worker pid)`` of a RUNNING trial that has reported but has two reports to go.

    Killed after its last report, a trial has nothing left to redo and its retry shows nothing; the
    step is read again once the worker is found, since a small trial moves on while we look.
    """
    from optuna.trial import TrialState

    session = ray_session_dir(workdir)
    if not session:
        return None
    for trial in study_trials(workdir, name):
        if trial.state != TrialState.RUNNING or not trial.intermediate_values:
            continue
        worker = worker_of(session, trial.user_attrs.get("tune_trial_id", "?"))
        if worker and last_step(workdir, name, trial.number, every) <= steps - 2 * every:
            return trial, worker
    return None


def sweep_user_project(root: Path, spec_file: str, edit: Callable[[dict], None], *, every: int,
                       steps: int) -> dict[str, Any]:
    """Copy ``examples/user_project`` to ``root/proj`` beside raising ``analysis/`` and ``models/`` packages,
    run ``htsweep run`` on its edited ``spec_file`` from there (no PYTHONPATH), SIGKILL one trial's worker
    mid-training and let the sweep finish. Returns the workdir, the victim's tune id and last step before
    the kill, the driver's output and exit code.
    """
    proj = root / "proj"
    shutil.copytree(REPO / "examples" / "user_project", proj, ignore=shutil.ignore_patterns("runs", "__pycache__"))
    for pkg in ("analysis", "models"):  # a research repo's own packages: must never be imported by us
        (proj / pkg).mkdir()
        (proj / pkg / "__init__.py").write_text(f"raise ImportError('the project\\'s own {pkg} was imported')\n")
    spec = yaml.safe_load((proj / spec_file).read_text())
    edit(spec)
    (proj / "specs" / "e2e.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    env = cli_env()
    env.pop("PYTHONPATH", None)
    workdir = proj / "runs" / "e2e"
    htsweep = str(Path(sys.executable).with_name("htsweep"))
    run = subprocess.Popen([htsweep, "run", "specs/e2e.yaml", "--workdir", "runs/e2e", "--quiet", "--no-report"],
                           cwd=proj, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out: dict[str, Any] = {"workdir": workdir}
    try:
        deadline = time.monotonic() + 900
        while (busy := killable_trial(workdir, spec["name"], every, steps)) is None:
            assert run.poll() is None, run.stdout.read()[-4000:]
            assert time.monotonic() < deadline, "no trial reported mid-training"
            time.sleep(0.2)
        trial, pid = busy
        os.kill(pid, signal.SIGKILL)
        out["victim"] = trial.user_attrs["tune_trial_id"]
        out["victim_step"] = last_step(workdir, spec["name"], trial.number, every)
        out["output"], _ = run.communicate(timeout=1200)
        out["code"] = run.returncode
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    return out


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
