"""Spectral monitoring during training: the ``SpectralMonitor`` callback and metric aggregation.

``SpectralMonitor`` extracts a model's weight matrices (``analysis.extract_layers``), hands them to
an *analyzer* — ``analyzer(layers, step) -> list[dict]``, one metrics row per layer as documented
in ``docs/interfaces.md`` — and publishes the result: ``trainer.spectral`` becomes a
``SpectralSnapshot`` and ``spectral_aggregates(rows)`` is merged into
``trainer.callback_metrics``, so the next ``on_report`` carries it. The default analyzer runs
``analysis.analyze_layers`` in-process; the sweep passes one backed by the shared ESD actor.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from analysis.analyze import MIN_FIT_EIGS
from analysis.phases import PHASE_CODES, PHASES, UNDETERMINED, UNDETERMINED_CODE
from trainers.callbacks import Callback

if TYPE_CHECKING:
    import pandas as pd
    from torch import nn

    from trainers.train import Trainer

__all__ = [
    "Analyzer",
    "InProcessAnalyzer",
    "SpectralMonitor",
    "SpectralSnapshot",
    "is_spectral_key",
    "model_phase",
    "spectral_aggregates",
]

Analyzer = Callable[[list, int], list]
"""``analyzer(layers: list[LayerMatrix], step: int) -> list[dict]`` (rows with ``"eigs"``)."""

_PER_LAYER_KEYS = ("alpha", "alpha_hill", "stable_rank", "mp_soft_rank", "effective_rank", "n_spikes")
_AGGREGATE_KEYS = ("alpha_mean", "alpha_median", "alpha_weighted_mean", "alpha_last", "frac_heavy_tailed",
                   "stable_rank_mean", "mp_soft_rank_mean", "phase_code")


def is_spectral_key(key: str) -> bool:
    """Whether ``key`` is one of the metrics :func:`spectral_aggregates` produces.

    Reporters use it to tell values measured at this step from spectral values carried over from
    the last analysis (``callback_metrics`` keeps them between monitoring steps).
    """
    return key in _AGGREGATE_KEYS or key.split("/", 1)[0] in (*_PER_LAYER_KEYS, "phase_code") and "/" in key


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
        return [str(r.get("name", "")) for r in self.rows]

    def layer(self, name: str) -> dict[str, Any]:
        """The row of layer ``name`` (``KeyError`` listing the names if absent)."""
        for row in self.rows:
            if row.get("name") == name:
                return row
        raise KeyError(f"no layer {name!r} in the snapshot; layers: {', '.join(self.names)}")

    def eigs(self) -> dict[str, np.ndarray]:
        """Layer name → eigenvalues ``(m,)`` for the rows that carry them."""
        return {str(r["name"]): np.asarray(r["eigs"]) for r in self.rows if r.get("eigs") is not None}

    def to_frame(self) -> pd.DataFrame:
        """The rows as a DataFrame, without the ``eigs`` column."""
        import pandas as pd

        return pd.DataFrame([{k: v for k, v in r.items() if k != "eigs"} for r in self.rows])



def _finite_mean(values: Sequence[float]) -> float:
    finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    return float(np.mean(finite)) if finite else math.nan


def _finite_median(values: Sequence[float]) -> float:
    finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    return float(np.median(finite)) if finite else math.nan


def _as_float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def model_phase(rows: Sequence[dict[str, Any]]) -> str:
    """The model's phase: the most common phase among its dense (``kind == "linear"``) layers.

    Layers too small to fit (``m < analysis.analyze.MIN_FIT_EIGS``, e.g. a 10-class head) do not
    vote while any larger layer can; a layer whose fit failed for another reason (a collapsed
    rank, say) still votes. ``"undetermined"`` layers (all-zero, constant, rank ≤ 1, too small to
    classify) never vote; when no layer has a phase the result is ``"undetermined"`` if some layer
    was, else ``""``. Ties go to the later phase in ``analysis.phases.PHASES`` order. Without
    linear layers, all layers vote.

    Parameters
    ----------
    rows : sequence of dict
        Metrics rows with ``"kind"`` and ``"phase"``.
    """
    phased = [r for r in rows if r.get("phase") and r.get("phase") != UNDETERMINED]
    phased = [r for r in phased if r.get("m", MIN_FIT_EIGS) >= MIN_FIT_EIGS] or phased
    voters = [r for r in phased if r.get("kind") == "linear"] or phased
    if not voters:
        return UNDETERMINED if any(r.get("phase") == UNDETERMINED for r in rows) else ""
    counts = Counter(str(r["phase"]) for r in voters)
    rank = {p: i for i, p in enumerate(PHASES)}
    return max(counts, key=lambda p: (counts[p], rank.get(p, -1)))


def spectral_aggregates(rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Flatten per-layer spectral rows into scalar metrics for reporting.

    Parameters
    ----------
    rows : sequence of dict
        Metrics rows as returned by an analyzer.

    Returns
    -------
    dict of str to float
        ``alpha_mean``, ``alpha_median``, ``alpha_weighted_mean``, ``alpha_last`` (the last linear
        layer with a finite alpha, NaN if none), ``frac_heavy_tailed`` (share of layers in phase ``heavy_tailed``),
        ``stable_rank_mean``, ``mp_soft_rank_mean``, ``phase_code`` (of ``model_phase``: 0–5, -1 for
        ``undetermined``, NaN if no phase), and per layer ``alpha/<name>``, ``alpha_hill/<name>``,
        ``stable_rank/<name>``, ``mp_soft_rank/<name>``, ``effective_rank/<name>``, ``n_spikes/<name>``,
        ``phase_code/<name>``. Means skip NaNs.
    """
    rows = list(rows)
    codes = {**PHASE_CODES, UNDETERMINED: UNDETERMINED_CODE}
    dense_alphas = [a for r in rows if r.get("kind") == "linear" and math.isfinite(a := _as_float(r.get("alpha")))]
    out: dict[str, float] = {
        "alpha_mean": _finite_mean([_as_float(r.get("alpha")) for r in rows]),
        "alpha_median": _finite_median([_as_float(r.get("alpha")) for r in rows]),
        "alpha_weighted_mean": _finite_mean([_as_float(r.get("alpha_weighted")) for r in rows]),
        "alpha_last": dense_alphas[-1] if dense_alphas else math.nan,
        "frac_heavy_tailed": (sum(r.get("phase") == "heavy_tailed" for r in rows) / len(rows)) if rows else math.nan,
        "stable_rank_mean": _finite_mean([_as_float(r.get("stable_rank")) for r in rows]),
        "mp_soft_rank_mean": _finite_mean([_as_float(r.get("mp_soft_rank")) for r in rows]),
    }
    phase = model_phase(rows) if rows else ""
    out["phase_code"] = float(codes[phase]) if phase in codes else math.nan
    for r in rows:
        name = str(r.get("name", ""))
        for key in _PER_LAYER_KEYS:
            out[f"{key}/{name}"] = _as_float(r.get(key))
        out[f"phase_code/{name}"] = float(codes[r["phase"]]) if r.get("phase") in codes else math.nan
    return out


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
        from analysis.analyze import MONITOR_PRECISION, analyze_layers

        self._analyze = analyze_layers
        self.device, self.localization, self.precision = device, localization, MONITOR_PRECISION

    def __call__(self, layers: list, step: int) -> list[dict[str, Any]]:
        """Analyze ``layers`` (``step`` is unused in-process)."""
        return self._analyze(layers, device=self.device, localization=self.localization, precision=self.precision)


