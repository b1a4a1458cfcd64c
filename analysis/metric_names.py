"""The names of the spectral metrics: keys of the per-layer row and of the reported metrics.

One owner for the strings that cross package boundaries. :class:`RowKey` names the keys of a
layer's metrics row (:meth:`analysis.layer_analysis.LayerAnalysis.to_row`, the DataFrame columns
of ``analyze_model``, the ``layers`` of ``spectral_summary.json``). :class:`ReportKey` names the
flat metrics a trial reports to Ray Tune and logs to MLflow (model aggregates, the per-layer
``<metric>/<layer>`` series, the trainer's test metrics the sweep reads back) and the MLflow
phase tags. These strings are what finished runs, checkpoints and Optuna studies already store,
so they are fixed: renaming one would orphan every existing run's history of it.

Examples
--------
>>> per_layer_key(RowKey.ALPHA, "fc1")
'alpha/fc1'
>>> is_spectral_key("alpha/fc1"), is_spectral_key(ReportKey.ALPHA_MEAN), is_spectral_key("test_acc")
(True, True, False)
>>> ALPHA_AGGREGATE_KEYS["median"]
'alpha_median'
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "ALPHA_AGGREGATE_KEYS",
    "FARMS_AGGREGATE_KEYS",
    "FARMS_KEYS",
    "TAIL_LAW_KEYS",
    "LOCALIZATION_KEYS",
    "MODEL_AGGREGATE_KEYS",
    "PER_LAYER_KEYS",
    "ROW_KEYS",
    "TRAP_KEYS",
    "ReportKey",
    "RowKey",
    "is_spectral_key",
    "per_layer_key",
]


class RowKey:
    """Keys of one layer's metrics row (units and meaning: docs/interfaces.md, "The metrics row")."""

    NAME: Final = "name"
    KIND: Final = "kind"
    N: Final = "n"
    M: Final = "m"
    Q: Final = "q"
    LAMBDA_MAX: Final = "lambda_max"
    ALPHA: Final = "alpha"
    ALPHA_HILL: Final = "alpha_hill"
    D: Final = "D"
    XMIN: Final = "xmin"
    XMAX: Final = "xmax"
    N_TAIL: Final = "n_tail"
    ALPHA_SIGMA: Final = "alpha_sigma"
    SIGMA2: Final = "sigma2"
    LAMBDA_PLUS: Final = "lambda_plus"
    N_SPIKES: Final = "n_spikes"
    MP_SOFT_RANK: Final = "mp_soft_rank"
    MP_KS: Final = "mp_ks"
    STABLE_RANK: Final = "stable_rank"
    MATRIX_ENTROPY: Final = "matrix_entropy"
    EFFECTIVE_RANK: Final = "effective_rank"
    LOG_FROBENIUS_NORM: Final = "log_frobenius_norm"
    LOG_SPECTRAL_NORM: Final = "log_spectral_norm"
    ALPHA_WEIGHTED: Final = "alpha_weighted"
    LOG_ALPHA_NORM: Final = "log_alpha_norm"
    NUMERICAL_RANK: Final = "numerical_rank"
    PHASE: Final = "phase"
    PHASE_CONFIDENCE: Final = "phase_confidence"
    WARNING: Final = "warning"
    PRECISION: Final = "precision"
    # farms=True
    ALPHA_FARMS: Final = "alpha_farms"
    ALPHA_HILL_FARMS: Final = "alpha_hill_farms"
    # tail_law=True
    TAIL_LAW: Final = "tail_law"
    R_TRUNCATED_POWER_LAW: Final = "R_truncated_power_law"
    P_TRUNCATED_POWER_LAW: Final = "p_truncated_power_law"
    R_LOGNORMAL: Final = "R_lognormal"
    P_LOGNORMAL: Final = "p_lognormal"
    R_EXPONENTIAL: Final = "R_exponential"
    P_EXPONENTIAL: Final = "p_exponential"
    TPL_LAMBDA: Final = "tpl_lambda"
    # localization=True
    VECTOR_ENTROPY: Final = "vector_entropy"
    LOCALIZATION_RATIO: Final = "localization_ratio"
    PARTICIPATION_RATIO: Final = "participation_ratio"
    # traps=k
    N_TRAPS: Final = "n_traps"
    SHUFFLE_LAMBDA_PLUS: Final = "shuffle_lambda_plus"
    SHUFFLE_LAMBDA_MAX: Final = "shuffle_lambda_max"
    SHUFFLE_DISTANCE: Final = "shuffle_distance"
    #: Not a metric: the ascending eigenvalues an analyzer attaches to the row in memory; dropped
    #: before a row becomes a DataFrame row or JSON, saved as ``esd/step_<k>.npz`` instead.
    EIGS: Final = "eigs"


