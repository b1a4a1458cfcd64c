"""Tests for analysis.powerlaw_fit: CSN fit vs closed forms, planted exponents and the powerlaw package."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose

from htsweep.analysis import powerlaw_fit
from htsweep.analysis.powerlaw_fit import (
    PowerLawFit,
    compare_tails,
    fit_power_law,
    hill_estimator,
    pl_alpha_hill,
)
from htsweep.analysis.spectrum import esd


def pareto(alpha: float, n: int, rng: np.random.Generator, xmin: float = 1.0) -> np.ndarray:
    """Inverse-CDF sample of the density (alpha-1)/xmin (x/xmin)^(-alpha), x >= xmin."""
    return xmin * (1.0 - rng.random(n)) ** (-1.0 / (alpha - 1.0))


def powerlaw_reference(data, **kw):
    """(xmin, alpha, D) from powerlaw.Fit, warnings silenced (the package is chatty)."""
    powerlaw = pytest.importorskip("powerlaw")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = powerlaw.Fit(data, verbose=0, **kw)
        return fit.xmin, fit.power_law.alpha, fit.power_law.D


@pytest.fixture(scope="module", params=[2.0, 2.5], ids=["t2", "t2.5"])
def heavy_esd(request) -> np.ndarray:
    # ESDs of Student-t entries (600 x 300): with df=2 the selected tail has alpha ~ 2.8 (closed
    # form in powerlaw); with df=2.5 alpha ~ 6 / 3.5 (powerlaw refits numerically above 3).
    rng = np.random.default_rng(1234)
    return esd(rng.standard_t(request.param, size=(600, 300)), device="cpu")


@pytest.mark.parametrize("alpha", [1.5, 2.0, 3.0, 4.0, 6.0])
def test_recovers_planted_alpha(alpha):
    rng = np.random.default_rng(int(alpha * 100))
    x = pareto(alpha, 4000, rng)
    se = (alpha - 1.0) / math.sqrt(x.size)  # asymptotic s.d. of the MLE (CSN eq. 3.2)
    fixed = fit_power_law(x, xmin=1.0)
    assert fixed.success and fixed.n_tail == x.size
    assert_allclose(fixed.alpha, alpha, atol=4 * se)
    auto = fit_power_law(x)
    assert auto.success
    # the KS-selected xmin discards part of the sample, so allow a wider band
    assert_allclose(auto.alpha, alpha, atol=max(8 * se, 8 * (alpha - 1) / math.sqrt(auto.n_tail)))


def test_fixed_xmin_matches_closed_form_and_bruteforce_ks():
    rng = np.random.default_rng(7)
    x = np.sort(pareto(2.5, 300, rng, xmin=0.5))
    xmin = 0.8
    fit = fit_power_law(x, xmin=xmin)
    tail = x[x >= xmin]
    # closed-form MLE (CSN eq. 3.1) and its standard error
    alpha = 1.0 + tail.size / np.sum(np.log(tail / xmin))
    assert_allclose(fit.alpha, alpha, rtol=1e-12)
    assert_allclose(fit.sigma, (alpha - 1.0) / math.sqrt(tail.size), rtol=1e-12)
    assert fit.n_tail == tail.size
    # brute force D as in powerlaw: |F(x_j) - (#tail points below x_j) / n_tail|
    cdf = 1.0 - (tail / xmin) ** (1.0 - alpha)
    emp = np.arange(tail.size) / tail.size
    assert_allclose(fit.D, np.max(np.abs(cdf - emp)), rtol=1e-12)


def test_auto_xmin_is_the_ks_minimizer(monkeypatch):
    rng = np.random.default_rng(3)
    x = np.concatenate([rng.uniform(0.1, 1.0, 200), pareto(3.0, 300, rng)])
    fit = fit_power_law(x, min_tail=10)
    # brute-force loop over every candidate (the function being tested must not loop)
    xs = np.sort(x)
    best = (np.inf, None)
    for i in range(xs.size - 10 + 1):
        tail = xs[i:]
        a = 1.0 + tail.size / np.sum(np.log(tail / xs[i]))
        if not 1.0 < a < 20.0:
            continue
        d = np.max(np.abs(1.0 - (tail / xs[i]) ** (1.0 - a) - np.arange(tail.size) / tail.size))
        if d < best[0]:
            best = (d, xs[i])
    assert fit.xmin == best[1]
    assert_allclose(fit.D, best[0], rtol=1e-10)
    # blocking of the (candidate x eigenvalue) grid does not change the answer
    monkeypatch.setattr(powerlaw_fit, "_BLOCK_CELLS", 64)
    small_blocks = fit_power_law(x, min_tail=10)
    assert small_blocks == fit


@pytest.mark.parametrize("xmax", [None, "max"])
def test_agrees_with_powerlaw_package_on_esd(heavy_esd, xmax):
    # reference: powerlaw 2.0 with the alpha clip lifted; min_tail=3 mirrors its candidate set
    xmin, alpha, D = powerlaw_reference(heavy_esd, xmax=heavy_esd.max() if xmax else None,
                                        parameter_ranges={"alpha": [1, 20]})
    ours = fit_power_law(heavy_esd, xmax=xmax, min_tail=3)
    assert ours.xmin == pytest.approx(xmin, rel=1e-12)
    assert_allclose(ours.alpha, alpha, atol=1e-3)
    assert_allclose(ours.D, D, atol=1e-3)


@pytest.mark.parametrize("xmax", [None, "max"])
def test_agrees_with_powerlaw_above_3_on_same_xmin(xmax):
    rng = np.random.default_rng(11)
    x = pareto(4.5, 1500, rng)
    xmin = float(np.quantile(x, 0.2))
    _, alpha, _ = powerlaw_reference(x, xmin=xmin, xmax=x.max() if xmax else None,
                                     parameter_ranges={"alpha": [1, 20]})
    ours = fit_power_law(x, xmin=xmin, xmax=xmax)
    assert ours.alpha > 3.5
    # powerlaw refits alpha > 3 numerically (Nelder-Mead, tol 1e-4): truncated MLE when xmax is set
    assert_allclose(ours.alpha, alpha, atol=1e-3)
    # the pitfall this module avoids: without parameter_ranges powerlaw 2.0 clips alpha to <= 3
    _, clipped, _ = powerlaw_reference(x, xmin=xmin)
    assert clipped <= 3.0 + 1e-9


def test_xmax_float_drops_values_above():
    rng = np.random.default_rng(5)
    x = pareto(2.5, 2000, rng)
    fit = fit_power_law(x, xmin=1.0, xmax=10.0)
    assert fit.xmax == 10.0
    assert fit.n_tail == int(np.sum(x <= 10.0))


@pytest.mark.parametrize(
    ("eigs", "message"),
    [
        (np.array([]), "too few positive eigenvalues"),
        (np.ones(5), "too few positive eigenvalues"),
        (np.zeros(100), "too few positive eigenvalues"),
        (np.full(50, 2.0), "all eigenvalues are equal"),
        (np.r_[np.zeros(40), np.ones(20)], "all eigenvalues are equal"),
    ],
)
def test_degenerate_input_fails_cleanly(eigs, message):
    fit = fit_power_law(eigs)
    assert not fit.success
    assert message in fit.message
    assert math.isnan(fit.alpha) and math.isnan(fit.D) and fit.n_tail == 0


def test_fixed_xmin_above_data_fails_cleanly():
    fit = fit_power_law(np.linspace(1, 2, 50), xmin=5.0)
    assert not fit.success and "fewer than 10" in fit.message


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="NaN/Inf"):
        fit_power_law(np.array([1.0, np.nan, 2.0]))
    with pytest.raises(ValueError, match="must be 1-D"):
        fit_power_law(np.ones((3, 3)))
    with pytest.raises(ValueError, match=r"parameter 'xmax' must be .*'max'.*got 'min'"):
        fit_power_law(np.ones(20), xmax="min")
    with pytest.raises(ValueError, match=r"parameter 'xmin' must be .*\(0, inf\)"):
        fit_power_law(np.ones(20), xmin=-1.0)


def test_ci_and_tail_density():
    # frozen and repr: tests/analysis/test_results.py
    fit = fit_power_law(pareto(2.5, 500, np.random.default_rng(0)))
    assert isinstance(fit, PowerLawFit)
    lo, hi = fit.ci(0.95)
    assert_allclose([lo, hi], [fit.alpha - 1.959964 * fit.sigma, fit.alpha + 1.959964 * fit.sigma], rtol=1e-6)
    # the tail density integrates to 1 over [xmin, inf) (numerically on a wide grid)
    grid = np.geomspace(fit.xmin, fit.xmin * 1e8, 200_001)
    assert_allclose(np.trapezoid(fit.pdf(grid), grid), 1.0, atol=2e-3)


def test_pl_alpha_hill_is_the_median_xmin_formula():
    # PL_Alpha_Hill (TempBalance "xmin_mid"): i = len // 2, n = len - i,
    # alpha = 1 + n / (Σ_{j≥i} ln λ_j - n ln λ_i); by hand on 5 values: i = 2, n = 3, xmin = 3
    x = np.array([5.0, 1.0, 3.0, 8.0, 2.0])
    by_hand = 1 + 3 / (math.log(3) + math.log(5) + math.log(8) - 3 * math.log(3))
    assert pl_alpha_hill(x) == pytest.approx(by_hand, rel=1e-14)
    # zeros (a rank-deficient layer) and NaN are dropped before the median is taken
    assert pl_alpha_hill(np.r_[0.0, 0.0, np.nan, x]) == pytest.approx(by_hand, rel=1e-14)
    assert math.isnan(pl_alpha_hill([2.0]))
    assert math.isnan(pl_alpha_hill(np.ones(10)))


@pytest.mark.parametrize("alpha", [2.0, 3.0, 4.5])
def test_pl_alpha_hill_recovers_planted_power_law(alpha):
    rng = np.random.default_rng(int(alpha * 10))
    x = (1.0 - rng.random(50_000)) ** (-1.0 / (alpha - 1.0))  # Pareto, density exponent alpha
    # the top half of a pure Pareto sample is Pareto again: Hill's standard error (alpha-1)/sqrt(n)
    assert_allclose(pl_alpha_hill(x), alpha, atol=5 * (alpha - 1) / math.sqrt(25_000))


def test_hill_estimator():
    rng = np.random.default_rng(99)
    x = pareto(3.0, 100_000, rng)
    k = 5000
    # Hill's tail index has s.d. ~ index/sqrt(k); density alpha = 1 + index (index = 2)
    assert_allclose(hill_estimator(x, k=k), 3.0, atol=4 * 2.0 / math.sqrt(k))
    assert math.isnan(hill_estimator([1.0, 2.0]))
    assert math.isnan(hill_estimator(np.ones(50)))
    with pytest.raises(ValueError, match="parameter 'k'"):
        hill_estimator(x, k=0)


def test_compare_tails_prefers_power_law_over_exponential():
    rng = np.random.default_rng(21)
    x = pareto(2.5, 1000, rng)
    fit = fit_power_law(x, xmin=1.0)
    out = compare_tails(x, fit)
    assert set(out) >= {"R_exponential", "p_exponential", "R_lognormal", "R_truncated_power_law", "best"}
    # a pure Pareto sample: the power law beats the exponential decisively
    assert out["R_exponential"] > 0 and out["p_exponential"] < 0.05
    assert compare_tails(x, fit_power_law(np.ones(3))) == {}


@pytest.mark.parametrize("xmax", [None, "max"])
def test_pruned_scan_equals_full_scan(xmax):
    # n large enough for the lower-bound pruning path; reference: every candidate's exact D
    rng = np.random.default_rng(17)
    x = np.sort(rng.standard_t(3, size=3000) ** 2)
    fit = fit_power_law(x, xmax=xmax, min_tail=3)
    logx = np.log(x)
    rank = np.arange(x.size, dtype=float)
    starts = np.arange(x.size - 3 + 1)
    k = (x.size - starts).astype(float)
    s = np.cumsum(logx[::-1])[::-1][starts] - k * logx[starts]
    log_xmax = math.log(x[-1]) if xmax else None
    alphas = powerlaw_fit._mle_alpha(k, s, None if xmax is None else log_xmax - logx[starts])
    ok = (alphas > 1) & (alphas < 20)
    D = powerlaw_fit._ks_distances(logx, rank, starts[ok], logx[starts[ok]], alphas[ok], log_xmax)
    best = int(np.argmin(D))
    assert fit.xmin == x[starts[ok][best]] and fit.D == D[best]
