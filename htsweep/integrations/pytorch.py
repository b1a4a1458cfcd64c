"""Spectral monitoring in a plain PyTorch loop: ``df = monitor(model, step)``.

Examples
--------
>>> import torch
>>> from htsweep.integrations.pytorch import SpectralMonitor
>>> torch.manual_seed(0)  # doctest: +ELLIPSIS
<torch._C.Generator object at ...>
>>> model = torch.nn.Sequential(torch.nn.Linear(64, 48), torch.nn.ReLU(), torch.nn.Linear(48, 4))
>>> monitor = SpectralMonitor(device="cpu")
>>> df = monitor(model, step=0)
>>> list(df["name"]), df.loc[0, "phase"]
(['0', '2'], 'random_like')
>>> sorted(k for k in monitor.metrics() if k.startswith("alpha/"))
['alpha/0', 'alpha/2']
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from htsweep.analysis.aggregate import spectral_aggregates
from htsweep.analysis.farms import FARMS_WINDOWS
from htsweep.trainers.monitor import Analyzer, InProcessAnalyzer, SpectralSnapshot
from htsweep.trainers.monitor import SpectralMonitor as _Engine

if TYPE_CHECKING:
    import pandas as pd
    from torch import nn

__all__ = ["SpectralMonitor"]


class SpectralMonitor:
    """Analyze a model's weight spectra at chosen steps of any training loop.

    Call it as ``monitor(model, step)`` wherever the loop wants a measurement; it returns one row per
    layer (α, phase, MP fit, ranks, ...; the columns of ``htsweep.analyze_model``) and, with
    ``mlflow=True``, logs the aggregates, the per-layer series ``alpha/<layer>``, ``phase_code/<layer>``
    ... and the ``phase.<layer>`` tags to the active MLflow run at ``step``.

    Parameters
    ----------
    mlflow : bool, default=False
        Log each analysis to the active MLflow run (``mlflow.start_run()`` first).
    conv : {'reshape', 'kernel'}, default='reshape'
        How conv weights become matrices (see ``htsweep.analysis.extract_layers``).
    min_dim : int, default=2
        Skip matrices whose smaller side is below this.
    device : str, optional
        Device for the eigendecompositions (default: CUDA when available).
    farms : bool, default=False
        Add the FARMS α (``alpha_farms``, ``alpha_hill_farms``; ``htsweep.analysis.farms``) to every
        row and so to the aggregates.
    farms_windows : int, default=10
        FARMS window offsets per dimension (the paper's 10 cost 4–6× the analysis on CPU; 2 about 1×).
    tail_law : bool, default=False
        Add the tail-law verdict and likelihood ratios (``htsweep.analysis.tail_law``) to every row
        (about 0.01–0.06 s per layer).
    analyzer : callable, optional
        ``analyzer(layers, step) -> list[dict]`` in place of the in-process analysis (e.g. the
        shared ESD actor's ``services.esd_actor.ActorAnalyzer``).

    Attributes
    ----------
    last : SpectralSnapshot or None
        The latest analysis (rows with eigenvalues; ``last.eigs()``).
    """

    def __init__(self, *, mlflow: bool = False, conv: str = "reshape", min_dim: int = 2,
                 device: str | None = None, farms: bool = False,
                 farms_windows: int = FARMS_WINDOWS, tail_law: bool = False,
                 analyzer: Analyzer | None = None) -> None:
        self.mlflow = bool(mlflow)
        self._engine = _Engine(analyzer or InProcessAnalyzer(device=device), conv=conv, min_dim=min_dim,
                              farms=farms, farms_windows=farms_windows, tail_law=tail_law)

    @property
    def last(self) -> SpectralSnapshot | None:
        return self._engine.last

    def __call__(self, model: nn.Module, step: int) -> pd.DataFrame:
        """Analyze ``model`` now; the per-layer table (no ``eigs`` column).

        Raises
        ------
        TypeError
            ``model`` is not a ``torch.nn.Module``.
        FloatingPointError
            A weight matrix holds NaN or Inf.
        RuntimeError
            ``mlflow=True`` and no MLflow run is active.
        """
        snapshot = self._engine.analyze(model, step)
        if self.mlflow:
            from htsweep.services.tracking import log_snapshot

            log_snapshot(snapshot.rows, snapshot.step)
        return snapshot.to_frame()

    def metrics(self) -> dict[str, Any]:
        """The last analysis as flat metrics (``alpha_mean``, ``alpha/<layer>``, ...); empty before one."""
        return spectral_aggregates(self.last.rows) if self.last is not None else {}
