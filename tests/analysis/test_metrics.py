"""Tests for analysis.metrics against hand-computed closed forms."""

from __future__ import annotations

import math

import numpy as np
import pytest
from numpy.testing import assert_allclose

from htsweep.analysis import metrics


def test_stable_rank_and_norms():
    eigs = np.array([1.0, 2.0, 3.0, 4.0])  # read as squared singular values by the norm functions
    assert metrics.stable_rank(eigs) == pytest.approx(10.0 / 4.0)  # Σλ/λmax
    assert metrics.log_frobenius_norm(eigs) == pytest.approx(1.0)  # log10(10)
    assert metrics.log_spectral_norm(eigs) == pytest.approx(math.log10(4.0))
    assert metrics.alpha_weighted(eigs, 2.5) == pytest.approx(2.5 * math.log10(4.0))
    # log10 Σ λ^α, direct sum (no overflow at these sizes)
    assert metrics.log_alpha_norm(eigs, 2.5) == pytest.approx(math.log10(np.sum(eigs**2.5)), rel=1e-12)
    assert math.isnan(metrics.log_alpha_norm(eigs, math.nan))


def test_log_alpha_norm_does_not_overflow():
    eigs = np.array([1e300, 1e300])
    # closed form: log10(2 * 1e(300*3)) = 900 + log10 2
    assert metrics.log_alpha_norm(eigs, 3.0) == pytest.approx(900 + math.log10(2.0), rel=1e-12)


def test_matrix_entropy_closed_forms():
    assert metrics.matrix_entropy(np.full(7, 3.0)) == pytest.approx(1.0)  # uniform: maximal
    assert metrics.matrix_entropy(np.array([0.0, 0.0, 5.0])) == 0.0  # rank one
    # p = [1/4, 1/4, 1/2]: H = 1.5 ln 2, normalized by ln(rank = 3)
    assert metrics.matrix_entropy(np.array([1.0, 1.0, 2.0])) == pytest.approx(1.5 * math.log(2) / math.log(3))
    assert math.isnan(metrics.matrix_entropy(np.zeros(4)))


def test_effective_rank_closed_forms():
    assert metrics.effective_rank(np.full(9, 2.0)) == pytest.approx(9.0)
    # λ = [1, 4] → ν = [1, 2] → p = [1/3, 2/3]; exp(H) = 3 / 2^(2/3)
    assert metrics.effective_rank(np.array([1.0, 4.0])) == pytest.approx(3.0 / 2 ** (2 / 3))


def test_numerical_rank_uses_noise_floor():
    eigs = np.array([1e-18, 1e-15, 0.5, 1.0])
    # default tol = M * eps * λmax = 4 * 2.2e-16 ≈ 8.9e-16: 1e-15 counts, 1e-18 does not
    assert metrics.numerical_rank(eigs) == 3
    assert metrics.numerical_rank(eigs, tol=0.6) == 1
    assert metrics.numerical_rank(np.array([])) == 0


def test_spectral_metrics_keys_and_values():
    out = metrics.spectral_metrics(np.array([1.0, 1.0, 2.0]), n=1, alpha=2.0)
    assert set(out) == {"lambda_max", "stable_rank", "matrix_entropy", "effective_rank",
                        "log_frobenius_norm", "log_spectral_norm", "alpha_weighted",
                        "log_alpha_norm", "numerical_rank"}
    assert out["stable_rank"] == pytest.approx(2.0)
    assert out["log_alpha_norm"] == pytest.approx(math.log10(6.0))  # 1 + 1 + 4


def test_norm_metrics_are_on_weightwatchers_scale():
    # W = U diag(ν) Vᵀ with known singular values: every norm metric has a closed form in ν
    rng = np.random.default_rng(3)
    n, m = 50, 20
    nu = np.linspace(0.5, 4.0, m)
    U, _ = np.linalg.qr(rng.standard_normal((n, m)))
    V, _ = np.linalg.qr(rng.standard_normal((m, m)))
    W = U @ np.diag(nu) @ V.T
    lam = np.linalg.eigvalsh(W.T @ W / n)  # the ESD: λ = ν² / N
    out = metrics.spectral_metrics(lam, n=n, alpha=2.5)
    assert out["log_frobenius_norm"] == pytest.approx(math.log10(np.linalg.norm(W, "fro") ** 2), rel=1e-12)
    assert out["log_spectral_norm"] == pytest.approx(math.log10(np.linalg.norm(W, 2) ** 2), rel=1e-12)
    assert out["alpha_weighted"] == pytest.approx(2.5 * math.log10(nu.max() ** 2), rel=1e-12)
    assert out["log_alpha_norm"] == pytest.approx(math.log10(np.sum(nu ** (2 * 2.5))), rel=1e-12)
    # lambda_max stays on the ESD's scale (it is compared with λ+); scale-free metrics do not move
    assert out["lambda_max"] == pytest.approx(nu.max() ** 2 / n, rel=1e-12)
    assert out["stable_rank"] == pytest.approx(np.sum(nu**2) / nu.max() ** 2, rel=1e-12)
    assert metrics.spectral_metrics(lam, n=1, alpha=2.5)["stable_rank"] == pytest.approx(out["stable_rank"])


def test_localization_extremes():
    m = 256
    basis = np.zeros((m, 1))
    basis[3] = 1.0
    flat = np.ones((m, 1)) / math.sqrt(m)
    loc = metrics.localization_metrics(np.hstack([basis, flat]))
    # fully localized: ‖v‖₁/‖v‖∞ = 1 and ‖v‖₂/‖v‖₄ = 1; flat: M and M^(1/4)
    assert_allclose(loc["localization_ratio"], [1.0, m], rtol=1e-12)
    assert_allclose(loc["participation_ratio"], [1.0, m**0.25], rtol=1e-12)
    # the basis vector puts 255 of 256 components in one bin (entropy ~0.005); a Gaussian spreads out
    gauss = np.random.default_rng(0).standard_normal((m, 1))
    ent = metrics.localization_metrics(np.hstack([basis, gauss]))["vector_entropy"]
    assert ent[0] < 0.05 < 0.5 < ent[1] <= 1.0
