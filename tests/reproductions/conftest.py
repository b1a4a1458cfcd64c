"""Full-size reproductions: the shipped specs run through ``htsweep run`` (slow tests only).

``HTSWEEP_REPRO_RUNS=DIR`` points at finished sweeps ``DIR/<spec name>`` (as
``benchmarks/reproductions.py`` reads them) to check those instead of running the sweeps again.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from benchmarks.repro_records import EXAMPLES, TrialRecord, records_from_sweep


@pytest.fixture(scope="session")
def full_sweep(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., list[TrialRecord]]:
    """``full_sweep(name, **kw)``: the records of the shipped spec ``name`` run at full size."""
    from tests.sweeps.sweep_helpers import cli_env, run_cli

    def run(name: str, **kwargs) -> list[TrialRecord]:
        root = os.environ.get("HTSWEEP_REPRO_RUNS")
        workdir = Path(root) / name if root else tmp_path_factory.mktemp("repro") / name
        if not (workdir / "sweep.json").is_file():
            proc = run_cli("run", str(EXAMPLES / f"{name}.yaml"), "--workdir", str(workdir), "--quiet",
                           "--no-report", env=cli_env(), timeout=5400)
            assert proc.returncode == 0, proc.stdout[-3000:]
        return records_from_sweep(workdir, **kwargs)

    return run
