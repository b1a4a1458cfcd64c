"""Synthetic phase generators: shapes, determinism, parameter checks and the planted structure."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_allclose

from htsweep.analysis.marchenko_pastur import mp_edges
from htsweep.analysis.phases import PHASES
from htsweep.analysis.powerlaw_fit import hill_estimator
from htsweep.analysis.synthetic import (
    FAMILIES,
    FAMILY_PHASE,
    MU_MAX,
    TORCH_INITS,
    make,
    make_family,
    sample_family_params,
    sample_params,
)


def _eigs(W: np.ndarray) -> np.ndarray:
    if W.shape[0] < W.shape[1]:
        W = W.T
    return np.linalg.eigvalsh(W.T @ W / W.shape[0])


@pytest.mark.parametrize("phase", PHASES)
def test_shape_dtype_determinism(phase):
    a = make(phase, 160, 80, seed=3)
    b = make(phase, 160, 80, seed=3)
    c = make(phase, 160, 80, seed=4)
    assert a.shape == (160, 80) and a.dtype == np.float64 and np.all(np.isfinite(a))
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    assert make(phase, 80, 160, seed=3).shape == (80, 160)  # wide matrices are the transpose


def test_parameter_errors_name_the_parameter():
    with pytest.raises(ValueError, match="'phase'"):
        make("spiky", 100, 50, seed=0)
    with pytest.raises(TypeError, match="unknown"):
        make("random_like", 100, 50, seed=0, k=3)
    with pytest.raises(ValueError, match="'mu'"):
        make("heavy_tailed", 100, 50, seed=0, mu=-1.0)
    with pytest.raises(ValueError, match="'k'"):
        make("bulk_plus_spikes", 100, 50, seed=0, k=0)
    with pytest.raises(ValueError, match="not both"):
        make("bleeding_out", 100, 50, seed=0, excess=0.2, strength=1.5)
    with pytest.raises(ValueError, match="'sigma'"):
        make("random_like", 100, 50, seed=0, sigma=0.0)


@pytest.mark.parametrize("dist", ["normal", "uniform", "rademacher"])
def test_random_like_variance(dist):
    W = make("random_like", 400, 200, seed=1, sigma=3.0, dist=dist)
    assert_allclose(W.var(), 9.0, rtol=0.02)  # 80 000 entries: sampling error ~0.5 %


def test_spike_positions_follow_bbp():
    n, m = 1200, 400
    lp = mp_edges(1.0, n / m)[1]
    # bulk_plus_spikes, k=1: the outlier sits at ratio·λ+ (closed form inverted); finite-N error ~3 %
    e = _eigs(make("bulk_plus_spikes", n, m, seed=2, k=1, ratio=5.0))
    assert_allclose(e[-1], 5.0 * lp, rtol=0.04)
    assert e[-2] < 1.1 * lp
    # bleeding_out: a shelf of k outliers just past the edge at λ+(1 + excess)
    e = _eigs(make("bleeding_out", n, m, seed=2, k=3, excess=0.3))
    assert_allclose(e[-3:].mean(), 1.3 * lp, rtol=0.05)
    assert e[-4] < 1.08 * lp


def test_bulk_decay_has_a_tail_of_many_outliers():
    n, m = 800, 400
    lp = mp_edges(1.0, 2.0)[1]
    e = _eigs(make("bulk_decay", n, m, seed=5, frac=0.25, tail_alpha=5.0))
    # K = 100 graded spikes at λ+ (K/j)^(1/4): 82 predicted above 1.05 λ+, the top at K^(1/4) λ+
    assert (e > 1.05 * lp).sum() >= 50
    assert_allclose(e[-1], 100**0.25 * lp, rtol=0.1)


def test_heavy_tailed_entries_have_the_planted_index():
    W = make("heavy_tailed", 600, 300, seed=6, mu=1.5, dist="pareto")
    # Hill on |W_ij| (180 000 Pareto samples, top 2 000): density exponent 1 + μ = 2.5 within 10 %.
    assert_allclose(hill_estimator(np.abs(W).ravel(), k=2000), 2.5, rtol=0.1)


def test_heavy_tailed_family_reaches_mu_max():
    assert MU_MAX == 2.25
    mus = [sample_params("heavy_tailed", 200, 100, rng=s)["mu"] for s in range(200)]
    assert max(mus) > 2.15  # the finite-variance part of the range (μ > 2) is sampled


def test_rank_collapse_rank():
    W = make("rank_collapse", 300, 200, seed=7, rank_frac=0.25, noise=0.0)
    assert np.linalg.matrix_rank(W) == 50
    e = _eigs(make("rank_collapse", 300, 200, seed=7, rank_frac=0.25, noise=1e-3))
    assert (e < 1e-4 * e[-1]).sum() == 150


@pytest.mark.parametrize("phase", PHASES)
def test_sample_params_deterministic_and_accepted(phase):
    p1 = sample_params(phase, 512, 128, rng=42)
    p2 = sample_params(phase, 512, 128, rng=42)
    assert p1 == p2
    assert make(phase, 512, 128, seed=0, **p1).shape == (512, 128)
    assert 1e-2 <= p1["sigma"] <= 1e2


def test_sample_params_ranges():
    rng = np.random.default_rng(0)
    for _ in range(50):
        assert 1.0 <= sample_params("heavy_tailed", 200, 100, rng)["mu"] <= MU_MAX
        assert 4.5 <= sample_params("bulk_decay", 200, 100, rng)["tail_alpha"] <= 7.0
        p = sample_params("bleeding_out", 200, 100, rng)
        assert 0.08 <= p["excess"] <= 0.5 and 1 <= p["k"] <= 6
        assert 2.5 <= sample_params("bulk_plus_spikes", 200, 100, rng)["ratio"] <= 12.0
        assert 0.1 <= sample_params("rank_collapse", 200, 100, rng)["rank_frac"] <= 0.7


@pytest.mark.parametrize("family", FAMILIES)
def test_families_shape_determinism_and_phase(family):
    p = sample_family_params(family, 300, 120, rng=5)
    a = make_family(family, 300, 120, seed=2, **p)
    assert a.shape == (300, 120) and a.dtype == np.float64 and np.all(np.isfinite(a))
    assert np.array_equal(a, make_family(family, 300, 120, seed=2, **p))
    assert not np.array_equal(a, make_family(family, 300, 120, seed=3, **p))
    assert make_family(family, 120, 300, seed=2, **sample_family_params(family, 120, 300, rng=5)).shape == (120, 300)
    assert FAMILY_PHASE[family] in PHASES


def test_family_parameter_errors_name_the_parameter():
    with pytest.raises(ValueError, match="'family'"):
        make_family("nope", 100, 50, seed=0)
    with pytest.raises(TypeError, match="unknown"):
        make_family("many_spikes", 100, 50, seed=0, ratio=3.0)
    with pytest.raises(ValueError, match="'axis'"):
        make_family("scale_deformed", 100, 50, seed=0, axis="diag")
    with pytest.raises(ValueError, match="'init'"):
        make_family("torch_init", 100, 50, seed=0, init="he")
    with pytest.raises(ValueError, match="'rho'"):
        make_family("ar1_correlated", 100, 50, seed=0, rho=1.5)


def test_deformations_have_the_stated_structure():
    W = make_family("scale_deformed", 4000, 50, seed=1, delta=0.2, axis="cols")
    scales = W.std(axis=0)
    assert 0.75 < scales.min() and scales.max() < 1.25 and scales.max() - scales.min() > 0.2
    W = make_family("ar1_correlated", 20000, 30, seed=1, rho=0.2, axis="cols")
    lag1 = np.mean([np.corrcoef(W[:, j], W[:, j + 1])[0, 1] for j in range(29)])
    assert_allclose(lag1, 0.2, atol=0.02)
    assert_allclose(W.var(axis=0).mean(), 1.0, rtol=0.05)  # stationary: unit variance


def test_many_spikes_and_graded_bleed_outliers():
    n, m = 1200, 400
    lp = mp_edges(1.0, n / m)[1]
    e = _eigs(make_family("many_spikes", n, m, seed=4, k=12, ratio_lo=3.0, ratio_hi=10.0))
    assert (e > 2.5 * lp).sum() == 12 and e[-13] < 1.1 * lp  # 12 clear outliers, nothing in between
    e = _eigs(make_family("graded_bleed", n, m, seed=4, frac=0.1, tail_alpha=5.0, n_far=3, far_lo=6.0, far_hi=20.0))
    assert (e > 5 * lp).sum() == 3  # the far spikes
    assert (e > 1.1 * lp).sum() >= 20  # a graded mass of ~40 from the edge up


def test_powerlaw_population_tail_follows_a():
    # the top of the ESD tracks the population c_j ∝ j^(-1/(a-1)): rank-size slope ≈ 1/(a-1)
    e = _eigs(make_family("powerlaw_population", 3000, 1000, seed=0, a=2.5))[::-1][:30]
    slope = -np.polyfit(np.log(np.arange(1, 31)), np.log(e), 1)[0]
    assert_allclose(1 + 1 / slope, 2.5, rtol=0.15)


@pytest.mark.parametrize("init", ["orthogonal", "eye", "dirac"])
def test_point_mass_inits(init):
    e = _eigs(make_family("torch_init", 64, 128, seed=0, init=init))
    assert e.max() - e.min() < 1e-5 * e.max()  # float32 round-off
    assert set(TORCH_INITS) >= {"linear_default", "conv2d_default", "kaiming_normal", "xavier_uniform",
                                "trunc_normal", "orthogonal", "sparse"}
