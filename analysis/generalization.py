"""Which spectral metric tracks generalization? Rank correlations across trained models.

The HT-SR papers claim that model-level spectral metrics (mean α, α-weighted, log α-norm, ...)
rank models by test accuracy without seeing any test data. Given one metrics row per layer of each
model, :func:`model_aggregates` computes those model-level metrics, and :func:`rank_correlations`
measures, across the models (e.g. the trials of a sweep), how well each one ranks them by a target
(test accuracy or test loss): Spearman's ρ and Kendall's τ-b with percentile-bootstrap confidence
intervals, overall and within each value of a categorical variable (e.g. per optimizer), with the
number of models and a flag when there are too few for a meaningful estimate.

Pure numpy / scipy; no plotting, no Ray, no MLflow.

References
----------
Martin, Peng & Mahoney (2021), "Predicting trends in the quality of state-of-the-art neural
networks without access to training or testing data", Nature Communications 12, 4122 (model-level
averages of α, α-weighted and log α-norm against test accuracy; rank correlations per family).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "MIN_MODELS",
    "MODEL_METRICS",
    "RankCorrelation",
    "bootstrap_rank_correlation",
    "kendall_tau_b",
    "model_aggregates",
    "rank_correlations",
    "spearman_rho",
]

#: Fewer models than this and a rank correlation says little: with n < 10 even |ρ| ≈ 0.6 is not
#: distinguishable from 0 at the 5 % level, and percentile-bootstrap intervals undercover.
MIN_MODELS = 10

#: Model-level metric → (metrics-row key, reduction over layers, description).
MODEL_METRICS: dict[str, tuple[str, str, str]] = {
    "alpha_mean": ("alpha", "mean", "mean power-law α"),
    "alpha_weighted": ("alpha_weighted", "mean", "mean α·log10 λmax"),
    "log_alpha_norm": ("log_alpha_norm", "mean", "mean log10 Σλ^α"),
    "alpha_hill": ("alpha_hill", "mean", "mean Hill α (PL_Alpha_Hill)"),
    "stable_rank": ("stable_rank", "mean", "mean stable rank Σλ/λmax"),
    "mp_soft_rank": ("mp_soft_rank", "mean", "mean MP soft rank λ+/λmax"),
    "n_spikes": ("n_spikes", "sum", "spikes above λ+, all layers"),
    "log_spectral_norm": ("log_spectral_norm", "mean", "mean log10 λmax (norm baseline)"),
    "log_frobenius_norm": ("log_frobenius_norm", "mean", "mean log10 Σλ (norm baseline)"),
    # only where the rows carry them (analysis with farms=True): NaN otherwise
    "alpha_farms": ("alpha_farms", "mean", "mean FARMS α (square windows, no aspect-ratio bias)"),
    "alpha_hill_farms": ("alpha_hill_farms", "mean", "mean FARMS PL_Alpha_Hill"),
}


def _num(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def model_aggregates(rows: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """Model-level spectral metrics of :data:`MODEL_METRICS` from one metrics row per layer.

    Averages run over the layers with a power-law fit (finite ``alpha``), so every metric describes
    the same layers; a model without any fit averages over all its layers.

    Parameters
    ----------
    rows : sequence of mapping
        Metrics rows (``analysis.analyze_eigs`` keys), one per layer.

    Returns
    -------
    dict of str to float
        Keys of :data:`MODEL_METRICS`; NaN where no layer has the value.

    Examples
    --------
    >>> rows = [{"alpha": 2.0, "stable_rank": 4.0, "n_spikes": 3},
    ...         {"alpha": 4.0, "stable_rank": 8.0, "n_spikes": 1},
    ...         {"alpha": float("nan"), "stable_rank": 2.0, "n_spikes": 5}]  # a head too small to fit
    >>> agg = model_aggregates(rows)
    >>> agg["alpha_mean"], agg["stable_rank"], agg["n_spikes"]
    (3.0, 6.0, 4.0)
    """
    fitted = [r for r in rows if math.isfinite(_num(r.get("alpha")))]
    use = fitted or list(rows)
    out: dict[str, float] = {}
    for name, (key, how, _) in MODEL_METRICS.items():
        vals = np.array([_num(r.get(key)) for r in use], dtype=np.float64)
        vals = vals[np.isfinite(vals)]
        out[name] = (float(vals.sum()) if how == "sum" else float(vals.mean())) if vals.size else math.nan
    return out


def _ranks(a: np.ndarray) -> np.ndarray:
    """Average ranks along the last axis (ties share their mean rank)."""
    from scipy.stats import rankdata

    return rankdata(a, axis=-1)


def _pearson_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation of each row of ``a`` with the same row of ``b``; NaN for constant rows."""
    a = a - a.mean(axis=-1, keepdims=True)
    b = b - b.mean(axis=-1, keepdims=True)
    den = np.sqrt((a * a).sum(axis=-1) * (b * b).sum(axis=-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (a * b).sum(axis=-1) / den
    return np.where(den > 0, r, np.nan)


def spearman_rho(x: Any, y: Any) -> float:
    """Spearman's rank correlation (Pearson correlation of average ranks); NaN if either is constant.

    Parameters
    ----------
    x, y : array-like of shape (n,)

    Returns
    -------
    float

    Examples
    --------
    >>> spearman_rho([1, 2, 3, 4], [10, 20, 40, 30])
    0.8
    """
    xa, ya = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    return float(_pearson_rows(_ranks(xa), _ranks(ya)))


def _kendall_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Kendall's τ-b of each row pair of ``x`` and ``y`` (shape (B, n)); NaN when a row is constant."""
    n = x.shape[-1]
    iu = np.triu_indices(n, k=1)
    chunk = max(1, int(4e6 // max(1, n * n)))  # rows per (chunk, n, n) block: ~32 MB at most
    out = np.empty(x.shape[0])
    for s in range(0, x.shape[0], chunk):
        xs, ys = x[s:s + chunk], y[s:s + chunk]
        dx = np.sign(xs[:, :, None] - xs[:, None, :])[:, iu[0], iu[1]]
        dy = np.sign(ys[:, :, None] - ys[:, None, :])[:, iu[0], iu[1]]
        concord = (dx * dy).sum(axis=1)
        # τ-b: pairs tied in x (dx = 0) or in y leave the denominators
        den = np.sqrt((dx != 0).sum(axis=1) * (dy != 0).sum(axis=1).astype(np.float64))
        with np.errstate(invalid="ignore", divide="ignore"):
            out[s:s + chunk] = np.where(den > 0, concord / den, np.nan)
    return out


def kendall_tau_b(x: Any, y: Any) -> float:
    """Kendall's τ-b (ties accounted for, as ``scipy.stats.kendalltau``); NaN if either is constant.

    Parameters
    ----------
    x, y : array-like of shape (n,)

    Returns
    -------
    float

    Examples
    --------
    >>> round(kendall_tau_b([1, 2, 3, 4], [10, 20, 40, 30]), 4)
    0.6667
    """
    xa, ya = np.asarray(x, dtype=np.float64)[None, :], np.asarray(y, dtype=np.float64)[None, :]
    return float(_kendall_rows(xa, ya)[0])


def bootstrap_rank_correlation(x: Any, y: Any, *, n_boot: int = 2000, level: float = 0.95,
                               rng: Any = None) -> tuple[tuple[float, float], tuple[float, float]]:
    """Percentile-bootstrap confidence intervals of Spearman's ρ and Kendall's τ-b.

    Pairs ``(x_i, y_i)`` are resampled with replacement ``n_boot`` times (all resamples at once);
    resamples in which ``x`` or ``y`` is constant have no correlation and are left out.

    Parameters
    ----------
    x, y : array-like of shape (n,)
    n_boot : int, default=2000
    level : float, default=0.95
        Confidence level of the two-sided interval.
    rng : None, int or numpy.random.Generator
        Seed or generator of the resampling.

    Returns
    -------
    spearman_ci, kendall_ci : tuple of (float, float)
        (low, high); NaN when fewer than 3 pairs or no resample has a correlation.
    """
    xa, ya = np.asarray(x, dtype=np.float64).ravel(), np.asarray(y, dtype=np.float64).ravel()
    nan2 = (math.nan, math.nan)
    if xa.size < 3 or xa.size != ya.size:
        return nan2, nan2
    gen = np.random.default_rng(rng)
    idx = gen.integers(0, xa.size, size=(int(n_boot), xa.size))
    xb, yb = xa[idx], ya[idx]
    rho = _pearson_rows(_ranks(xb), _ranks(yb))
    tau = _kendall_rows(xb, yb)
    q = [(1 - level) / 2 * 100, (1 + level) / 2 * 100]

    def ci(v: np.ndarray) -> tuple[float, float]:
        v = v[np.isfinite(v)]
        if not v.size:
            return nan2
        lo, hi = np.percentile(v, q)
        return float(lo), float(hi)

    return ci(rho), ci(tau)


@dataclass(frozen=True)
class RankCorrelation:
    """How well one model-level metric ranks the models by the target, in one group of models.

    Attributes
    ----------
    metric : str
        A key of :data:`MODEL_METRICS` (or any metric name given).
    target : str
        What it is correlated with, e.g. ``"test_acc"``.
    group : str
        ``""`` for all models, else ``"<variable>=<value>"`` (e.g. ``"optimizer=adam"``).
    n : int
        Models with finite metric and target values.
    spearman, kendall : float
        Spearman's ρ and Kendall's τ-b (NaN with fewer than 3 models or a constant variable).
    spearman_ci, kendall_ci : tuple of (float, float)
        Percentile-bootstrap interval at ``level``.
    spearman_p, kendall_p : float
        Two-sided p-values of no association (``scipy.stats.spearmanr`` / ``kendalltau``).
    level : float
        Confidence level of the intervals.
    enough : bool
        ``n >= min_models``: enough models for a meaningful estimate.
    message : str
        ``""``, or why the estimate is weak or missing.
    """

    metric: str
    target: str
    group: str
    n: int
    spearman: float
    spearman_ci: tuple[float, float]
    spearman_p: float
    kendall: float
    kendall_ci: tuple[float, float]
    kendall_p: float
    level: float
    enough: bool
    message: str

    def __repr__(self) -> str:
        lo, hi = self.spearman_ci
        where = self.group or "all"
        return (f"RankCorrelation({self.metric} vs {self.target} [{where}, n={self.n}]: "
                f"rho={self.spearman:.3f} [{lo:.3f}, {hi:.3f}], tau={self.kendall:.3f}"
                f"{'; ' + self.message if self.message else ''})")


def _correlate(metric: str, target: str, group: str, x: np.ndarray, y: np.ndarray, *, n_boot: int,
               level: float, min_models: int, rng: np.random.Generator) -> RankCorrelation:
    from scipy import stats

    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    n = int(x.size)
    nan2 = (math.nan, math.nan)
    rho = tau = p_rho = p_tau = math.nan
    rho_ci = tau_ci = nan2
    if n < 3:
        message = f"n={n}: needs at least 3 models"
    elif np.ptp(x) == 0 or np.ptp(y) == 0:
        message = f"{'the metric' if np.ptp(x) == 0 else target} is constant"
    else:
        rho, tau = spearman_rho(x, y), kendall_tau_b(x, y)
        p_rho = float(stats.spearmanr(x, y).pvalue)
        p_tau = float(stats.kendalltau(x, y).pvalue)
        rho_ci, tau_ci = bootstrap_rank_correlation(x, y, n_boot=n_boot, level=level, rng=rng)
        message = f"n={n} < {min_models}: too few models for a meaningful estimate" if n < min_models else ""
    return RankCorrelation(metric=metric, target=target, group=group, n=n, spearman=rho, spearman_ci=rho_ci,
                           spearman_p=p_rho, kendall=tau, kendall_ci=tau_ci, kendall_p=p_tau, level=level,
                           enough=n >= min_models and math.isfinite(rho), message=message)


def _natural(value: str) -> tuple[int, float, str]:
    """Sort key: numbers by value first, then other strings alphabetically."""
    try:
        return 0, float(value), ""
    except ValueError:
        return 1, 0.0, value


def rank_correlations(metrics: Mapping[str, Any], target: Any, *, target_name: str = "test_acc",
                      groups: Mapping[str, Sequence[Any]] | None = None, n_boot: int = 2000,
                      level: float = 0.95, min_models: int = MIN_MODELS, min_group_size: int = 3,
                      rng: Any = 0) -> list[RankCorrelation]:
    """Spearman and Kendall correlation of each metric with the target, overall and per group.

    Parameters
    ----------
    metrics : mapping of str to array-like of shape (n,)
        Model-level metric values, one per model (NaN: unknown, left out of that metric).
    target : array-like of shape (n,)
        E.g. test accuracy of each model (NaN: unknown).
    target_name : str, default='test_acc'
    groups : mapping of str to sequence of length n, optional
        Categorical variables (e.g. ``{"optimizer": ["sgd", "adam", ...]}``): the correlations
        are also computed within each of their values (numbers in numeric order, then names).
    n_boot : int, default=2000
        Bootstrap resamples per interval.
    level : float, default=0.95
    min_models : int, default=MIN_MODELS
        Below this many models a result is flagged (``enough=False`` and a message).
    min_group_size : int, default=3
        Group values with fewer models are left out (no rank correlation exists below 3).
    rng : None, int or numpy.random.Generator, default=0
        Resampling seed (fixed by default, so a report is reproducible).

    Returns
    -------
    list of RankCorrelation
        All metrics over all models first (in the order of ``metrics``), then per group value.

    Examples
    --------
    >>> r = rank_correlations({"alpha_mean": [4.1, 3.5, 2.9, 2.4, 2.2]}, [0.80, 0.85, 0.90, 0.93, 0.92])
    >>> r[0].spearman, r[0].n, r[0].enough
    (-0.9, 5, False)
    """
    y = np.asarray(target, dtype=np.float64).ravel()
    cols = {name: np.asarray(v, dtype=np.float64).ravel() for name, v in metrics.items()}
    for name, col in cols.items():
        if col.shape != y.shape:
            raise ValueError(f"metric {name!r} has {col.size} values for {y.size} targets")
    gen = np.random.default_rng(rng)
    kw = {"n_boot": n_boot, "level": level, "min_models": min_models, "rng": gen}
    out = [_correlate(name, target_name, "", col, y, **kw) for name, col in cols.items()]
    for var, values in (groups or {}).items():
        vals = [str(v) for v in values]
        if len(vals) != y.size:
            raise ValueError(f"group {var!r} has {len(vals)} values for {y.size} targets")
        for value in sorted(set(vals), key=_natural):
            sel = np.array([v == value for v in vals])
            if sel.sum() < min_group_size:
                continue
            out += [_correlate(name, target_name, f"{var}={value}", col[sel], y[sel], **kw)
                    for name, col in cols.items()]
    return out
