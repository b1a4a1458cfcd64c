"""Helpers for the sweep integration tests: tiny specs and running the real `htsweep` CLI."""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
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
    return [sys.executable, "-m", "sweeps.cli", *map(str, args)]


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run ``htsweep ARGS`` to completion; stdout and stderr merged into ``.stdout``."""
    return subprocess.run(htsweep_cmd(*args), cwd=REPO, env=env or cli_env(), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=timeout)