#: Keys of a metrics row, in order (localization adds ``LOCALIZATION_KEYS``, traps ``TRAP_KEYS``).
ROW_KEYS: Final = (
    RowKey.NAME, RowKey.KIND, RowKey.N, RowKey.M, RowKey.Q, RowKey.LAMBDA_MAX, RowKey.ALPHA,
    RowKey.ALPHA_HILL, RowKey.D, RowKey.XMIN, RowKey.XMAX, RowKey.N_TAIL, RowKey.ALPHA_SIGMA,
    RowKey.SIGMA2, RowKey.LAMBDA_PLUS, RowKey.N_SPIKES, RowKey.MP_SOFT_RANK, RowKey.MP_KS,
    RowKey.STABLE_RANK, RowKey.MATRIX_ENTROPY, RowKey.EFFECTIVE_RANK, RowKey.LOG_FROBENIUS_NORM,
    RowKey.LOG_SPECTRAL_NORM, RowKey.ALPHA_WEIGHTED, RowKey.LOG_ALPHA_NORM, RowKey.NUMERICAL_RANK,
    RowKey.PHASE, RowKey.PHASE_CONFIDENCE, RowKey.WARNING, RowKey.PRECISION,
)
#: Keys added by ``farms=True`` (:mod:`analysis.farms`: α of the pooled square-window ESD); also
#: reported per layer as ``<key>/<layer>`` when the rows carry them.
FARMS_KEYS: Final = (RowKey.ALPHA_FARMS, RowKey.ALPHA_HILL_FARMS)
#: Keys added by ``tail_law=True`` (:mod:`analysis.tail_law`: the verdict, then R and p of the power
#: law against each alternative, and the truncated power law's λ).
TAIL_LAW_KEYS: Final = (
    RowKey.TAIL_LAW, RowKey.R_TRUNCATED_POWER_LAW, RowKey.P_TRUNCATED_POWER_LAW, RowKey.R_LOGNORMAL,
    RowKey.P_LOGNORMAL, RowKey.R_EXPONENTIAL, RowKey.P_EXPONENTIAL, RowKey.TPL_LAMBDA,
)
#: Keys added by ``localization=True`` (of the leading eigenvector).
LOCALIZATION_KEYS: Final = (RowKey.VECTOR_ENTROPY, RowKey.LOCALIZATION_RATIO, RowKey.PARTICIPATION_RATIO)
#: Keys added by ``traps=k`` (correlation traps, :func:`analysis.analyze.trap_metrics`).
TRAP_KEYS: Final = (RowKey.N_TRAPS, RowKey.SHUFFLE_LAMBDA_PLUS, RowKey.SHUFFLE_LAMBDA_MAX, RowKey.SHUFFLE_DISTANCE)


