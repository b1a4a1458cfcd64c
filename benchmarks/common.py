"""Shared helpers for the benchmarks: an asv-style ``Benchmark`` base, optional imports, gates.

Benchmark classes follow airspeed-velocity conventions (``params``/``param_names``, ``setup``
building seeded inputs outside the timed code, one call per ``time_*`` method), so they run
under asv as well as through each script's own ``main()``.
"""

from __future__ import annotations

import importlib
import os
import time
from collections.abc import Callable
from types import ModuleType
from typing import Any

__all__ = ["Benchmark", "best_time", "is_xslow", "require_memory", "safe_import", "single_thread_env"]


class Benchmark:
    """Base class: subclasses set ``params``, ``param_names`` and define ``setup`` + ``time_*``."""

    params: list[list[Any]] = []
    param_names: list[str] = []
    timeout = 600.0

    def setup(self, *params: Any) -> None:  # pragma: no cover - overridden
        """Build the (seeded) inputs for one parameter combination."""


def single_thread_env() -> None:
    """Pin BLAS/OpenMP to one thread; call before numpy/torch are imported."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS",
                "VECLIB_MAXIMUM_THREADS"):
        os.environ[var] = "1"


def safe_import(name: str) -> ModuleType | None:
    """Import an optional dependency; ``None`` when it is not installed or fails to import."""
    try:
        return importlib.import_module(name)
    except Exception:  # noqa: BLE001 - any import failure means "not available"
        return None


def is_xslow() -> bool:
    """True when ``HTSWEEP_BENCH_XSLOW=1``: enables the largest sizes."""
    return os.environ.get("HTSWEEP_BENCH_XSLOW", "0") not in ("", "0")


def require_memory(gib: float) -> None:
    """Skip (asv convention: raise NotImplementedError) when less than ``gib`` GiB RAM is free."""
    try:
        with open("/proc/meminfo") as fh:
            info = {line.split(":")[0]: int(line.split()[1]) for line in fh}
        free = info.get("MemAvailable", 0) / 2**20
    except OSError:
        return
    if free < gib:
        raise NotImplementedError(f"needs {gib} GiB free memory, have {free:.1f}")


def best_time(fn: Callable[[], Any], *, repeat: int = 3, min_total: float = 0.0) -> float:
    """Smallest wall time (s) of ``fn()`` over ``repeat`` runs (more runs while under ``min_total``)."""
    times: list[float] = []
    total = 0.0
    while len(times) < repeat or total < min_total:
        t0 = time.perf_counter()
        fn()
        dt = time.perf_counter() - t0
        times.append(dt)
        total += dt
        if len(times) >= 1000:
            break
    return min(times)
