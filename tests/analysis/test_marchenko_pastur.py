"""Marchenko–Pastur law: closed forms, the robust bulk fit, spikes vs the BBP threshold, shuffling."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_allclose
from scipy import integrate

from htsweep.analysis.marchenko_pastur import (
    TW_MARGIN_K,
    MPFit,
    bbp_outlier,
    bbp_strength,
    fit_marchenko_pastur,
    mp_cdf,
    mp_density,
    mp_edges,
    mp_quantile,
    shuffle_baseline,
    tw_scale,
)


def _eigs(W: np.ndarray) -> np.ndarray:
    n = W.shape[0]
    return np.linalg.eigvalsh(W.T @ W / n)


def _spiked(rng, n, m, thetas, sigma=1.0):
    """W = σ G + √N σ Σ θ_j u_j v_jᵀ with orthonormal u, v (the model of the module docstring)."""
    u, _ = np.linalg.qr(rng.standard_normal((n, len(thetas))))
    v, _ = np.linalg.qr(rng.standard_normal((m, len(thetas))))
    return sigma * (rng.standard_normal((n, m)) + np.sqrt(n) * (u * np.asarray(thetas)) @ v.T)


# ----------------------------------------------------------------------------- closed forms


def test_edges_closed_form():
    # λ± = σ²(1 ± 1/√Q)² (MM paper Eqn. 9): Q=4, σ²=1 -> (1/4, 9/4); Q=1, σ²=2 -> (0, 8).
    assert_allclose(mp_edges(1.0, 4.0), (0.25, 2.25), rtol=1e-15)
    assert_allclose(mp_edges(2.0, 1.0), (0.0, 8.0), rtol=1e-15, atol=1e-15)


@pytest.mark.parametrize("sigma2,q", [(1.0, 1.0), (0.3, 2.0), (4.0, 10.0)])
def test_density_normalized_mean_variance(sigma2, q):
    lm, lp = mp_edges(sigma2, q)

    def dens(x):
        return float(mp_density(x, sigma2, q))

    mass = integrate.quad(dens, lm, lp, limit=200)[0]
    mean = integrate.quad(lambda x: x * dens(x), lm, lp, limit=200)[0]
    second = integrate.quad(lambda x: x * x * dens(x), lm, lp, limit=200)[0]
    # MP(σ², y = 1/Q): total mass 1, mean σ², variance σ⁴ y (Bai & Silverstein 2010, Thm 3.6 / Sec. 3.1).
    assert_allclose(mass, 1.0, rtol=1e-6)
    assert_allclose(mean, sigma2, rtol=1e-6)
    assert_allclose(second - mean**2, sigma2**2 / q, rtol=1e-5)


def test_density_zero_outside_support_and_known_value():
    assert_allclose(mp_density([-1.0, 0.0, 4.5], 1.0, 1.0), [0.0, 0.0, 0.0])
    # Q=1, σ²=1, λ=1: √((4-1)(1-0)) / (2π·1) = √3 / (2π).
    assert_allclose(mp_density(1.0, 1.0, 1.0), np.sqrt(3.0) / (2 * np.pi), rtol=1e-14)


@pytest.mark.parametrize("q", [1.0, 3.0])
def test_cdf_matches_integrated_density_and_quantile_inverts(q):
    xs = np.array([0.05, 0.3, 0.9, 1.7, 2.5])
    lm = mp_edges(1.0, q)[0]
    ref = [integrate.quad(lambda x: float(mp_density(x, 1.0, q)), lm, x, limit=200)[0] if x > lm else 0.0
           for x in xs]
    assert_allclose(mp_cdf(xs, 1.0, q), ref, atol=2e-6)
    p = np.array([0.01, 0.25, 0.5, 0.9, 0.999])
    assert_allclose(mp_cdf(mp_quantile(p, 2.0, q), 2.0, q), p, atol=2e-6)


def test_bbp_formulas():
    # At the threshold θ = c^(1/4) the outlier sits exactly on λ+ (Benaych-Georges & Nadakuditi 2012).
    for q in (1.0, 2.0, 10.0):
        c = 1.0 / q
        assert_allclose(bbp_outlier(c**0.25 * (1 + 1e-9), q), mp_edges(1.0, q)[1], rtol=1e-7)
        assert bbp_outlier(0.5 * c**0.25, q) == mp_edges(1.0, q)[1]
    # The MM paper's form λ = σ²(1/Q + |Δ|²/N)(1 + N/|Δ|²) with |Δ|² = N θ² (Sec. 5.3) agrees.
    n, q, theta, s2 = 1000, 2.5, 1.7, 0.4
    d2 = n * theta**2
    assert_allclose(bbp_outlier(theta, q, s2), s2 * (1 / q + d2 / n) * (1 + n / d2), rtol=1e-14)
    assert_allclose(bbp_strength(bbp_outlier(2.3, 4.0, 3.0), 4.0, 3.0), 2.3, rtol=1e-12)
    with pytest.raises(ValueError, match="below"):
        bbp_strength(1.0, 1.0)


def test_tw_scale_formula():
    # s_TW = σ² M^(-2/3) √c (1+√c)^(4/3): Q=1, M=1000 -> 0.01 · 2^(4/3).
    assert_allclose(tw_scale(1.0, 1.0, 1000), 0.01 * 2 ** (4 / 3), rtol=1e-12)


# ----------------------------------------------------------------------------- the fit


@pytest.mark.parametrize("m,q", [(100, 1.0), (200, 2.0), (300, 10.0)])
def test_fit_recovers_sigma2_without_false_spikes(m, q):
    rng = np.random.default_rng(1234)
    n = int(q * m)
    fit = fit_marchenko_pastur(_eigs(0.7 * rng.standard_normal((n, m))), q=n / m)
    assert fit.success
    assert fit.n_spikes == 0
    assert_allclose(fit.sigma2, 0.49, rtol=0.03)  # planted σ² = 0.7²; eigenvalue rigidity ~1/M
    assert fit.ks_bulk < 2.5 * np.log(m) / m  # MP bulk: KS ≈ 0.5 ln M / M (measured), far below 1/√M
    assert 0.9 < fit.soft_rank <= 1.1


def test_tw_margin_gives_rare_false_spikes():
    # 60 pure-noise matrices over M ∈ [32, 256], Q ∈ [1, 10]: TW₁ P(> 4) ≈ 1e-4 (plus σ² estimation noise), so ≤ 1 false spike.
    rng = np.random.default_rng(7)
    total = 0
    for i in range(60):
        m = (32, 64, 128, 256)[i % 4]
        q = (1.0, 2.0, 4.0, 10.0)[(i // 4) % 4]
        n = int(q * m)
        total += fit_marchenko_pastur(_eigs(rng.standard_normal((n, m))), q=n / m).n_spikes
    assert total <= 1
    assert TW_MARGIN_K == 4.0


def test_planted_spikes_above_bbp_threshold():
    rng = np.random.default_rng(99)
    n, m = 1200, 400
    q, c = n / m, m / n
    thetas = np.array([3.0, 2.5, 2.0]) * c**0.25
    fit = fit_marchenko_pastur(_eigs(_spiked(rng, n, m, thetas, sigma=2.0)), q=q)
    assert fit.n_spikes == 3
    # outliers at σ²(1+θ²)(1+c/θ²) (BBP / Benaych-Georges–Nadakuditi); finite-N error ~ N^(-1/2)
    assert_allclose(np.sort(fit.spikes), np.sort([bbp_outlier(t, q, 4.0) for t in thetas]), rtol=0.03)
    # the bulk σ² is not inflated by the spikes (the mean of all eigenvalues is)
    assert_allclose(fit.sigma2, 4.0, rtol=0.02)
    assert_allclose(fit.soft_rank, fit.lambda_plus / fit.spikes[-1], rtol=1e-12)


def test_planted_spike_below_threshold_is_invisible():
    rng = np.random.default_rng(5)
    n, m = 1000, 500
    c = m / n
    W = _spiked(rng, n, m, [0.6 * c**0.25])
    fit = fit_marchenko_pastur(_eigs(W), q=n / m)
    assert fit.n_spikes == 0
    lam_max = _eigs(W)[-1]
    assert abs(lam_max - fit.lambda_plus) < TW_MARGIN_K * tw_scale(fit.sigma2, n / m, m)


def test_robust_against_many_spikes_and_heavy_outliers():
    # 12 graded spikes (6 % of M): σ² stays within 5 % although the mean eigenvalue is 20 % high.
    rng = np.random.default_rng(3)
    n, m = 400, 200
    e = _eigs(_spiked(rng, n, m, np.linspace(3.0, 1.5, 12) * 0.5**0.25))
    fit = fit_marchenko_pastur(e, q=2.0)
    assert fit.n_spikes >= 10
    assert e.mean() > 1.15
    assert_allclose(fit.sigma2, 1.0, rtol=0.05)
    # 30 % of M pushed far out: the first round (lower half only) keeps σ² from blowing up; the
    # bulk of M - k eigenvalues is MP with N/(M-k), so σ² is biased low by O(k/M) (here < 45 %).
    W = _spiked(rng, 128, 128, np.linspace(3.0, 1.5, 38))
    fit = fit_marchenko_pastur(_eigs(W), q=1.0)
    assert fit.n_spikes >= 30
    assert 0.55 < fit.sigma2 < 1.05


def test_result_spikes_and_density_shapes():
    # frozen and repr: tests/analysis/test_results.py
    rng = np.random.default_rng(0)
    fit = fit_marchenko_pastur(_eigs(rng.standard_normal((300, 100))), q=3.0)
    assert isinstance(fit, MPFit)
    assert fit.spikes.shape == (fit.n_spikes,)
    assert fit.density(np.array([1.0])).shape == (1,)


def test_degenerate_inputs():
    bad = fit_marchenko_pastur(np.array([1.0, 2.0]), q=1.0)
    assert not bad.success and "too few" in bad.message and np.isnan(bad.sigma2)
    zero = fit_marchenko_pastur(np.zeros(10), q=2.0)
    assert not zero.success
    with pytest.raises(ValueError, match="'q'"):
        fit_marchenko_pastur(np.ones(10), q=0.5)
    with pytest.raises(ValueError, match="NaN"):
        fit_marchenko_pastur(np.array([1.0, np.nan, 2.0, 3.0, 4.0]), q=1.0)
    with pytest.raises(ValueError, match="'sigma2'"):
        mp_edges(-1.0, 2.0)


def test_shuffle_baseline_destroys_spikes_keeps_frobenius():
    rng = np.random.default_rng(11)
    n, m = 600, 200
    W = _spiked(rng, n, m, [4.0, 3.0])
    e = _eigs(W)
    s1 = shuffle_baseline(W, rng=1)
    s2 = shuffle_baseline(W, rng=1)
    assert_allclose(s1, s2, rtol=0, atol=0)  # deterministic given rng
    assert s1.shape == (m,) and np.all(np.diff(s1) >= 0)
    assert_allclose(s1.sum(), e.sum(), rtol=1e-10)  # Σλ = ‖W‖²_F / N is permutation-invariant
    assert fit_marchenko_pastur(e, q=n / m).n_spikes == 2
    assert fit_marchenko_pastur(s1, q=n / m).n_spikes == 0
    with pytest.raises(ValueError, match="2-D"):
        shuffle_baseline(np.ones(5))


def test_shuffle_baseline_several_permutations_and_half_precision():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(12)
    n, m = 400, 100
    W = _spiked(rng, n, m, [5.0])
    several = shuffle_baseline(W, n_permutations=4, rng=3)
    assert several.shape == (4, m)
    # each permutation is a different draw of the same MP law, with the same trace
    assert not np.allclose(several[0], several[1])
    assert_allclose(several.sum(axis=1), _eigs(W).sum(), rtol=1e-10)
    # the first of k permutations is the single permutation from the same seed
    assert_allclose(several[0], shuffle_baseline(W, rng=3), rtol=0, atol=0)
    for dtype in (torch.bfloat16, torch.float16):
        t = torch.from_numpy(W).to(dtype)
        low = shuffle_baseline(t, n_permutations=2, rng=0)
        exact = shuffle_baseline(t.double(), n_permutations=2, rng=0)
        assert_allclose(low, exact, rtol=1e-12)  # upcast before shuffling: same permutation, same ESD
        assert fit_marchenko_pastur(low[0], q=n / m).n_spikes == 0
    with pytest.raises(ValueError, match="'n_permutations'"):
        shuffle_baseline(W, n_permutations=0)


def test_spike_count_respects_max_spike_frac():
    # Half the spectrum far above the rest: the fit must keep (1 - max_spike_frac) M in the bulk.
    rng = np.random.default_rng(5)
    lam = np.sort(np.r_[rng.uniform(0.5, 1.5, 100), rng.uniform(50.0, 80.0, 100)])
    fit = fit_marchenko_pastur(lam, q=2.0, max_spike_frac=0.4)
    assert fit.n_spikes <= 80 and fit.spikes.size == fit.n_spikes
    assert fit.n_bulk == lam.size - fit.n_spikes
