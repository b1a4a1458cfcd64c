"""Which law fits the tail: likelihood-ratio tests of the power law against its alternatives.

For the tail ``x ≥ xmin`` of a spectrum (``xmin`` from :func:`~analysis.powerlaw_fit.fit_power_law`),
each candidate law is fitted by maximum likelihood on ``[xmin, ∞)``, normalised there (Clauset,
Shalizi & Newman 2009, Table 2.1, continuous forms):

* power law ``p(x) = (α − 1)/xmin · (x/xmin)^(−α)``, α from the closed-form MLE;
* truncated power law ``p(x) ∝ x^(−α) e^(−λx)``, normaliser ``λ^(1−α) / Γ(1 − α, λ·xmin)``,
  α ∈ [1, 20], λ ≥ 0 (numerical MLE);
* lognormal ``p(x) ∝ x^(−1) exp(−(ln x − μ)² / 2σ²)``, normaliser
  ``σ √(π/2) erfc((ln xmin − μ) / (σ√2))`` (numerical MLE);
* exponential ``p(x) = λ e^(−λ(x − xmin))``, ``λ = 1 / (mean(x) − xmin)`` (closed form).

For each alternative, ``R = Σ_i [ln p_PL(x_i) − ln p_alt(x_i)]`` (> 0 favours the power law) and
its p-value as in CSN Sec. 5 and the ``powerlaw`` package: the truncated power law nests the power
law, so ``p = 1 − χ²₁(|2R|)``; the others are not nested and get Vuong's test,
``p = erfc(|R| / √(2 n s²))`` with ``s²`` the (population) variance of the pointwise differences.

Verdict (per layer), in this order:

1. ``lognormal`` if the lognormal beats the power law (R < 0) with p < ``P_DECIDE`` and also beats
   the truncated power law by likelihood;
2. ``truncated_power_law`` if it beats the power law with p < ``P_DECIDE``;
3. ``power_law`` if the exponential is rejected (R > 0, p < ``P_DECIDE``: the tail is heavy) and no
   alternative beats the power law significantly; a lognormal can mimic a power law over a finite
   range, so it is often not rejected either (CSN Sec. 5: then both are plausible);
4. ``undecided`` otherwise (the tail is too short to tell, which is common for a few dozen
   eigenvalues).

The numerical MLEs use L-BFGS-B to a tight tolerance, so they are at least as likely as the fits of
``powerlaw`` 2.0 (Nelder–Mead, ``tol=1e-4``), and R and p differ from its ``distribution_compare``
by those fits' difference (up to ~1e-4 relative); at equal parameters — ours set into powerlaw's
distributions, or powerlaw's into ours — R and p agree within 1e-6 relative (checked on 20
synthetic tails of each law, ``tests/analysis/test_tail_law.py``). The truncated power law's
normaliser Γ(1 − α, λ·xmin) at 1 − α ≤ 0 comes from :func:`_log_upper_gamma` (scipy and a
continued fraction / series; powerlaw calls mpmath, measured 15–20× slower per call).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import optimize, special, stats

from htsweep.analysis._validation import Interval, validate
from htsweep.analysis.metric_names import TAIL_LAW_KEYS, RowKey

__all__ = ["ALTERNATIVES", "P_DECIDE", "VERDICTS", "TailLaw", "compare_laws", "loglikelihoods", "tail_law_row"]

#: The alternatives compared with the power law.
ALTERNATIVES = ("truncated_power_law", "lognormal", "exponential")
#: Possible verdicts.
VERDICTS = ("power_law", "truncated_power_law", "lognormal", "undecided")
#: Significance level of a verdict.
P_DECIDE = 0.1
# the truncated power law's α range (the power-law fitter's, powerlaw's parameter_ranges)
_TPL_ALPHA = (1.0, 20.0)


@dataclass(frozen=True)
class TailLaw:
    """Likelihood-ratio comparison of the power law with each alternative on one tail.

    Attributes
    ----------
    n_tail : int
    R, p : dict of str to float
        Alternative → log-likelihood ratio (> 0 favours the power law) and its p-value.
    params : dict of str to tuple of float
        Law → fitted parameters: ``power_law`` (α,), ``truncated_power_law`` (α, λ),
        ``lognormal`` (μ, σ), ``exponential`` (λ,).
    verdict : str
        One of :data:`VERDICTS` (rule in the module docstring).
    """

    n_tail: int
    R: dict[str, float]
    p: dict[str, float]
    params: dict[str, tuple[float, ...]]
    verdict: str

    @property
    def tpl_lambda(self) -> float:
        """λ of the truncated power law."""
        return self.params["truncated_power_law"][1]


_EPS = float(np.finfo(np.float64).eps)
_TINY = 1e-300


def _log_upper_gamma(s: float, z: float) -> float:
    """ln Γ(s, z) for s ≤ 0 and z > 0, where scipy's ``gammaincc`` stops (the truncated power
    law has s = 1 − α ≤ 0), to about 1e-14 relative (``tests/analysis/test_tail_law.py`` checks it
    against mpmath at 40 digits on s ∈ [−19, 0], z ∈ [1e-14, 1e4], near-integer s included).

    z ≥ 1: Legendre's continued fraction of ``Γ(s, z) eᶻ z⁻ˢ`` (modified Lentz; converges for any s
    once z is not small, in under 100 terms at z = 1), so nothing underflows for large z.
    z < 1: ``Γ(s, z) = zˢ E_p(z)``, p = 1 − s ≥ 1, with the generalized exponential integral from
    its power series (:func:`_expint_series`).
    """
    if not (s <= 0.0 and z > 0.0):
        raise ValueError(f"_log_upper_gamma needs s <= 0 and z > 0 (got s={s!r}, z={z!r})")
    if z >= 1.0:
        b, c, h = z + 1.0 - s, 1.0 / _TINY, 1.0 / (z + 1.0 - s)
        d = h
        for i in range(1, 1000):
            an = -i * (i - s)
            b += 2.0
            d = an * d + b
            d = 1.0 / (d if abs(d) > _TINY else _TINY)
            c = b + an / c
            c = c if abs(c) > _TINY else _TINY
            h *= d * c
            if abs(d * c - 1.0) < _EPS:
                break
        return -z + s * math.log(z) + math.log(h)
    return s * math.log(z) + math.log(_expint_series(1.0 - s, z))


def _expint_series(p: float, x: float) -> float:
    """E_p(x) = ∫₁^∞ e^(−xt) t^(−p) dt for p ≥ 1, 0 < x < 1, from its power series.

    ``E_p(x) = Γ(1 − p) x^(p−1) − Σ_k (−x)^k / ((k + 1 − p) k!)``. Near an integer n = round(p)
    the k = n − 1 term and Γ(1 − p) both have a pole; their sum is taken in closed form,
    ``(−x)^(n−1)/(n−1)! · (1 − c(δ) x^δ) / δ`` with δ = p − n and
    ``c(δ) = πδ/sin(πδ) · Γ(n)/Γ(n + δ)`` (reflection formula), whose δ → 0 limit is
    ``ψ(n) − ln x``; ``ln c`` by its Taylor series for |δ| < 1e-3, where differencing loses digits.
    """
    n = max(1, round(p))
    delta = p - n
    total, term = 0.0, 1.0  # term = (−x)^k / k!
    for k in range(200):
        if k != n - 1:
            total -= term / (k + 1 - p)
        term *= -x / (k + 1)
        if k >= n and abs(term) < _EPS * abs(total):
            break
    if delta == 0.0:
        bracket = float(special.digamma(n)) - math.log(x)
    else:
        if abs(delta) < 1e-3:
            u = (math.pi * delta) ** 2
            log_sinc = -(u / 6.0 + u * u / 180.0 + u**3 / 2835.0)
            # ln Γ(n + δ) − ln Γ(n) = Σ_m δ^(m+1) ψ^(m)(n) / (m+1)!
            dlgamma = sum(delta ** (m + 1) / math.factorial(m + 1) * float(special.polygamma(m, n)) for m in range(5))
        else:
            log_sinc = math.log(float(np.sinc(delta)))
            dlgamma = float(special.gammaln(n + delta) - special.gammaln(n))
        bracket = -math.expm1(-log_sinc - dlgamma + delta * math.log(x)) / delta
    return total + (-x) ** (n - 1) / math.factorial(n - 1) * bracket


def loglikelihoods(x: np.ndarray, xmin: float, law: str, params: tuple[float, ...]) -> np.ndarray:
    """Pointwise ln p(x_i) of ``law`` with ``params`` on ``[xmin, ∞)`` (module docstring)."""
    x = np.asarray(x, dtype=np.float64)
    if law == "power_law":
        (alpha,) = params
        return math.log(alpha - 1.0) - math.log(xmin) - alpha * np.log(x / xmin)
    if law == "exponential":
        (lam,) = params
        return math.log(lam) - lam * (x - xmin)
    if law == "lognormal":
        mu, sigma = params
        log_c = math.log(sigma * math.sqrt(math.pi / 2.0)) + _log_erfc((math.log(xmin) - mu) / (sigma * math.sqrt(2.0)))
        return -np.log(x) - (np.log(x) - mu) ** 2 / (2.0 * sigma**2) - log_c
    if law == "truncated_power_law":
        alpha, lam = params
        log_c = (1.0 - alpha) * math.log(lam) - _log_upper_gamma(1.0 - alpha, lam * xmin)
        return log_c - alpha * np.log(x) - lam * x
    raise ValueError(f"unknown law {law!r}; choose one of power_law, {', '.join(ALTERNATIVES)}")


def _log_erfc(z: float) -> float:
    """ln erfc(z), accurate for large z too (erfcx keeps the tail)."""
    return math.log(special.erfcx(z)) - z * z if z > 0 else math.log(special.erfc(z))


def _fit_lognormal(x: np.ndarray, xmin: float) -> tuple[float, float]:
    logx = np.log(x)
    x0 = np.array([logx.mean(), max(logx.std(), 1e-3)])

    def nll(p: np.ndarray) -> float:
        mu, sigma = float(p[0]), float(p[1])
        if not sigma > 0:
            return math.inf
        return -float(np.sum(loglikelihoods(x, xmin, "lognormal", (mu, sigma))))

    res = optimize.minimize(nll, x0, method="L-BFGS-B", bounds=[(None, None), (1e-6, None)],
                            options={"ftol": 1e-15, "gtol": 1e-10, "maxiter": 2000})
    return float(res.x[0]), float(res.x[1])


def _fit_tpl(x: np.ndarray, xmin: float, alpha0: float) -> tuple[float, float]:
    sum_logx, sum_x, n = float(np.log(x).sum()), float(x.sum()), x.size

    def nll(p: np.ndarray) -> float:
        alpha, lam = float(p[0]), math.exp(float(p[1]))
        try:
            log_c = (1.0 - alpha) * math.log(lam) - _log_upper_gamma(1.0 - alpha, lam * xmin)
        except (ValueError, ZeroDivisionError):
            return math.inf
        return -(n * log_c - alpha * sum_logx - lam * sum_x)

    # λ → 0 is the power law itself, a stationary point the optimizer can settle in: start also
    # from α at its lower bound with the exponential's rates, and keep the most likely optimum
    lo, hi = _TPL_ALPHA
    starts = [(min(max(alpha0, lo), hi), 1.0 / x.mean()), (lo, 1.0 / x.mean()), (lo, 1.0 / (x.mean() - xmin))]
    best = None
    for a0, l0 in starts:
        res = optimize.minimize(nll, np.array([a0, math.log(l0)]), method="L-BFGS-B",
                                bounds=[_TPL_ALPHA, (-50.0, 50.0)],
                                options={"ftol": 1e-15, "gtol": 1e-10, "maxiter": 2000})
        if best is None or res.fun < best.fun:
            best = res
    return float(best.x[0]), math.exp(float(best.x[1]))


def _ratio(ll_pl: np.ndarray, ll_alt: np.ndarray, nested: bool) -> tuple[float, float]:
    """R and p as CSN Sec. 5 (nested: χ²₁ of 2R; else Vuong's normalised test)."""
    d = ll_pl - ll_alt
    R = float(np.sum(d))
    if nested:
        return R, float(stats.chi2.sf(abs(2.0 * R), 1))
    var = float(np.mean((d - d.mean()) ** 2))
    p = float(special.erfc(abs(R) / math.sqrt(2.0 * d.size * var))) if var > 0 else 1.0
    return R, p


def _verdict(R: dict[str, float], p: dict[str, float], p_decide: float) -> str:
    tpl, ln = "truncated_power_law", "lognormal"
    if R[ln] < 0 and p[ln] < p_decide and R[ln] < R[tpl]:
        return ln
    if R[tpl] < 0 and p[tpl] < p_decide:
        return tpl
    beaten = any(R[a] < 0 and p[a] < p_decide for a in ALTERNATIVES)
    if R["exponential"] > 0 and p["exponential"] < p_decide and not beaten:
        return "power_law"
    return "undecided"


@validate({"eigs": ["array-like"], "xmin": [Interval(float, 0, None, closed="neither")],
           "alpha": [None, Interval(float, 1, None, closed="neither")],
           "p_decide": [Interval(float, 0, 1, closed="neither")]})
def compare_laws(eigs: Any, *, xmin: float, alpha: float | None = None, p_decide: float = P_DECIDE) -> TailLaw:
    """Fit every law to the tail ``eigs ≥ xmin`` and compare each alternative with the power law.

    Parameters
    ----------
    eigs : array-like
        The spectrum (any order); values below ``xmin`` are ignored.
    xmin : float
        Start of the tail (``PowerLawFit.xmin``).
    alpha : float, optional
        The power law's α (default: the closed-form MLE on the tail, as ``fit_power_law`` gives).
    p_decide : float, default=P_DECIDE
        Significance level of the verdict.

    Returns
    -------
    TailLaw

    Raises
    ------
    ValueError
        Fewer than 2 distinct values in the tail.

    Examples
    --------
    >>> import numpy as np
    >>> x = (1.0 - np.random.default_rng(0).random(3000)) ** (-1.0 / 1.5)   # Pareto, α = 2.5
    >>> law = compare_laws(x, xmin=1.0)
    >>> law.verdict, round(law.params["power_law"][0], 2)
    ('power_law', 2.51)
    """
    x = np.sort(np.asarray(eigs, dtype=np.float64).ravel())
    x = x[x >= xmin]
    if x.size < 2 or x[0] == x[-1]:
        raise ValueError(f"compare_laws: the tail x >= {xmin:g} needs at least 2 distinct values (has {x.size})")
    if alpha is None:
        alpha = 1.0 + x.size / float(np.sum(np.log(x / xmin)))
    params: dict[str, tuple[float, ...]] = {
        "power_law": (float(alpha),),
        "truncated_power_law": _fit_tpl(x, xmin, float(alpha)),
        "lognormal": _fit_lognormal(x, xmin),
        "exponential": (1.0 / float(np.mean(x) - xmin),),
    }
    ll_pl = loglikelihoods(x, xmin, "power_law", params["power_law"])
    R, p = {}, {}
    for alt in ALTERNATIVES:
        R[alt], p[alt] = _ratio(ll_pl, loglikelihoods(x, xmin, alt, params[alt]), nested=alt == "truncated_power_law")
    return TailLaw(n_tail=int(x.size), R=R, p=p, params=params, verdict=_verdict(R, p, p_decide))


def tail_law_row(eigs: Any, xmin: float, alpha: float) -> dict[str, Any]:
    """The metrics-row keys ``TAIL_LAW_KEYS`` of one layer's fitted tail (``xmin``, ``alpha`` of its
    power-law fit): verdict, R and p per alternative, the truncated power law's λ. ``""`` and NaN
    when there is no fit (non-finite ``xmin`` or ``alpha``) or the tail has one distinct value."""
    empty = {k: math.nan for k in TAIL_LAW_KEYS} | {RowKey.TAIL_LAW: ""}
    if not (math.isfinite(xmin) and math.isfinite(alpha) and xmin > 0 and alpha > 1):
        return empty
    try:
        law = compare_laws(eigs, xmin=float(xmin), alpha=float(alpha))
    except ValueError:
        return empty
    row = {RowKey.TAIL_LAW: law.verdict, **{f"R_{a}": law.R[a] for a in ALTERNATIVES},
           **{f"p_{a}": law.p[a] for a in ALTERNATIVES}, RowKey.TPL_LAMBDA: law.tpl_lambda}
    return {k: row[k] for k in TAIL_LAW_KEYS}
