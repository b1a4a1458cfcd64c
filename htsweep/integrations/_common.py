"""What the framework callbacks share: the trial session (if any) and chunked metric dicts."""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping
from typing import Any

from htsweep.analysis.farms import FARMS_WINDOWS
from htsweep.trainers.monitor import InProcessAnalyzer
from htsweep.trainers.monitor import SpectralMonitor as _Engine

#: What loggers take in one call (MLflow's log_batch: at most 1000 metrics).
CHUNK = 1000


def active_session() -> Any:
    """The htsweep trial session this process is running, or None (outside a sweep).

    Read from ``sys.modules``: a session exists only once the sweep's trainable imported its module,
    so a plain script never imports the sweep stack (Ray) through a callback.
    """
    module = sys.modules.get("htsweep.sweeps.session")
    return module.current() if module is not None else None


def engine(*, conv: str, min_dim: int, device: str | None, farms: bool = False,
           farms_windows: int = FARMS_WINDOWS, tail_law: bool = False) -> _Engine:
    """The spectral analysis the callbacks run outside a trial (in this process).

    Inside a trial the sweep's session analyzes instead, with the spec's ``monitor`` settings.
    """
    return _Engine(InProcessAnalyzer(device=device), conv=conv, min_dim=min_dim, farms=farms,
                   farms_windows=farms_windows, tail_law=tail_law)


def check_every(every_n_steps: Any) -> int:
    """``every_n_steps`` as a positive int, or a one-line ``ValueError``."""
    if isinstance(every_n_steps, bool) or not isinstance(every_n_steps, int) or every_n_steps < 1:
        raise ValueError(f"every_n_steps must be a positive integer, got {every_n_steps!r}")
    return every_n_steps


def chunks(metrics: Mapping[str, float], size: int = CHUNK) -> Iterator[dict[str, float]]:
    """``metrics`` in dicts of at most ``size`` items."""
    items = list(metrics.items())
    for i in range(0, len(items), size):
        yield dict(items[i:i + size])
