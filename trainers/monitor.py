"""Spectral monitoring during training: the ``SpectralMonitor`` callback and its snapshots.

``SpectralMonitor`` extracts a model's weight matrices (``analysis.extract_layers``), hands them to
an *analyzer* — ``analyzer(layers, step) -> list[dict]``, one metrics row per layer as documented
in ``docs/interfaces.md`` — and publishes the result: ``trainer.spectral`` becomes a
``SpectralSnapshot`` and ``analysis.aggregate.spectral_aggregates(rows)`` is merged into
``trainer.callback_metrics``, so the next ``on_report`` carries it. The default analyzer runs
``analysis.analyze_layers`` in-process; the sweep passes one backed by the shared ESD actor.
With ``farms=True`` the monitor adds the FARMS α (``alpha_farms``, ``alpha_hill_farms``,
:mod:`analysis.farms`) to every row itself, in the trial's process, whichever analyzer computed
the rest (the ESD actor's protocol stays as it is).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from htsweep.analysis._validation import Interval, check_value
from htsweep.analysis.aggregate import spectral_aggregates
from htsweep.analysis.analyze import MIN_FIT_EIGS, MONITOR_PRECISION, analyze_layers
from htsweep.analysis.farms import FARMS_WINDOWS
from htsweep.analysis.farms import farms as farms_alphas
from htsweep.analysis.layers import extract_layers
from htsweep.analysis.metric_names import FARMS_KEYS, RowKey
from htsweep.analysis.tail_law import tail_law_row
from htsweep.trainers.callbacks import Callback

if TYPE_CHECKING:
    import pandas as pd
    from torch import nn

    from htsweep.trainers.train import Trainer

__all__ = [
    "Analyzer",
    "InProcessAnalyzer",
    "SpectralMonitor",
    "SpectralSnapshot",
]

Analyzer = Callable[[list, int], list]
"""``analyzer(layers: list[LayerMatrix], step: int) -> list[dict]`` (rows with ``"eigs"``)."""


@dataclass(frozen=True)
class SpectralSnapshot:
    """The spectral analysis of a model at one training step.

    Attributes
    ----------
    step : int
        Optimizer steps done when the weights were analyzed.
    rows : list of dict
        One metrics row per layer (keys as in ``docs/interfaces.md``); each may carry ``"eigs"``,
        an ndarray of shape ``(m,)`` with the layer's ascending eigenvalues.
    """

    step: int
    rows: list[dict[str, Any]] = field(default_factory=list)

    @property
    def names(self) -> list[str]:
        """Layer names in row order."""
        return [str(r.get(RowKey.NAME, "")) for r in self.rows]

    def layer(self, name: str) -> dict[str, Any]:
        """The row of layer ``name`` (``KeyError`` listing the names if absent)."""
        for row in self.rows:
            if row.get(RowKey.NAME) == name:
                return row
        raise KeyError(f"no layer {name!r} in the snapshot; layers: {', '.join(self.names)}")

    def eigs(self) -> dict[str, np.ndarray]:
        """Layer name → eigenvalues ``(m,)`` for the rows that carry them."""
        return {str(r[RowKey.NAME]): np.asarray(r[RowKey.EIGS]) for r in self.rows if r.get(RowKey.EIGS) is not None}

    def to_frame(self) -> pd.DataFrame:
        """The rows as a DataFrame, without the ``eigs`` column."""
        import pandas as pd

        return pd.DataFrame([{k: v for k, v in r.items() if k != RowKey.EIGS} for r in self.rows])


def _check_finite(layers: Sequence[Any], step: int) -> None:
    """Raise ``FloatingPointError`` naming the first layer with NaN/Inf weights (the run diverged)."""
    import torch

    for layer in layers:
        if not bool(torch.isfinite(layer.matrix).all()):
            raise FloatingPointError(f"non-finite weights in layer {layer.name} at step {step}")


class InProcessAnalyzer:
    """The default analyzer: ``analysis.analyze_layers`` in this process.

    Parameters
    ----------
    device : str, optional
        Device for the batched eigendecompositions (default: CUDA when available).
    localization : bool, default=False
        Also compute eigenvector localization metrics.
    """

    def __init__(self, *, device: str | None = None, localization: bool = False):
        self.device, self.localization, self.precision = device, localization, MONITOR_PRECISION

    def __call__(self, layers: list, step: int) -> list[dict[str, Any]]:
        """Analyze ``layers`` (``step`` is unused in-process)."""
        return analyze_layers(layers, device=self.device, localization=self.localization, precision=self.precision)


class SpectralMonitor(Callback):
    """Analyze the model's weight spectra in ``on_monitor`` and publish the results.

    Parameters
    ----------
    analyzer : callable, optional
        ``analyzer(layers: list[LayerMatrix], step: int) -> list[dict]``; default
        ``InProcessAnalyzer()`` (made at ``on_fit_start``).
    conv : {'reshape', 'kernel'}, default='reshape'
        How conv weights become matrices (see ``analysis.extract_layers``).
    min_dim : int, default=2
        Skip matrices whose smaller side is below this.
    farms : bool, default=False
        Add ``alpha_farms`` / ``alpha_hill_farms`` to every row (and so their aggregates); set by
        the sweep when ``objective.metric`` or ``alpha_balance.metric`` is ``alpha_farms``.
    farms_windows : int, default=FARMS_WINDOWS
        FARMS window offsets per dimension (``analysis.analyze_layers``; 2 costs about one
        analysis instead of 4–6); the sweep's ``monitor.farms_windows``.
    tail_law : bool, default=False
        Add the tail-law keys (``analysis.tail_law``: verdict, likelihood ratios) to every row, from
        its eigenvalues and power-law fit (about 0.1–1 s per layer); the sweep's ``monitor.tail_law``.

    Attributes
    ----------
    last : SpectralSnapshot or None
        The latest snapshot (also stored as ``trainer.spectral``).
    n_calls : int
        Analyses done, including before a restored checkpoint.
    seconds : float
        Wall time spent in extraction + analysis (the monitoring overhead).
    """

    def __init__(self, analyzer: Analyzer | None = None, *, conv: str = "reshape", min_dim: int = 2,
                 farms: bool = False, farms_windows: int = FARMS_WINDOWS, tail_law: bool = False):
        if conv not in ("reshape", "kernel"):
            raise ValueError(f"conv must be 'reshape' or 'kernel', got {conv!r}")
        check_value("farms_windows", farms_windows, [Interval(int, 1, None, closed="left")], error=ValueError)
        if analyzer is not None and not callable(analyzer):
            raise TypeError(f"analyzer must be callable(layers, step) -> list[dict], got {type(analyzer).__name__}")
        self.analyzer, self.conv, self.min_dim, self.farms = analyzer, conv, int(min_dim), bool(farms)
        self.farms_windows, self.tail_law = int(farms_windows), bool(tail_law)
        self.last: SpectralSnapshot | None = None
        self.n_calls, self.last_step, self.seconds = 0, -1, 0.0

    def on_fit_start(self, trainer: Trainer, model: nn.Module) -> None:
        """Resolve the default analyzer."""
        if self.analyzer is None:
            self.analyzer = InProcessAnalyzer()

    def extract(self, model: nn.Module) -> list:
        """The model's weight matrices as ``LayerMatrix`` objects."""
        return extract_layers(model, conv=self.conv, min_dim=self.min_dim)

    def on_monitor(self, trainer: Trainer, model: nn.Module, step: int) -> None:
        """Analyze, then set ``trainer.spectral`` and merge the aggregates into ``callback_metrics``.

        Raises
        ------
        FloatingPointError
            A weight matrix holds NaN or Inf: the run diverged, exactly as a non-finite loss says.
        """
        snapshot = self.analyze(model, step)
        trainer.spectral = snapshot
        trainer.callback_metrics.update(spectral_aggregates(snapshot.rows))

    def analyze(self, model: nn.Module, step: int) -> SpectralSnapshot:
        """Analyze ``model``'s weights now, outside any trainer: the snapshot (also ``self.last``).

        What ``on_monitor`` does, for loops that are not the built-in ``Trainer`` (the sweep's
        session, the Lightning and 🤗 callbacks, ``htsweep.SpectralMonitor``).

        Raises
        ------
        TypeError
            ``model`` is not a ``torch.nn.Module``.
        FloatingPointError
            A weight matrix holds NaN or Inf.
        """
        from torch import nn

        if not isinstance(model, nn.Module):
            raise TypeError(f"spectral monitoring needs a torch.nn.Module, got {type(model).__name__}")
        t0 = time.perf_counter()
        if self.analyzer is None:
            self.analyzer = InProcessAnalyzer()
        layers = self.extract(model)
        _check_finite(layers, step)
        rows = list(self.analyzer(layers, step))
        if self.farms and rows and RowKey.ALPHA_FARMS not in rows[0]:
            # the rows' spectra spare a second eigensolve where a layer is its own only window
            known = [(row[RowKey.EIGS], row[RowKey.PRECISION])
                     if row.get(RowKey.EIGS) is not None and RowKey.PRECISION in row else None for row in rows]
            # on the analyzer's device (the user's device=), not wherever esd_layers would default
            windowed = farms_alphas(layers, device=getattr(self.analyzer, "device", None), precision=MONITOR_PRECISION,
                                    n_windows=self.farms_windows, min_eigs=MIN_FIT_EIGS, spectra=known)
            rows = [{**row, **dict(zip(FARMS_KEYS, (f.alpha, f.alpha_hill), strict=True))}
                    for row, f in zip(rows, windowed, strict=True)]
        if self.tail_law:
            rows = [{**row, **tail_law_row(row[RowKey.EIGS], row[RowKey.XMIN], row[RowKey.ALPHA])}
                    if row.get(RowKey.EIGS) is not None and RowKey.TAIL_LAW not in row else row for row in rows]
        snapshot = SpectralSnapshot(int(step), rows)
        self.last = snapshot
        self.n_calls, self.last_step = self.n_calls + 1, int(step)
        self.seconds += time.perf_counter() - t0
        return snapshot

    def state_dict(self) -> dict[str, Any]:
        return {"n_calls": self.n_calls, "last_step": self.last_step, "seconds": self.seconds}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.n_calls, self.last_step = int(state["n_calls"]), int(state["last_step"])
        self.seconds = float(state.get("seconds", 0.0))
