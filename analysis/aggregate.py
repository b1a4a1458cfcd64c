"""Model-level aggregation of per-layer spectral rows: the model phase and the reported scalars.

A *row* is one layer's metrics dict as ``analysis.analyze_layers`` returns it (keys in
``docs/interfaces.md``). :func:`spectral_aggregates` flattens a model's rows into the scalar
metrics a trial reports (``alpha_mean``, ``phase_code``, ``alpha/<layer>``, ...),
:func:`model_phase` picks the model's phase by a vote of its dense layers, and
:func:`is_spectral_key` tells those metric names from the others. The trainer's monitor, the MLflow
logger and the sweep's reporters all aggregate through this module, so they agree.

Examples
--------
>>> rows = [{"name": "fc1", "kind": "linear", "phase": "heavy_tailed", "alpha": 2.5},
...         {"name": "fc2", "kind": "linear", "phase": "heavy_tailed", "alpha": 3.5}]
>>> model_phase(rows)
'heavy_tailed'
>>> agg = spectral_aggregates(rows)
>>> agg["alpha_mean"], agg["alpha_last"], agg["phase_code"]
(3.0, 3.5, 4.0)
>>> is_spectral_key("alpha/fc1"), is_spectral_key("test_acc")
(True, False)
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from analysis.analyze import MIN_FIT_EIGS
from analysis.phases import PHASE_CODES, PHASES, UNDETERMINED, UNDETERMINED_CODE

__all__ = ["is_spectral_key", "model_phase", "spectral_aggregates"]

_PER_LAYER_KEYS = ("alpha", "alpha_hill", "stable_rank", "mp_soft_rank", "effective_rank", "n_spikes")
_AGGREGATE_KEYS = ("alpha_mean", "alpha_median", "alpha_weighted_mean", "alpha_last", "frac_heavy_tailed",
                   "stable_rank_mean", "mp_soft_rank_mean", "phase_code")


def is_spectral_key(key: str) -> bool:
    """Whether ``key`` is one of the metrics :func:`spectral_aggregates` produces.

    Reporters use it to tell values measured at this step from spectral values carried over from
    the last analysis (``callback_metrics`` keeps them between monitoring steps).
    """
    return key in _AGGREGATE_KEYS or key.split("/", 1)[0] in (*_PER_LAYER_KEYS, "phase_code") and "/" in key


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
