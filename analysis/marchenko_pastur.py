"""Marchenko–Pastur (MP) law: edges, density, a robust bulk fit, spikes and the shuffle baseline.

Convention (as everywhere in :mod:`analysis`): ``W`` is ``N × M`` after transposing so that
``N >= M``, ``Q = N / M >= 1`` and the eigenvalues are those of ``X = WᵀW / N``. For iid entries of
variance ``σ²`` the empirical spectral density (ESD) tends to MP(σ², Q), supported on
``[λ-, λ+]`` with ``λ± = σ² (1 ± 1/√Q)²`` and mean ``σ²``.

The fit (:func:`fit_marchenko_pastur`) estimates ``σ²`` from the *bulk* only, so that a few large
outliers (spikes) or a heavy tail do not inflate it: starting from all eigenvalues, it regresses the
lowest ``M - k`` sorted eigenvalues on the MP(1, Q) quantiles of the same levels (a quantile–quantile
fit through the origin, over the central 5–95 % of the bulk; the first round uses only the lower
half of the spectrum, 5–50 %, so that a large outlying mass cannot inflate the start), recomputes
``λ+``, recounts the ``k``
eigenvalues above ``λ+`` plus a Tracy–Widom margin, and repeats until ``k`` is stable.

Tracy–Widom margin. For Gaussian entries the largest bulk eigenvalue fluctuates around ``λ+`` on
the scale (Johnstone 2001, rescaled to ``X = WᵀW / N`` and ``c = 1/Q = M/N``)

    s_TW = σ² · M^(-2/3) · √c · (1 + √c)^(4/3),

and ``(λ_max - λ+) / s_TW`` follows the TW₁ law (99.9 % quantile ≈ 3.3, P(TW₁ > 4) ≈ 1e-4). An eigenvalue
counts as a spike when it exceeds ``λ+ + TW_MARGIN_K · s_TW`` with ``TW_MARGIN_K = 4``; this
constant was checked against pure-Gaussian matrices (M = 32…512, Q = 1…10; the test is in
``tests/analysis/test_marchenko_pastur.py``), where it gives essentially no false spikes even after
``σ²`` has been estimated from the same matrix.

BBP transition. For ``W = σ G + √N θσ · u vᵀ`` (``G`` iid standard normal, ``u, v`` unit vectors)
an outlier separates from the bulk iff ``θ > c^(1/4) = (M/N)^(1/4)``, and it sits at

    λ_out = σ² (1 + θ²)(1 + c/θ²)                       (Benaych-Georges & Nadakuditi 2012),

which equals ``λ+`` at the threshold; :func:`bbp_outlier` and :func:`bbp_strength` convert between
the two.

References
----------
.. [1] Martin & Mahoney, "Implicit Self-Regularization in Deep Neural Networks" (2018), Sec. 3.1,
       5.2–5.3 and 6.3 (``shared/papers/implicit-self-regularization.txt``).
.. [2] I. M. Johnstone, "On the distribution of the largest eigenvalue in principal components
       analysis", Ann. Statist. 29 (2001).
.. [3] F. Benaych-Georges & R. R. Nadakuditi, "The singular values and vectors of low rank
       perturbations of large rectangular random matrices", J. Multivariate Anal. 111 (2012).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

from htsweep.analysis._validation import Interval, check_random_state, validate

__all__ = [
    "TW_MARGIN_K",
    "MPFit",
    "bbp_outlier",
    "bbp_strength",
    "fit_marchenko_pastur",
    "mp_cdf",
    "mp_density",
    "mp_edges",
    "mp_quantile",
    "shuffle_baseline",
    "tw_scale",
]

#: Spikes are eigenvalues above ``λ+ + TW_MARGIN_K · s_TW`` (see the module docstring).
TW_MARGIN_K: float = 4.0

_Q = Interval(float, 1.0, None, closed="left")
_POS = Interval(float, 0.0, None, closed="neither")
_GRID = 4097  # points of the MP(1, Q) CDF table (smooth integrand: error far below 1e-6)
_MAX_ITER = 30


# --------------------------------------------------------------------------- closed forms


@validate({"sigma2": [_POS], "q": [_Q]})
def mp_edges(sigma2: float, q: float) -> tuple[float, float]:
    """Edges ``(λ-, λ+)`` of the MP law, ``λ± = σ² (1 ± 1/√Q)²``.

    Parameters
    ----------
    sigma2 : float
        Element-wise variance ``σ² > 0``.
    q : float
        Aspect ratio ``Q = N / M >= 1``.

    Returns
    -------
    lambda_minus, lambda_plus : float

    Examples
    --------
    >>> mp_edges(1.0, 4.0)
    (0.25, 2.25)
    """
    lm, lp = _edges(float(sigma2), float(q))
    return float(lm), float(lp)


def _edges(sigma2: float, q: float) -> tuple[float, float]:
    r = 1.0 / np.sqrt(q)
    return sigma2 * (1.0 - r) ** 2, sigma2 * (1.0 + r) ** 2


@validate({"x": ["array-like", float], "sigma2": [_POS], "q": [_Q]})
def mp_density(x: Any, sigma2: float, q: float) -> np.ndarray:
    """MP density ``ρ(λ) = Q / (2πσ²) · √((λ+ - λ)(λ - λ-)) / λ``, normalized over ``M`` eigenvalues.

    Parameters
    ----------
    x : array-like of shape (n_points,) or float
        Where to evaluate (eigenvalue units of ``WᵀW / N``).
    sigma2 : float
        Element-wise variance ``σ² > 0``.
    q : float
        Aspect ratio ``Q = N / M >= 1`` (so there is no atom at zero).

    Returns
    -------
    ndarray of the shape of ``x``
        The density; zero outside ``(λ-, λ+)``. It integrates to 1 and has mean ``σ²``.

    Examples
    --------
    >>> round(float(mp_density(1.0, 1.0, 1.0)), 5)  # √3 / (2π)
    0.27566
    """
    xx = np.asarray(x, dtype=np.float64)
    lm, lp = _edges(float(sigma2), float(q))
    inside = (xx > lm) & (xx < lp)
    out = np.zeros_like(xx)
    xi = xx[inside]
    out[inside] = q / (2.0 * np.pi * sigma2) * np.sqrt((lp - xi) * (xi - lm)) / xi
    return out


@lru_cache(maxsize=256)
def _unit_table(q: float) -> tuple[np.ndarray, np.ndarray]:
    """Grid ``x`` and CDF of MP(1, q), via ``λ = a + (b - a)(1 - cos t)/2`` (smooth integrand)."""
    a, b = _edges(1.0, q)
    t = np.linspace(0.0, np.pi, _GRID)
    x = a + (b - a) * (1.0 - np.cos(t)) / 2.0
    half = (b - a) / 2.0
    with np.errstate(divide="ignore", invalid="ignore"):
        f = q / (2.0 * np.pi) * half**2 * np.sin(t) ** 2 / x
    if x[0] == 0.0:  # q == 1: finite limit sin²t / x -> 4 / b at t = 0
        f[0] = q / (2.0 * np.pi) * half**2 * 4.0 / b
    cdf = np.concatenate([[0.0], np.cumsum((f[1:] + f[:-1]) * 0.5 * np.diff(t))])
    cdf /= cdf[-1]
    x.setflags(write=False)
    cdf.setflags(write=False)
    return x, cdf


@validate({"x": ["array-like", float], "sigma2": [_POS], "q": [_Q]})
def mp_cdf(x: Any, sigma2: float, q: float) -> np.ndarray:
    """Cumulative distribution function of MP(σ², Q).

    Parameters
    ----------
    x : array-like of shape (n_points,) or float
    sigma2 : float
        Element-wise variance ``σ² > 0``.
    q : float
        Aspect ratio ``Q >= 1``.

    Returns
    -------
    ndarray of the shape of ``x``, values in [0, 1].
    """
    return _cdf(np.asarray(x, dtype=np.float64), float(sigma2), float(q))


def _cdf(x: np.ndarray, sigma2: float, q: float) -> np.ndarray:
    gx, gc = _unit_table(q)
    return np.interp(x / sigma2, gx, gc, left=0.0, right=1.0)


@validate({"p": ["array-like", float], "sigma2": [_POS], "q": [_Q]})
def mp_quantile(p: Any, sigma2: float, q: float) -> np.ndarray:
    """Quantile function (inverse CDF) of MP(σ², Q).

    Parameters
    ----------
    p : array-like of shape (n_points,) or float
        Probability levels in [0, 1].
    sigma2 : float
        Element-wise variance ``σ² > 0``.
    q : float
        Aspect ratio ``Q >= 1``.

    Returns
    -------
    ndarray of the shape of ``p``.
    """
    return float(sigma2) * _unit_quantile(np.asarray(p, dtype=np.float64), float(q))


def _unit_quantile(p: np.ndarray, q: float) -> np.ndarray:
    gx, gc = _unit_table(q)
    return np.interp(p, gc, gx)


@validate({"sigma2": [_POS], "q": [_Q], "m": [Interval(int, 1, None)]})
def tw_scale(sigma2: float, q: float, m: int) -> float:
    """Tracy–Widom fluctuation scale ``s_TW = σ² M^(-2/3) √c (1 + √c)^(4/3)`` of ``λ_max``, ``c = 1/Q``.

    Parameters
    ----------
    sigma2 : float
        Element-wise variance.
    q : float
        Aspect ratio ``Q = N / M >= 1``.
    m : int
        Number of eigenvalues ``M``.

    Returns
    -------
    float
        In eigenvalue units; ``(λ_max - λ+) / s_TW`` is asymptotically TW₁-distributed.
    """
    return _tw(float(sigma2), float(q), int(m))


def _tw(sigma2: float, q: float, m: int) -> float:
    c = 1.0 / q
    return sigma2 * m ** (-2.0 / 3.0) * np.sqrt(c) * (1.0 + np.sqrt(c)) ** (4.0 / 3.0)


@validate({"theta": [Interval(float, 0.0, None)], "q": [_Q], "sigma2": [_POS]})
def bbp_outlier(theta: float, q: float, sigma2: float = 1.0) -> float:
    """Limiting outlier eigenvalue of a rank-one spike of strength ``θ`` (in units of σ).

    Model: ``W = σ G + √N θ σ u vᵀ`` with ``‖u‖ = ‖v‖ = 1``; eigenvalues of ``WᵀW / N``.

    Parameters
    ----------
    theta : float
        Signal singular value of ``W / √N`` divided by ``σ``. The BBP threshold is ``c^(1/4)``,
        ``c = 1/Q``.
    q : float
        Aspect ratio ``Q >= 1``.
    sigma2 : float, default=1.0

    Returns
    -------
    float
        ``σ² (1 + θ²)(1 + c/θ²)`` above the threshold, ``λ+`` at or below it.

    Examples
    --------
    >>> bbp_outlier(2.0, 1.0)  # (1 + 4)(1 + 1/4)
    6.25
    """
    c = 1.0 / float(q)
    t = float(theta) ** 2
    if t <= np.sqrt(c):
        return _edges(float(sigma2), float(q))[1]
    return float(sigma2) * (1.0 + t) * (1.0 + c / t)


@validate({"outlier": [_POS], "q": [_Q], "sigma2": [_POS]})
def bbp_strength(outlier: float, q: float, sigma2: float = 1.0) -> float:
    """Inverse of :func:`bbp_outlier`: the strength ``θ`` whose outlier sits at ``outlier``.

    Parameters
    ----------
    outlier : float
        Target eigenvalue; must be ``>= λ+``.
    q : float
        Aspect ratio ``Q >= 1``.
    sigma2 : float, default=1.0

    Returns
    -------
    float
        ``θ >= c^(1/4)``; solves ``t² + (1 + c - L) t + c = 0`` for ``t = θ²``, ``L = outlier/σ²``.

    Examples
    --------
    >>> round(bbp_strength(6.25, 1.0), 12)
    2.0
    """
    lp = (1.0 + np.sqrt(1.0 / float(q))) ** 2
    if float(outlier) / float(sigma2) < lp * (1.0 - 1e-12):
        raise ValueError(f"bbp_strength: outlier {outlier!r} is below λ+ = {lp * float(sigma2)!r}")
    return float(np.sqrt(_bbp_theta2(np.float64(outlier), float(sigma2), float(q))))


def _bbp_theta2(outliers: np.ndarray, sigma2: float, q: float) -> np.ndarray:
    """``θ²`` (units of σ²) whose BBP outliers sit at ``outliers``, elementwise; no range check.

    Solves ``(1 + t)(1 + c/t) = λ/σ²`` (``t = θ²``, ``c = 1/Q``) on its upper branch ``t >= √c``;
    values at or below ``λ+`` give the threshold ``√c``.
    """
    c = 1.0 / q
    b = outliers / sigma2 - 1.0 - c
    return 0.5 * (b + np.sqrt(np.maximum(b * b - 4.0 * c, 0.0)))


# --------------------------------------------------------------------------- the fit


@dataclass(frozen=True, repr=False)
class MPFit:
    """Result of :func:`fit_marchenko_pastur`.

    Attributes
    ----------
    sigma2 : float
        Bulk element-wise variance ``σ²`` (NaN when the fit is impossible).
    q : float
        Aspect ratio ``Q = N / M`` used.
    lambda_minus, lambda_plus : float
        MP edges ``σ² (1 ∓ 1/√Q)²``.
    tw_margin : float
        ``TW_MARGIN_K · s_TW``: how far above ``λ+`` an eigenvalue must lie to count as a spike.
    n_spikes : int
        Number of eigenvalues above ``λ+ + tw_margin``.
    spikes : ndarray of shape (n_spikes,)
        Those eigenvalues, ascending.
    soft_rank : float
        MP soft rank ``λ+ / λ_max`` (1 for a pure MP spectrum, → 0 for a dominant outlier).
    ks_bulk : float
        Kolmogorov–Smirnov distance between the bulk (the ``M - n_spikes`` lowest eigenvalues) and
        MP(σ², Q).
    n_bulk : int
        ``M - n_spikes``.
    success : bool
        False when there are too few eigenvalues or the estimate is not finite.
    message : str
        Why the fit failed, or a note ("converged after k iterations", ...).
    """

    sigma2: float
    q: float
    lambda_minus: float
    lambda_plus: float
    tw_margin: float
    n_spikes: int
    spikes: np.ndarray = field(compare=False)
    soft_rank: float
    ks_bulk: float
    n_bulk: int = 0
    success: bool = True
    message: str = ""

    def __repr__(self) -> str:
        rows = [
            ("sigma2", f"{self.sigma2:.6g}"),
            ("q", f"{self.q:.6g}"),
            ("lambda_minus", f"{self.lambda_minus:.6g}"),
            ("lambda_plus", f"{self.lambda_plus:.6g}"),
            ("tw_margin", f"{self.tw_margin:.3g}"),
            ("n_spikes", str(self.n_spikes)),
            ("soft_rank", f"{self.soft_rank:.4g}"),
            ("ks_bulk", f"{self.ks_bulk:.4g}"),
            ("success", str(self.success)),
            ("message", repr(self.message)),
        ]
        width = max(len(k) for k, _ in rows)
        return "MPFit(\n" + "\n".join(f"  {k.rjust(width)}: {v}" for k, v in rows) + "\n)"

    def density(self, x: Any) -> np.ndarray:
        """The fitted MP density at ``x`` (array-like of shape (n_points,)); see :func:`mp_density`."""
        if not self.success:
            return np.full(np.shape(x), np.nan)
        return mp_density(x, self.sigma2, self.q)


def _failed(q: float, message: str) -> MPFit:
    nan = float("nan")
    return MPFit(nan, q, nan, nan, nan, 0, np.empty(0), nan, nan, 0, False, message)


def _qq_sigma2(bulk: np.ndarray, q: float, hi: float = 0.95) -> float:
    """σ² from a quantile–quantile regression through the origin on levels 5 %…``hi`` of ``bulk``."""
    n = bulk.size
    levels = (np.arange(n) + 0.5) / n
    keep = (levels >= 0.05) & (levels <= hi)
    if keep.sum() < 2:
        keep[:] = True
    theo = _unit_quantile(levels[keep], q)
    emp = bulk[keep]
    den = float(theo @ theo)
    return float(theo @ emp) / den if den > 0 else float("nan")


def _ks(bulk: np.ndarray, sigma2: float, q: float) -> float:
    n = bulk.size
    cdf = _cdf(bulk, sigma2, q)
    i = np.arange(1, n + 1)
    return float(max(np.max(i / n - cdf), np.max(cdf - (i - 1) / n)))


@validate({"eigs": ["array-like"], "q": [_Q], "max_spike_frac": [Interval(float, 0.0, 1.0, "neither")]})
def fit_marchenko_pastur(eigs: Any, q: float, *, max_spike_frac: float = 0.5) -> MPFit:
    """Fit the MP law to the bulk of an ESD; count the spikes above ``λ+`` plus a TW margin.

    Parameters
    ----------
    eigs : array-like of shape (M,)
        Eigenvalues of ``X = WᵀW / N`` (any order; NaNs are not allowed; tiny negative round-off
        values are clipped to 0).
    q : float
        Aspect ratio ``Q = N / M >= 1``.
    max_spike_frac : float, default=0.5
        The bulk always keeps at least ``(1 - max_spike_frac) · M`` eigenvalues; when more would
        be outliers the iteration stops there and ``message`` says the bulk is not MP-like.

    Returns
    -------
    MPFit
        ``success=False`` (NaN fields) for fewer than 4 eigenvalues or an all-zero spectrum.

    Notes
    -----
    Algorithm (module docstring): QQ-regression of the lowest ``M - k`` eigenvalues on MP(1, Q)
    quantiles → ``σ²`` → ``λ+`` → ``k = #{λ > λ+ + TW_MARGIN_K · s_TW}``, iterated to a fixed
    point (at most 30 rounds). Cost: one sort plus O(M) per round.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> W = rng.standard_normal((800, 400))
    >>> fit = fit_marchenko_pastur(np.linalg.eigvalsh(W.T @ W / 800), q=2.0)
    >>> round(fit.sigma2, 1), fit.n_spikes
    (1.0, 0)
    """
    lam = np.sort(np.asarray(eigs, dtype=np.float64).ravel())
    q = float(q)
    if lam.size < 4:
        return _failed(q, f"too few eigenvalues for an MP fit (M={lam.size})")
    if not np.all(np.isfinite(lam)):
        raise ValueError("fit_marchenko_pastur: eigs contain NaN or Inf")
    lam = np.clip(lam, 0.0, None)
    m = lam.size
    if lam[-1] <= 0.0:
        return _failed(q, "all eigenvalues are zero")
    k_max = int(np.floor(max_spike_frac * m))
    k = 0
    note = ""
    sigma2 = float("nan")
    for it in range(_MAX_ITER):
        # first round: lower half only, so that a large outlying mass cannot inflate the start
        sigma2 = _qq_sigma2(lam[: m - k], q, hi=0.5 if it == 0 else 0.95)
        if not np.isfinite(sigma2) or sigma2 <= 0.0:
            return _failed(q, "non-finite or non-positive bulk variance")
        lp = _edges(sigma2, q)[1]
        margin = TW_MARGIN_K * _tw(sigma2, q, m)
        k_new = int(m - np.searchsorted(lam, lp + margin, side="right"))
        if k_new > k_max:
            k_new = k_max
            note = f"bulk not MP-like: more than {max_spike_frac:.0%} of eigenvalues above λ+"
        if k_new == k and it > 0:
            note = note or f"converged after {it + 1} iterations"
            break
        k = k_new
    else:
        note = f"no fixed point after {_MAX_ITER} iterations (spike count oscillates)"
    lm, lp = _edges(sigma2, q)
    margin = TW_MARGIN_K * _tw(sigma2, q, m)
    # the same cap as in the iteration, so the bulk reported is the bulk σ² was fitted on
    n_spikes = min(int(m - np.searchsorted(lam, lp + margin, side="right")), k_max)
    spikes = lam[m - n_spikes:].copy()
    spikes.setflags(write=False)
    bulk = lam[: m - n_spikes]
    return MPFit(
        sigma2=sigma2,
        q=q,
        lambda_minus=lm,
        lambda_plus=lp,
        tw_margin=margin,
        n_spikes=int(spikes.size),
        spikes=spikes,
        soft_rank=float(lp / lam[-1]),
        ks_bulk=_ks(bulk, sigma2, q) if bulk.size else float("nan"),
        n_bulk=int(bulk.size),
        success=True,
        message=note,
    )


@validate({"W": ["array-like"], "rng": ["random_state"]})
@validate({"n_permutations": [None, Interval(int, 1, None)], "rng": ["random_state"]})
def shuffle_baseline(W: Any, *, n_permutations: int | None = None, rng: Any = None) -> np.ndarray:
    """ESD of ``W`` with its entries randomly permuted (destroys correlations, keeps ``‖W‖_F``).

    Parameters
    ----------
    W : array-like or torch.Tensor of shape (n_rows, n_cols)
        A weight matrix, any float dtype (bfloat16/float16 tensors are upcast; the shuffle and the
        eigensolve run in float64). Transposed internally so that ``N >= M``.
    n_permutations : int, optional
        Number of independent permutations. ``None`` (default) gives one ESD of shape ``(M,)``;
        an int ``k`` gives ``k`` ESDs stacked into shape ``(k, M)`` (as numpy's ``size``
        argument does), for a spread over permutations.
    rng : None, int or numpy.random.Generator, default=None
        Source of the permutations.

    Returns
    -------
    ndarray of shape (M,) or (n_permutations, M)
        Ascending eigenvalues of ``W_shufᵀ W_shuf / N``; its MP fit gives ``σ²_shuf`` [1]_ (Sec. 6.3).

    Examples
    --------
    >>> import numpy as np
    >>> W = np.random.default_rng(0).standard_normal((200, 50))
    >>> shuffle_baseline(W, n_permutations=3, rng=1).shape
    (3, 50)
    """
    from htsweep.analysis.spectrum import esd  # local: analysis.spectrum may import this module's package

    if hasattr(W, "detach"):
        # numpy has no bfloat16: upcast on the tensor side first
        W = W.detach().double().cpu().numpy()
    a = np.asarray(W, dtype=np.float64)
    if a.ndim != 2:
        raise ValueError(f"shuffle_baseline: W must be 2-D, got shape {a.shape}")
    gen = check_random_state(rng)
    flat = a.ravel()
    k = 1 if n_permutations is None else n_permutations
    out = np.stack([esd(gen.permutation(flat).reshape(a.shape)) for _ in range(k)])
    return out[0] if n_permutations is None else out
