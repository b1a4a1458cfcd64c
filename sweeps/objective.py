"""The sweep objective: steer a layer-aggregate alpha toward a target while generalizing well.

Two forms, chosen by :class:`sweeps.spec.ObjectiveSpec`:

* **constrained** (single objective, minimized): ``objective = |alpha_agg - target|``, plus
  ``penalty * (1 + shortfall)`` when the test accuracy is below ``min_test_accuracy``
  (``shortfall = min_test_accuracy - test_acc``), so every infeasible trial ranks behind every
  feasible one and the less infeasible ones rank first;
* **multi-objective**: minimize ``(alpha_error, test_error)`` with NSGA-II; the Optuna study's
  ``best_trials`` is the Pareto front.

The functions here are pure (no Ray, no Optuna) so the trainable, the searcher and the status
tables compute the same numbers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from htsweep.analysis.metric_names import (
    ALPHA_AGGREGATE_KEYS,
    FARMS_AGGREGATE_KEYS,
    ReportKey,
    RowKey,
    per_layer_key,
)
from htsweep.sweeps.spec import ObjectiveSpec

__all__ = [
    "ALPHA_AGG",
    "ALPHA_ERROR",
    "TEST_ERROR",
    "OBJECTIVE",
    "FEASIBLE",
    "metric_and_mode",
    "alpha_aggregate",
    "alpha_keys",
    "evaluate",
]

# the names of the objective's terms (analysis.metric_names owns them: services log them too)
ALPHA_AGG = ReportKey.ALPHA_AGG
ALPHA_ERROR = ReportKey.ALPHA_ERROR
TEST_ERROR = ReportKey.TEST_ERROR
OBJECTIVE = ReportKey.OBJECTIVE
FEASIBLE = ReportKey.FEASIBLE


def metric_and_mode(spec: ObjectiveSpec) -> tuple[str | list[str], str | list[str]]:
    """The metric name(s) and mode(s) Optuna and Tune optimize.

    Parameters
    ----------
    spec : ObjectiveSpec

    Returns
    -------
    metric : str or list of str
        ``"objective"``, or ``["alpha_error", "test_error"]`` for a multi-objective sweep.
    mode : str or list of str
        ``"min"`` (each).
    """
    if spec.multi_objective:
        return [ALPHA_ERROR, TEST_ERROR], ["min", "min"]
    return OBJECTIVE, "min"


def _num(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def alpha_keys(spec: ObjectiveSpec) -> list[str]:
    """The trainer metric keys :func:`alpha_aggregate` reads (one aggregate, or one per named layer).

    Examples
    --------
    >>> alpha_keys(ObjectiveSpec(aggregate="median"))
    ['alpha_median']
    """
    if spec.aggregate == "layers":
        return [per_layer_key(spec.metric, name) for name in spec.layers or ()]
    keys = FARMS_AGGREGATE_KEYS if spec.metric == RowKey.ALPHA_FARMS else ALPHA_AGGREGATE_KEYS
    return [keys[spec.aggregate]]


def alpha_aggregate(metrics: Mapping[str, Any], spec: ObjectiveSpec) -> float:
    """The alpha the objective steers: mean, median, last dense layer, or mean over named layers.

    Parameters
    ----------
    metrics : mapping
        A flat metrics dict from the trainer (``alpha_mean``, ``alpha/<layer>`` ...; with
        ``spec.metric == "alpha_farms"``: ``alpha_farms_mean``, ``alpha_farms/<layer>`` ...).
    spec : ObjectiveSpec

    Returns
    -------
    float
        NaN when the metrics hold no (finite) alpha yet.
    """
    vals = [_num(metrics.get(key)) for key in alpha_keys(spec)]
    if spec.aggregate == "layers":
        vals = [v for v in vals if math.isfinite(v)]
        return sum(vals) / len(vals) if vals else math.nan
    return vals[0]


def evaluate(metrics: Mapping[str, Any], spec: ObjectiveSpec) -> dict[str, float]:
    """Objective terms for one report of a trial.

    Parameters
    ----------
    metrics : mapping
        Flat trainer metrics; uses the alpha aggregate and ``test_acc``.
    spec : ObjectiveSpec

    Returns
    -------
    dict
        ``alpha_agg`` (NaN if unknown), ``alpha_error`` (``penalty`` if alpha is unknown),
        ``test_error`` (1 if unknown), ``feasible`` (1.0 or 0.0) and ``objective`` — all finite
        except ``alpha_agg``, so Optuna always receives a value.

    Examples
    --------
    >>> from htsweep.sweeps.spec import ObjectiveSpec
    >>> spec = ObjectiveSpec(target_alpha=2.0, min_test_accuracy=0.9)
    >>> evaluate({"alpha_mean": 2.5, "test_acc": 0.95}, spec)["objective"]
    0.5
    >>> round(evaluate({"alpha_mean": 2.5, "test_acc": 0.8}, spec)["objective"], 6)
    11.5
    """
    alpha = alpha_aggregate(metrics, spec)
    alpha_error = abs(alpha - spec.target_alpha) if math.isfinite(alpha) else spec.penalty
    acc = _num(metrics.get(ReportKey.TEST_ACC))
    test_error = 1.0 - acc if math.isfinite(acc) else 1.0
    feasible = True
    objective = alpha_error
    if spec.min_test_accuracy is not None:
        shortfall = spec.min_test_accuracy - (acc if math.isfinite(acc) else 0.0)
        feasible = shortfall <= 0
        if not feasible:
            objective = alpha_error + spec.penalty * (1.0 + shortfall)
    return {
        ALPHA_AGG: alpha,
        ALPHA_ERROR: alpha_error,
        TEST_ERROR: test_error,
        FEASIBLE: 1.0 if feasible else 0.0,
        OBJECTIVE: objective,
    }
