"""Power-law fits of the ESD tail: Clauset–Shalizi–Newman (CSN) MLE + KS, Hill, tail comparisons.

For every candidate ``xmin`` (each distinct eigenvalue), the continuous MLE

    α(xmin) = 1 + n_tail / Σ_{λ ≥ xmin} ln(λ / xmin)

comes from one suffix cumulative sum over the sorted log-eigenvalues, and the Kolmogorov–Smirnov
distance D(xmin) between the tail's empirical CDF and the fitted CDF is evaluated for all
candidates at once on blocks of a (candidate × eigenvalue) grid, so memory stays bounded for any
number of eigenvalues. The xmin with the smallest D wins; for large spectra a lower bound of D
from a strided subset of the points first rules out most candidates (the result is the same as
the full scan). ``D`` is defined exactly as in the
``powerlaw`` package (the empirical CDF at each tail point counts the tail points strictly below
it), so on the same data both choose the same ``xmin`` and return the same ``alpha``; unlike
``powerlaw`` 2.0, no silent clipping of ``alpha`` to [0, 3] happens here.

References
----------
A. Clauset, C. R. Shalizi, M. E. J. Newman, "Power-law distributions in empirical data",
SIAM Review 51(4), 2009.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from htsweep.analysis._validation import Interval, Options, validate

__all__ = ["PowerLawFit", "compare_tails", "fit_power_law", "hill_estimator", "pl_alpha_hill"]

# Max number of grid cells (candidates × eigenvalues) evaluated per block of the KS computation.
_BLOCK_CELLS = 1 << 20


@dataclass(frozen=True)
class PowerLawFit:
    """Result of :func:`fit_power_law`.

    Attributes
    ----------
    alpha : float
        Exponent of the density ρ(λ) ∝ λ^(-alpha) on [xmin, xmax]; NaN on failure.
    xmin : float
        Lower cutoff of the tail.
    xmax : float
        Upper cutoff; NaN when the tail is unbounded.
    D : float
        Kolmogorov–Smirnov distance between the tail and the fitted CDF.
    n_tail : int
        Number of eigenvalues in [xmin, xmax] used in the fit (0 on failure).
    sigma : float
        Standard error (alpha - 1) / sqrt(n_tail).
    success : bool
        False when no fit was possible (too few or identical eigenvalues, no valid xmin).
    message : str
        Why the fit failed, or ``""``.
    """

    alpha: float
    xmin: float
    xmax: float
    D: float
    n_tail: int
    sigma: float
    success: bool
    message: str

    def ci(self, level: float = 0.95) -> tuple[float, float]:
        """Normal-approximation confidence interval ``alpha ± z · sigma`` at ``level``."""
        from scipy.stats import norm

        z = float(norm.ppf(0.5 + level / 2.0))
        return (self.alpha - z * self.sigma, self.alpha + z * self.sigma)

    def pdf(self, x: Any) -> np.ndarray:
        """Fitted density of the tail at ``x`` (zero outside [xmin, xmax]), normalized on the tail.

        Parameters
        ----------
        x : array-like of shape (n_points,)

        Returns
        -------
        ndarray of shape (n_points,)
        """
        x = np.asarray(x, dtype=np.float64)
        if not self.success:
            return np.full_like(x, np.nan)
        a = self.alpha
        norm_ = 1.0 - (self.xmax / self.xmin) ** (1.0 - a) if np.isfinite(self.xmax) else 1.0
        inside = (x >= self.xmin) & (~np.isfinite(self.xmax) | (x <= self.xmax))
        with np.errstate(divide="ignore", invalid="ignore"):
            dens = (a - 1.0) / self.xmin * (x / self.xmin) ** (-a) / norm_
        return np.where(inside, dens, 0.0)

    def plot(self, eigs: Any, ax: Any = None) -> Any:
        """Log–log tail plot of ``eigs`` with this fit (see :func:`analysis.plots.plot_tail`)."""
        from htsweep.analysis.plots import plot_tail

        return plot_tail(eigs, self, ax=ax)

    def __repr__(self) -> str:
        rows = {
            "alpha": f"{self.alpha:.4g}",
            "sigma": f"{self.sigma:.3g}",
            "xmin": f"{self.xmin:.4g}",
            "xmax": f"{self.xmax:.4g}",
            "D": f"{self.D:.4g}",
            "n_tail": str(self.n_tail),
            "success": str(self.success),
            "message": repr(self.message),
        }
        width = max(len(k) for k in rows)
        body = "\n".join(f"  {k.rjust(width)}: {v}" for k, v in rows.items())
        return f"PowerLawFit(\n{body}\n)"


def _failed(message: str, xmax: float = math.nan) -> PowerLawFit:
    nan = math.nan
    return PowerLawFit(alpha=nan, xmin=nan, xmax=xmax, D=nan, n_tail=0, sigma=nan, success=False, message=message)


def _ks_distances(
    logx: np.ndarray,
    rank: np.ndarray,
    starts: np.ndarray,
    log_xmins: np.ndarray,
    alphas: np.ndarray,
    log_xmax: float | None,
    cols: np.ndarray | None = None,
) -> np.ndarray:
    """KS distance of each candidate tail to its fitted (optionally truncated) power-law CDF.

    ``logx`` (n,) sorted log data; ``rank[j]`` = index of the first element equal to x_j; candidate
    ``r`` covers x[starts[r]:] with lower cutoff exp(log_xmins[r]) and exponent alphas[r]. The data
    CDF of point j in that tail is (rank[j] - starts[r]) / (n - starts[r]). With ``cols`` (sorted
    indices) only those data points are compared, which gives a lower bound of the distance.
    """
    n = logx.shape[0]
    if cols is None:
        cols = np.arange(n)
    out = np.empty(starts.shape[0])
    order = np.argsort(starts, kind="stable")
    pos = 0
    while pos < order.shape[0]:
        c0 = int(np.searchsorted(cols, starts[order[pos]], side="left"))
        idx = cols[c0:]
        rows = max(1, _BLOCK_CELLS // max(idx.shape[0], 1))
        sel = order[pos : pos + rows]
        pos += rows
        s = starts[sel][:, None]
        a = (1.0 - alphas[sel])[:, None]
        k = (n - starts[sel]).astype(np.float64)[:, None]
        # theoretical CDF: 1 - (x/xmin)^(1-α), divided by 1 - (xmax/xmin)^(1-α) when truncated
        z = logx[None, idx] - log_xmins[sel][:, None]
        np.multiply(z, a, out=z)
        with np.errstate(over="ignore"):  # only points below a candidate's xmin overflow; masked below
            np.expm1(z, out=z)
        np.negative(z, out=z)
        if log_xmax is not None:
            norm_ = -np.expm1(a * (log_xmax - log_xmins[sel][:, None]))
            np.divide(z, norm_, out=z)
        emp = (rank[None, idx] - s) / k
        np.subtract(z, emp, out=z)
        np.abs(z, out=z)
        z[idx[None, :] < s] = 0.0
        out[sel] = z.max(axis=1)
    return out


def _ks_min(
    logx: np.ndarray, rank: np.ndarray, starts: np.ndarray, alphas: np.ndarray, log_xmax: float | None
) -> tuple[int, float]:
    """Index (into ``starts``) and value of the smallest KS distance over all candidates.

    Exact, but avoids most of the O(n²) work for large n: a strided subset of the data points gives
    a lower bound of every candidate's D; the few most promising candidates are evaluated fully,
    and only the candidates whose lower bound does not exceed the best exact D found so far are
    evaluated fully afterwards. Ties resolve to the smallest xmin, as in a full scan.
    """
    n = logx.shape[0]
    log_xmins = logx[starts]
    stride = n // 128
    if stride < 4 or starts.shape[0] < 64:
        D = _ks_distances(logx, rank, starts, log_xmins, alphas, log_xmax)
        best = int(np.argmin(D))
        return best, float(D[best])
    grid = np.unique(np.r_[np.arange(0, n, stride), n - 1])
    lower = _ks_distances(logx, rank, starts, log_xmins, alphas, log_xmax, cols=grid)
    probe = np.argsort(lower, kind="stable")[:16]
    d_probe = _ks_distances(logx, rank, starts[probe], log_xmins[probe], alphas[probe], log_xmax)
    bound = float(d_probe.min())
    keep = np.flatnonzero(lower <= bound)
    D = _ks_distances(logx, rank, starts[keep], log_xmins[keep], alphas[keep], log_xmax)
    best = int(np.argmin(D))
    return int(keep[best]), float(D[best])


def _langevin_inverse(m: np.ndarray) -> np.ndarray:
    """Solve h(u) = 1/u - 1/(e^u - 1) = m for u, elementwise, m in (0, 1) (h decreases 1 → 0)."""
    lo = np.full(m.shape, -750.0)
    hi = np.full(m.shape, 750.0)
    for _ in range(90):
        u = 0.5 * (lo + hi)
        small = np.abs(u) < 1e-6
        safe = np.where(small, 1.0, u)
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
            h = np.where(small, 0.5 - u / 12.0, 1.0 / safe - 1.0 / np.expm1(safe))
        above = h > m  # root lies at larger u
        lo = np.where(above, u, lo)
        hi = np.where(above, hi, u)
    return 0.5 * (lo + hi)


def _mle_alpha(k: np.ndarray, s: np.ndarray, span: np.ndarray | None) -> np.ndarray:
    """Continuous power-law MLE of alpha for tails with ``k`` points and ``s = Σ ln(x/xmin)``.

    Without an upper cutoff (``span is None``) this is the closed form 1 + k/s. With one
    (``span = ln(xmax/xmin)``), candidates whose closed form lies outside (1.5, 3] get the exact
    truncated-power-law MLE instead, which is what ``powerlaw`` 2.0 does (it keeps the closed form
    inside that interval and refits numerically outside it).
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        alpha = 1.0 + k / s
        if span is None:
            return alpha
        refit = ~((alpha > 1.5) & (alpha <= 3.0)) & (s > 0) & (span > 0)
        if refit.any():
            m = s[refit] / (k[refit] * span[refit])
            u = _langevin_inverse(np.clip(m, 1e-300, 1.0 - 1e-16))
            alpha = alpha.copy()
            alpha[refit] = 1.0 + u / span[refit]
    return alpha


