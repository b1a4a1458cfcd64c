"""htsweep: hyperparameter sweeps that map how training shapes the spectra of neural-network weights.

The repository's four package folders install as subpackages of this one namespace (a setuptools
``package-dir`` mapping), so a user's own ``analysis/`` or ``models/`` folder never shadows them:

- :mod:`htsweep.analysis`: ESDs, power-law and Marchenko–Pastur fits, metrics, phases (pure math);
- :mod:`htsweep.trainers`: models, data, the training loop with spectral monitoring;
- :mod:`htsweep.services`: the shared ESD Ray actor, MLflow tracking and server;
- :mod:`htsweep.sweeps`: sweep specs, Ray Tune + Optuna wiring, the ``htsweep`` CLI.

:mod:`htsweep.integrations` brings the monitoring to other loops (plain PyTorch, Lightning, the 🤗
Trainer). The names below are the small public API; they are imported on first use, so ``import htsweep``
stays cheap (the CLI imports it before every command).

Examples
--------
>>> import numpy as np
>>> import htsweep
>>> W = np.random.default_rng(0).standard_normal((300, 100))
>>> row = htsweep.analyze_matrix(W)
>>> row["phase"]
'random_like'
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.3.0"

_EXPORTS = {
    "analyze_matrix": "htsweep.analysis",
    "esd": "htsweep.analysis",
    "fit_power_law": "htsweep.analysis",
    "fit_marchenko_pastur": "htsweep.analysis",
    "classify_phase": "htsweep.analysis",
    "PHASES": "htsweep.analysis",
    "SpectralMonitor": "htsweep.integrations.pytorch",
}
_SUBPACKAGES = ("analysis", "trainers", "services", "sweeps")

__all__ = sorted([*_EXPORTS, "analyze_model"]) + ["__version__"]


def analyze_model(model: Any, *, ray_address: str | None = None, **kw: Any) -> Any:
    """:func:`htsweep.analysis.analyze_model`, optionally with the layers spread over a Ray cluster.

    Parameters
    ----------
    model : torch.nn.Module, str or Path
        A module or a checkpoint (file or model folder).
    ray_address : str, optional
        ``"auto"``, ``"HOST:PORT"`` or ``"local"``: one Ray task per layer on that cluster
        (:mod:`htsweep.sweeps.analyze_cluster`; a checkpoint path must be readable at the same
        place on every node). A process already connected to Ray uses its connection. Rows are
        identical to the local run's.
    **kw
        As for :func:`htsweep.analysis.analyze_model`.

    Returns
    -------
    pandas.DataFrame
    """
    from htsweep.analysis import analyze_model as local

    if ray_address is None:
        return local(model, **kw)
    from htsweep.sweeps.analyze_cluster import ray_runner

    return local(model, runner=ray_runner(ray_address), **kw)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    if name in _SUBPACKAGES:
        return importlib.import_module(f"htsweep.{name}")
    raise AttributeError(f"module 'htsweep' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS) | set(_SUBPACKAGES))
