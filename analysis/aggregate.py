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

from htsweep.analysis.analyze import MIN_FIT_EIGS
from htsweep.analysis.metric_names import (
    FARMS_KEYS,
    PER_LAYER_KEYS,
    ReportKey,
    RowKey,
    is_spectral_key,
    per_layer_key,
)
from htsweep.analysis.phases import PHASE_CODES, PHASES, UNDETERMINED, UNDETERMINED_CODE

# is_spectral_key lives with the names (services read it without the aggregation); it stays
# public here because the reporters' contract is "the keys this module produces"
__all__ = ["is_spectral_key", "model_phase", "spectral_aggregates"]


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
    phased = [r for r in rows if r.get(RowKey.PHASE) and r.get(RowKey.PHASE) != UNDETERMINED]
    phased = [r for r in phased if r.get(RowKey.M, MIN_FIT_EIGS) >= MIN_FIT_EIGS] or phased
    voters = [r for r in phased if r.get(RowKey.KIND) == "linear"] or phased
    if not voters:
        return UNDETERMINED if any(r.get(RowKey.PHASE) == UNDETERMINED for r in rows) else ""
    counts = Counter(str(r[RowKey.PHASE]) for r in voters)
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
        ``phase_code/<name>``. Means skip NaNs. When the rows carry the FARMS keys (``farms=True``)
        also ``alpha_farms_mean``, ``alpha_farms_median``, ``alpha_farms_last`` (as for ``alpha``)
        and per layer ``alpha_farms/<name>``, ``alpha_hill_farms/<name>``.
    """
    rows = list(rows)
    codes = {**PHASE_CODES, UNDETERMINED: UNDETERMINED_CODE}

    def values(key: str) -> list[float]:
        return [_as_float(r.get(key)) for r in rows]

    def last_dense(key: str) -> float:
        dense = [a for r in rows if r.get(RowKey.KIND) == "linear" and math.isfinite(a := _as_float(r.get(key)))]
        return dense[-1] if dense else math.nan

    n_heavy = sum(r.get(RowKey.PHASE) == "heavy_tailed" for r in rows)
    out: dict[str, float] = {
        ReportKey.ALPHA_MEAN: _finite_mean(values(RowKey.ALPHA)),
        ReportKey.ALPHA_MEDIAN: _finite_median(values(RowKey.ALPHA)),
        ReportKey.ALPHA_WEIGHTED_MEAN: _finite_mean(values(RowKey.ALPHA_WEIGHTED)),
        ReportKey.ALPHA_LAST: last_dense(RowKey.ALPHA),
        ReportKey.FRAC_HEAVY_TAILED: n_heavy / len(rows) if rows else math.nan,
        ReportKey.STABLE_RANK_MEAN: _finite_mean(values(RowKey.STABLE_RANK)),
        ReportKey.MP_SOFT_RANK_MEAN: _finite_mean(values(RowKey.MP_SOFT_RANK)),
    }
    phase = model_phase(rows) if rows else ""
    out[ReportKey.PHASE_CODE] = float(codes[phase]) if phase in codes else math.nan
    farms = any(RowKey.ALPHA_FARMS in r for r in rows)
    if farms:
        out[ReportKey.ALPHA_FARMS_MEAN] = _finite_mean(values(RowKey.ALPHA_FARMS))
        out[ReportKey.ALPHA_FARMS_MEDIAN] = _finite_median(values(RowKey.ALPHA_FARMS))
        out[ReportKey.ALPHA_FARMS_LAST] = last_dense(RowKey.ALPHA_FARMS)
    for r in rows:
        name = str(r.get(RowKey.NAME, ""))
        for key in (*PER_LAYER_KEYS, *(FARMS_KEYS if farms else ())):
            out[per_layer_key(key, name)] = _as_float(r.get(key))
        layer_phase = r.get(RowKey.PHASE)
        out[per_layer_key(ReportKey.PHASE_CODE, name)] = float(codes[layer_phase]) if layer_phase in codes else math.nan
    return out