@validate({
    "eigs": ["array-like"],
    "xmin": [None, Interval(float, 0, None, closed="neither")],
    "xmax": [None, Options({"max"}), Interval(float, 0, None, closed="neither")],
    "min_tail": [Interval(int, 2, None, closed="left")],
    "alpha_range": [tuple],
})
def fit_power_law(
    eigs: Any,
    *,
    xmin: float | None = None,
    xmax: float | str | None = None,
    min_tail: int = 10,
    alpha_range: tuple[float, float] = (1.0, 20.0),
) -> PowerLawFit:
    """Fit ρ(λ) ∝ λ^(-alpha) to the tail of an ESD with the CSN method.

    Parameters
    ----------
    eigs : array-like of shape (n_eigs,)
        Eigenvalues (any order). Zeros and negatives are dropped (log scale), NaN/Inf raise.
    xmin : float, optional
        Fixed lower cutoff. ``None`` scans every distinct eigenvalue and keeps the one with the
        smallest KS distance.
    xmax : float or {'max'}, optional
        Upper cutoff: eigenvalues above it are dropped and the fitted CDF is truncated there.
        ``'max'`` means the largest eigenvalue (WeightWatcher's convention). The exponent is the
        closed-form MLE 1 + n_tail / Σ ln(λ/xmin); with ``xmax`` set, candidates whose closed form
        lies outside (1.5, 3] get the exact truncated-power-law MLE instead (as ``powerlaw`` does),
        and the fitted CDF used for D is truncated at ``xmax``.
    min_tail : int, default=10
        Smallest tail (number of eigenvalues ≥ xmin) a candidate xmin may leave.
    alpha_range : tuple of (float, float), default=(1.0, 20.0)
        Candidates whose exponent falls outside this open interval are not eligible, as with
        ``powerlaw.Fit(..., parameter_ranges={"alpha": [1, 20]})``.

    Returns
    -------
    PowerLawFit
        ``success=False`` with NaN values and a ``message`` when no fit is possible.

    Raises
    ------
    ValueError
        If ``eigs`` is not one-dimensional or holds NaN/Inf.

    See Also
    --------
    hill_estimator : tail exponent from the top order statistics.
    pl_alpha_hill : the Hill estimate with xmin at the median eigenvalue (PL_Alpha_Hill).
    compare_tails : likelihood ratios against other tail shapes.

    Examples
    --------
    >>> import numpy as np
    >>> x = (1.0 - np.random.default_rng(0).random(2000)) ** (-1.0 / 1.5)  # Pareto, alpha = 2.5
    >>> fit = fit_power_law(x, xmin=1.0)
    >>> round(fit.alpha, 1), fit.n_tail
    (2.5, 2000)
    """
    x = np.asarray(eigs, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"fit_power_law: eigs must be 1-D, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("fit_power_law: eigs contain NaN/Inf")
    lo, hi = float(alpha_range[0]), float(alpha_range[1])

    x = np.sort(x[x > 0])
    if xmax is None:
        xmax_val = math.nan
    elif xmax == "max":
        xmax_val = float(x[-1]) if x.size else math.nan
    else:
        xmax_val = float(xmax)
        x = x[x <= xmax_val]
    n = x.shape[0]
    if n < min_tail:
        return _failed(f"too few positive eigenvalues for a power-law fit (n={n}, need {min_tail})", xmax_val)
    if x[0] == x[-1]:
        return _failed("all eigenvalues are equal; no tail to fit", xmax_val)

    logx = np.log(x)
    log_xmax = None if math.isnan(xmax_val) else math.log(xmax_val)
    rank = np.searchsorted(x, x, side="left").astype(np.float64)
    suffix = np.cumsum(logx[::-1])[::-1]

    if xmin is not None:
        start = int(np.searchsorted(x, xmin, side="left"))
        k = n - start
        if k < min_tail:
            return _failed(f"fewer than {min_tail} eigenvalues at or above xmin={xmin:g} (n_tail={k})", xmax_val)
        log_xmin = math.log(xmin)
        s = float(suffix[start] - k * log_xmin)
        if not s > 0:
            return _failed("all tail eigenvalues equal xmin; no tail to fit", xmax_val)
        span = None if log_xmax is None else np.array([log_xmax - log_xmin])
        alpha = float(_mle_alpha(np.array([float(k)]), np.array([s]), span)[0])
        D = float(_ks_distances(logx, rank, np.array([start]), np.array([log_xmin]), np.array([alpha]), log_xmax)[0])
        return PowerLawFit(alpha=alpha, xmin=float(xmin), xmax=xmax_val, D=D, n_tail=k,
                           sigma=(alpha - 1.0) / math.sqrt(k), success=True, message="")

    # candidates: first index of each distinct value that leaves at least min_tail points
    first = np.flatnonzero(np.r_[True, x[1:] != x[:-1]])
    starts = first[n - first >= min_tail]
    if starts.size == 0:
        return _failed(f"no candidate xmin leaves {min_tail} eigenvalues in the tail", xmax_val)
    k = (n - starts).astype(np.float64)
    s = suffix[starts] - k * logx[starts]
    span = None if log_xmax is None else log_xmax - logx[starts]
    alphas = _mle_alpha(k, s, span)
    valid = np.isfinite(alphas) & (s > 0) & (alphas > lo) & (alphas < hi)
    if not valid.any():
        return _failed(f"no candidate xmin gives alpha inside ({lo:g}, {hi:g})", xmax_val)
    starts, alphas, k = starts[valid], alphas[valid], k[valid]
    best, D = _ks_min(logx, rank, starts, alphas, log_xmax)
    alpha = float(alphas[best])
    n_tail = int(k[best])
    return PowerLawFit(alpha=alpha, xmin=float(x[starts[best]]), xmax=xmax_val, D=D, n_tail=n_tail,
                       sigma=(alpha - 1.0) / math.sqrt(n_tail), success=True, message="")


@validate({"eigs": ["array-like"], "k": [None, Interval(int, 1, None, closed="left")]})
def hill_estimator(eigs: Any, k: int | None = None) -> float:
    """Hill estimate of the density exponent alpha from the ``k`` largest eigenvalues.

    With order statistics λ_(1) ≥ λ_(2) ≥ ..., the tail index is
    ``1 / mean(ln λ_(i) / λ_(k+1), i = 1..k)`` and ``alpha = 1 + tail index`` (density exponent,
    comparable with :func:`fit_power_law`).

    Parameters
    ----------
    eigs : array-like of shape (n_eigs,)
        Non-positive values are dropped.
    k : int, optional
        Number of top order statistics; default ``floor(sqrt(n))`` (at least 2), capped at n - 1.

    Returns
    -------
    float
        NaN when fewer than 3 positive eigenvalues or the top k+1 are all equal.

    Examples
    --------
    >>> import numpy as np
    >>> x = (1.0 - np.random.default_rng(0).random(100_000)) ** (-1.0 / 2.0)  # alpha = 3
    >>> round(hill_estimator(x, k=10_000), 1)
    3.0
    """
    x = np.asarray(eigs, dtype=np.float64).ravel()
    x = x[np.isfinite(x) & (x > 0)]
    n = x.shape[0]
    if n < 3:
        return math.nan
    if k is None:
        k = max(2, int(math.isqrt(n)))
    k = min(k, n - 1)
    top = -np.partition(-x, k)[: k + 1]  # the k+1 largest, unordered except top[k] is the (k+1)-th
    threshold = top[k]
    xi = float(np.mean(np.log(top[:k] / threshold)))
    if not xi > 0:
        return math.nan
    return 1.0 + 1.0 / xi


def pl_alpha_hill(eigs: Any) -> float:
    """PL_Alpha_Hill: the Hill estimate with xmin at the median eigenvalue (TempBalance's "xmin_mid").

    With the eigenvalues sorted ascending, ``i = len // 2``, ``n = len - i`` and
    ``xmin = λ_i``, this is

        ``alpha = 1 + n / (Σ_{j≥i} ln λ_j - n ln λ_i)``,

    the density exponent used by Zhou et al. (2023, TempBalance) and Kothapalli et al.
    (spikes-to-heavy-tails, Sec. 3.2) under the name PL_Alpha_Hill. It always uses the top half of
    the spectrum, so unlike :func:`fit_power_law` it does not search for where the tail starts: on
    a power-law ESD it is the tail exponent, but on a bounded MP bulk it is a shape number of Q
    (≈ 2.1, 2.7, 3.5, 4.9 at Q = 1, 2, 4, 10), so it measures heavy tails only relative to the
    same layer at initialization, as the seeds use it.

    Parameters
    ----------
    eigs : array-like of shape (n_eigs,)
        Non-positive and non-finite values are dropped first (zero eigenvalues of a rank-deficient
        layer are not part of any tail).

    Returns
    -------
    float
        NaN when fewer than 2 positive eigenvalues remain or the top half is constant.

    See Also
    --------
    hill_estimator : the classical Hill estimate from the top ``k`` order statistics.

    Examples
    --------
    >>> import numpy as np
    >>> x = (1.0 - np.random.default_rng(0).random(100_000)) ** (-1.0 / 2.0)  # density exponent 3
    >>> round(pl_alpha_hill(x), 2)
    3.0
    """
    x = np.asarray(eigs, dtype=np.float64).ravel()
    x = np.sort(x[np.isfinite(x) & (x > 0)])
    if x.size < 2:
        return math.nan
    i = x.size // 2
    n = x.size - i
    denom = float(np.sum(np.log(x[i:])) - n * math.log(x[i]))
    if not denom > 0:
        return math.nan
    return 1.0 + n / denom


def compare_tails(eigs: Any, fit: PowerLawFit) -> dict[str, float | str]:
    """Likelihood-ratio tests of the fitted power-law tail against other tail shapes.

    :func:`analysis.tail_law.compare_laws` on the tail ``x ≥ fit.xmin`` with the fit's α.

    Parameters
    ----------
    eigs : array-like of shape (n_eigs,)
    fit : PowerLawFit
        A successful fit; its ``xmin`` defines the tail.

    Returns
    -------
    dict
        For each alternative ``alt`` in ``truncated_power_law``, ``lognormal``, ``exponential``:
        ``R_<alt>`` (log-likelihood ratio; > 0 favours the power law) and ``p_<alt>`` (its
        significance), plus ``best``: the favoured name (``"power_law"`` if no alternative wins
        with p < 0.1). Empty when ``fit.success`` is False.
    """
    if not fit.success:
        return {}
    from htsweep.analysis.tail_law import ALTERNATIVES, compare_laws

    law = compare_laws(eigs, xmin=fit.xmin, alpha=fit.alpha)
    result: dict[str, float | str] = {}
    best, best_strength = "power_law", 0.0
    for alt in ALTERNATIVES:
        R, p = law.R[alt], law.p[alt]
        result[f"R_{alt}"], result[f"p_{alt}"] = R, p
        if np.isfinite(R) and R < 0 and p < 0.1 and -R > best_strength:
            best, best_strength = alt, -R
    result["best"] = best
    return result
