"""Tests for analysis.generalization: rank correlations against scipy, bootstrap intervals against
scipy.stats.bootstrap and their coverage on held-out synthetic data, model aggregates on real rows."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from htsweep.analysis import analyze_layers, synthetic
from htsweep.analysis.generalization import (
    MIN_MODELS,
    MODEL_METRICS,
    bootstrap_rank_correlation,
    kendall_tau_b,
    model_aggregates,
    rank_correlations,
    spearman_rho,
)
from htsweep.analysis.layers import LayerMatrix


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_spearman_and_kendall_match_scipy_with_ties(seed):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 6, 40).astype(float)  # many ties
    y = x + rng.normal(0, 2, 40)
    y[:5] = y[5]
    # scipy.stats.spearmanr (average ranks) and kendalltau (tau-b) are the references
    assert spearman_rho(x, y) == pytest.approx(stats.spearmanr(x, y).statistic, abs=1e-12)
    assert kendall_tau_b(x, y) == pytest.approx(stats.kendalltau(x, y).statistic, abs=1e-12)


def test_constant_input_has_no_correlation():
    assert math.isnan(spearman_rho([1, 1, 1, 1], [1, 2, 3, 4]))
    assert math.isnan(kendall_tau_b([1, 2, 3, 4], [5, 5, 5, 5]))


def test_bootstrap_interval_agrees_with_scipy_bootstrap():
    rng = np.random.default_rng(7)
    x = rng.normal(size=25)
    y = 0.6 * x + rng.normal(scale=0.8, size=25)
    (lo, hi), (tlo, thi) = bootstrap_rank_correlation(x, y, n_boot=4000, rng=1)
    # scipy's own resampling loop (1000 resamples, not vectorized) is the reference.

    def rho(a, b):
        return stats.spearmanr(a, b).statistic

    def tau(a, b):
        return stats.kendalltau(a, b).statistic

    ref = stats.bootstrap((x, y), rho, paired=True, vectorized=False, n_resamples=1000, method="percentile",
                          random_state=2).confidence_interval
    ref_tau = stats.bootstrap((x, y), tau, paired=True, vectorized=False, n_resamples=1000, method="percentile",
                              random_state=3).confidence_interval
    # Independent Monte Carlo runs of the same percentile interval agree to MC error (~0.03 here).
    assert lo == pytest.approx(ref.low, abs=0.07) and hi == pytest.approx(ref.high, abs=0.07)
    assert tlo == pytest.approx(ref_tau.low, abs=0.07) and thi == pytest.approx(ref_tau.high, abs=0.07)
    assert lo < spearman_rho(x, y) < hi


def test_bootstrap_intervals_cover_the_population_value_on_held_out_data():
    # Bivariate normal with correlation r: Spearman's population rho_s = (6/pi) asin(r/2) and
    # Kendall's tau = (2/pi) asin(r) (Kruskal 1958). Sizes and r not used anywhere else.
    r, n, reps = 0.5, 30, 100
    rho_s, tau = 6 / math.pi * math.asin(r / 2), 2 / math.pi * math.asin(r)
    rng = np.random.default_rng(2024)
    cov = [[1, r], [r, 1]]
    hit_rho = hit_tau = 0
    for _ in range(reps):
        x, y = rng.multivariate_normal([0, 0], cov, size=n).T
        (lo, hi), (tlo, thi) = bootstrap_rank_correlation(x, y, n_boot=500, rng=rng)
        hit_rho += lo <= rho_s <= hi
        hit_tau += tlo <= tau <= thi
    # Nominal 95 %; percentile intervals at n=30 undercover a little. Binomial sd at 100 reps ~2.2 %.
    assert 0.85 <= hit_rho / reps <= 1.0
    assert 0.85 <= hit_tau / reps <= 1.0


def test_rank_correlations_overall_groups_and_flags():
    rng = np.random.default_rng(3)
    n = 24
    opt = ["sgd", "adam"] * (n // 2)
    alpha = rng.uniform(2, 6, n)
    acc = 1.0 - 0.1 * alpha + rng.normal(0, 0.02, n)
    noise = rng.normal(size=n)
    res = rank_correlations({"alpha_mean": alpha, "noise": noise}, acc, groups={"optimizer": opt}, n_boot=500)
    assert [(c.metric, c.group) for c in res] == [
        ("alpha_mean", ""), ("noise", ""),
        ("alpha_mean", "optimizer=adam"), ("noise", "optimizer=adam"),
        ("alpha_mean", "optimizer=sgd"), ("noise", "optimizer=sgd"),
    ]
    overall = res[0]
    assert overall.n == n and overall.enough and overall.message == ""
    assert overall.spearman == pytest.approx(stats.spearmanr(alpha, acc).statistic, abs=1e-12)
    assert overall.spearman < -0.8 and overall.spearman_ci[1] < 0 and overall.spearman_p < 1e-4
    assert overall.kendall_ci[0] <= overall.kendall <= overall.kendall_ci[1]
    adam = res[2]
    sel = np.array([o == "adam" for o in opt])
    assert adam.n == 12 and adam.spearman == pytest.approx(stats.spearmanr(alpha[sel], acc[sel]).statistic)


def test_too_few_models_are_flagged_and_nan_values_left_out():
    acc = [0.8, 0.85, 0.9, 0.93, 0.92, math.nan]
    res = rank_correlations({"alpha_mean": [4.1, 3.5, 2.9, 2.4, 2.2, 1.0]}, acc, n_boot=200)[0]
    assert res.n == 5 and not res.enough
    assert f"n=5 < {MIN_MODELS}" in res.message and "too few" in res.message
    two = rank_correlations({"m": [1.0, 2.0]}, [0.5, 0.6])[0]
    assert math.isnan(two.spearman) and two.message == "n=2: needs at least 3 models"
    const = rank_correlations({"m": [1.0, 1.0, 1.0, 1.0]}, [0.5, 0.6, 0.7, 0.8])[0]
    assert const.message == "the metric is constant" and not const.enough


def test_rank_correlations_length_mismatch_is_a_clear_error():
    with pytest.raises(ValueError, match=r"metric 'alpha_mean' has 3 values for 4 targets"):
        rank_correlations({"alpha_mean": [1, 2, 3]}, [1, 2, 3, 4])
    with pytest.raises(ValueError, match=r"group 'optimizer' has 2 values for 3 targets"):
        rank_correlations({"m": [1, 2, 3]}, [1, 2, 3], groups={"optimizer": ["a", "b"]})


def test_model_aggregates_on_real_layer_rows():
    mats = [synthetic.make("heavy_tailed", 400, 200, seed=1), synthetic.make("bulk_plus_spikes", 300, 150, seed=2),
            np.random.default_rng(0).normal(size=(64, 10))]  # the last is too small for a power-law fit
    rows = analyze_layers([LayerMatrix.from_tensor(f"l{i}", "linear", torch.from_numpy(m)) for i, m in enumerate(mats)],
                          device="cpu")
    assert math.isnan(rows[2]["alpha"]) and all(math.isfinite(r["alpha"]) for r in rows[:2])
    agg = model_aggregates(rows)
    assert set(agg) == set(MODEL_METRICS)
    fitted = rows[:2]  # averages run over the layers with a fit only
    assert agg["alpha_mean"] == pytest.approx(np.mean([r["alpha"] for r in fitted]))
    assert agg["alpha_hill"] == pytest.approx(np.mean([r["alpha_hill"] for r in fitted]))
    assert agg["log_alpha_norm"] == pytest.approx(np.mean([r["log_alpha_norm"] for r in fitted]))
    assert agg["stable_rank"] == pytest.approx(np.mean([r["stable_rank"] for r in fitted]))
    assert agg["n_spikes"] == sum(r["n_spikes"] for r in fitted)
    only_small = model_aggregates(rows[2:])  # no fit anywhere: all layers count
    assert only_small["stable_rank"] == pytest.approx(rows[2]["stable_rank"])
    assert math.isnan(only_small["alpha_mean"])