class SpectralMonitor(Callback):
    """Analyze the model's weight spectra in ``on_monitor`` and publish the results.

    Parameters
    ----------
    analyzer : callable, optional
        ``analyzer(layers: list[LayerMatrix], step: int) -> list[dict]``; default
        ``InProcessAnalyzer()`` (resolved at ``on_fit_start``, so a missing ``analysis`` package
        fails before training).
    conv : {'reshape', 'kernel'}, default='reshape'
        How conv weights become matrices (see ``analysis.extract_layers``).
    min_dim : int, default=2
        Skip matrices whose smaller side is below this.

    Attributes
    ----------
    last : SpectralSnapshot or None
        The latest snapshot (also stored as ``trainer.spectral``).
    n_calls : int
        Analyses done, including before a restored checkpoint.
    seconds : float
        Wall time spent in extraction + analysis (the monitoring overhead).
    """

    def __init__(self, analyzer: Analyzer | None = None, *, conv: str = "reshape", min_dim: int = 2):
        if conv not in ("reshape", "kernel"):
            raise ValueError(f"conv must be 'reshape' or 'kernel', got {conv!r}")
        if analyzer is not None and not callable(analyzer):
            raise TypeError(f"analyzer must be callable(layers, step) -> list[dict], got {type(analyzer).__name__}")
        self.analyzer, self.conv, self.min_dim = analyzer, conv, int(min_dim)
        self.last: SpectralSnapshot | None = None
        self.n_calls, self.last_step, self.seconds = 0, -1, 0.0

    def on_fit_start(self, trainer: Trainer, model: nn.Module) -> None:
        """Resolve the default analyzer and check that ``analysis`` is importable."""
        if self.analyzer is None:
            try:
                self.analyzer = InProcessAnalyzer()
            except ImportError as exc:
                raise ImportError(f"SpectralMonitor's default analyzer needs the analysis package: {exc}") from exc
        from analysis.layers import extract_layers  # noqa: F401  (fail early if missing)

    def extract(self, model: nn.Module) -> list:
        """The model's weight matrices as ``LayerMatrix`` objects."""
        from analysis.layers import extract_layers

        return extract_layers(model, conv=self.conv, min_dim=self.min_dim)

    def on_monitor(self, trainer: Trainer, model: nn.Module, step: int) -> None:
        """Analyze, then set ``trainer.spectral`` and merge the aggregates into ``callback_metrics``.

        Raises
        ------
        FloatingPointError
            A weight matrix holds NaN or Inf: the run diverged, exactly as a non-finite loss says.
        """
        t0 = time.perf_counter()
        if self.analyzer is None:
            self.on_fit_start(trainer, model)
        layers = self.extract(model)
        _check_finite(layers, step)
        rows = list(self.analyzer(layers, step))
        snapshot = SpectralSnapshot(step, rows)
        trainer.spectral = self.last = snapshot
        trainer.callback_metrics.update(spectral_aggregates(rows))
        self.n_calls, self.last_step = self.n_calls + 1, step
        self.seconds += time.perf_counter() - t0

    def state_dict(self) -> dict[str, Any]:
        return {"n_calls": self.n_calls, "last_step": self.last_step, "seconds": self.seconds}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.n_calls, self.last_step = int(state["n_calls"]), int(state["last_step"])
        self.seconds = float(state.get("seconds", 0.0))
