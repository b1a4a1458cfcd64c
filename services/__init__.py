"""Long-lived parts of a sweep: the shared ESD Ray actor and MLflow tracking and server.

Exports are resolved lazily, so ``import services`` does not import Ray or MLflow:

- ``services.esd_actor``: :func:`get_esd_service`, :func:`shutdown_esd_service`,
  :class:`ActorAnalyzer`, :class:`ESDService`.
- ``services.tracking``: :class:`TrackingConfig`, :func:`init_store`, :func:`start_sweep_run`,
  :func:`end_sweep_run`, :func:`flush_buffers`, :class:`TrialRunLogger` (the trainers callback
  around it is ``sweeps.trial_logger.MlflowTrialLogger``).
- ``services.mlflow_server``: :func:`start_server`, :func:`serve_ui`, :class:`MlflowServer`.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ActorAnalyzer": "htsweep.services.esd_actor",
    "ESDService": "htsweep.services.esd_actor",
    "get_esd_service": "htsweep.services.esd_actor",
    "shutdown_esd_service": "htsweep.services.esd_actor",
    "TrackingConfig": "htsweep.services.tracking",
    "TrialRunLogger": "htsweep.services.tracking",
    "default_tracking_uri": "htsweep.services.tracking_uri",
    "end_sweep_run": "htsweep.services.tracking",
    "flush_buffers": "htsweep.services.tracking",
    "init_store": "htsweep.services.tracking",
    "start_sweep_run": "htsweep.services.tracking",
    "MlflowServer": "htsweep.services.mlflow_server",
    "serve_ui": "htsweep.services.mlflow_server",
    "start_server": "htsweep.services.mlflow_server",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
