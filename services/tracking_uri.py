"""Which MLflow tracking URI a sweep uses, in one place.

Kept apart from :mod:`services.tracking` so that reading a sweep directory (``htsweep status``,
:mod:`sweeps.workdir`) never pays for ``import mlflow``.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["default_tracking_uri"]


def default_tracking_uri(workdir: str | Path, uri: str | None = None) -> str:
    """The tracking URI for a sweep directory.

    ``uri`` (the spec's ``tracking.uri``), else ``$HTSWEEP_TRACKING_URI``, else
    ``$MLFLOW_TRACKING_URI``, else ``sqlite:///<workdir>/mlflow.db`` (absolute).
    """
    if uri:
        return uri
    for var in ("HTSWEEP_TRACKING_URI", "MLFLOW_TRACKING_URI"):
        if os.environ.get(var):
            return os.environ[var]
    return f"sqlite:///{Path(workdir).resolve() / 'mlflow.db'}"