class ReportKey:
    """Names of reported metrics (Tune result keys, MLflow metric names) and MLflow phase tags."""

    # model-level aggregates of :func:`analysis.aggregate.spectral_aggregates`
    ALPHA_MEAN: Final = "alpha_mean"
    ALPHA_MEDIAN: Final = "alpha_median"
    ALPHA_WEIGHTED_MEAN: Final = "alpha_weighted_mean"
    ALPHA_LAST: Final = "alpha_last"
    # only when the rows carry the FARMS keys (``farms=True``)
    ALPHA_FARMS_MEAN: Final = "alpha_farms_mean"
    ALPHA_FARMS_MEDIAN: Final = "alpha_farms_median"
    ALPHA_FARMS_LAST: Final = "alpha_farms_last"
    FRAC_HEAVY_TAILED: Final = "frac_heavy_tailed"
    STABLE_RANK_MEAN: Final = "stable_rank_mean"
    MP_SOFT_RANK_MEAN: Final = "mp_soft_rank_mean"
    #: the model phase as a number (also reported per layer as ``phase_code/<layer>``)
    PHASE_CODE: Final = "phase_code"
    # the trainer's report keys that the sweep and the MLflow logger read back
    STEP: Final = "step"
    TEST_ACC: Final = "test_acc"
    TRAIN_ACC: Final = "train_acc"
    TEST_LOSS: Final = "test_loss"
    TEST_R2: Final = "test_r2"
    # the sweep objective's terms (sweeps.objective.evaluate: Tune results, Optuna user attributes)
    # and the headline a trial's MLflow run shows first; services log and display them without
    # importing sweeps, hence they are named here
    ALPHA_AGG: Final = "alpha_agg"
    ALPHA_ERROR: Final = "alpha_error"
    TEST_ERROR: Final = "test_error"
    OBJECTIVE: Final = "objective"
    FEASIBLE: Final = "feasible"
    #: the headline alpha of a trial run: its objective's ``alpha_agg`` under a short name (one
    #: ``metrics.alpha`` column for all trials, whatever aggregate they steer)
    HEADLINE_ALPHA: Final = "alpha"
    #: the model phase by name (:func:`analysis.aggregate.model_phase`): a string, so an MLflow
    #: tag, a Tune result key and an Optuna user attribute, never an MLflow metric
    PHASE: Final = "phase"
    # MLflow tags: ``phase.<layer>``, ``phase_step`` (the step the phase tags are of) and
    # ``phase_classifier`` (the classifier version that labelled them: a resumed sweep may mix two)
    LAYER_PHASE_TAG_PREFIX: Final = "phase."
    PHASE_STEP_TAG: Final = "phase_step"
    PHASE_CLASSIFIER_TAG: Final = "phase_classifier"


#: The model-level metrics :func:`analysis.aggregate.spectral_aggregates` reports, in its order.
MODEL_AGGREGATE_KEYS: Final = (
    ReportKey.ALPHA_MEAN, ReportKey.ALPHA_MEDIAN, ReportKey.ALPHA_WEIGHTED_MEAN, ReportKey.ALPHA_LAST,
    ReportKey.FRAC_HEAVY_TAILED, ReportKey.STABLE_RANK_MEAN, ReportKey.MP_SOFT_RANK_MEAN, ReportKey.PHASE_CODE,
)
#: Row keys reported per layer as ``<key>/<layer>`` (besides ``phase_code/<layer>``, which is
#: computed from the row's phase rather than copied).
PER_LAYER_KEYS: Final = (
    RowKey.ALPHA, RowKey.ALPHA_HILL, RowKey.STABLE_RANK, RowKey.MP_SOFT_RANK, RowKey.EFFECTIVE_RANK, RowKey.N_SPIKES,
)
#: ``ObjectiveSpec.aggregate`` → the model aggregate the objective steers (``"layers"`` is not
#: here: it averages the ``alpha/<layer>`` series of the named layers).
ALPHA_AGGREGATE_KEYS: Final = {"mean": ReportKey.ALPHA_MEAN, "median": ReportKey.ALPHA_MEDIAN, "last": ReportKey.ALPHA_LAST}
#: The same for ``objective.metric: alpha_farms``.
FARMS_AGGREGATE_KEYS: Final = {"mean": ReportKey.ALPHA_FARMS_MEAN, "median": ReportKey.ALPHA_FARMS_MEDIAN,
                               "last": ReportKey.ALPHA_FARMS_LAST}


def per_layer_key(metric: str, layer: str) -> str:
    """The reported name of ``metric`` of one layer: ``"<metric>/<layer>"``."""
    return f"{metric}/{layer}"


def is_spectral_key(key: str) -> bool:
    """Whether ``key`` is one of the metrics :func:`analysis.aggregate.spectral_aggregates` produces.

    Reporters use it to tell values measured at this step from spectral values carried over from
    the last analysis (``callback_metrics`` keeps them between monitoring steps).
    """
    if key in MODEL_AGGREGATE_KEYS or key in FARMS_AGGREGATE_KEYS.values():
        return True
    metric, sep, _ = key.partition("/")
    return bool(sep) and metric in (*PER_LAYER_KEYS, *FARMS_KEYS, ReportKey.PHASE_CODE)
