"""Tests for analysis.analyze: the metrics row, batching, degenerate inputs and the DataFrame."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose
from torch import nn

from htsweep.analysis import analyze_eigs, analyze_layers, analyze_matrix, analyze_model, synthetic
from htsweep.analysis.analyze import LOCALIZATION_KEYS, ROW_KEYS
from htsweep.analysis.layers import LayerMatrix, extract_layers
from htsweep.analysis.metrics import spectral_metrics
from htsweep.analysis.phases import UNDETERMINED
from htsweep.analysis.powerlaw_fit import fit_power_law, pl_alpha_hill
from htsweep.analysis.spectrum import esd


@pytest.fixture(scope="module")
def gaussian() -> np.ndarray:
    return np.random.default_rng(1234).standard_normal((600, 300))


def test_row_keys_types_and_mp_closed_form(gaussian):
    row = analyze_matrix(gaussian, name="g", device="cpu", precision="float64")
    assert tuple(row) == ROW_KEYS
    assert (row["name"], row["kind"], row["n"], row["m"], row["q"]) == ("g", "matrix", 600, 300, 2.0)
    # iid N(0,1): σ² = 1 and λ+ = (1 + 1/√2)² (MP closed form); finite-size error ~ 1%
    assert_allclose(row["sigma2"], 1.0, rtol=0.03)
    assert_allclose(row["lambda_plus"], (1 + 1 / math.sqrt(2)) ** 2, rtol=0.03)
    assert row["n_spikes"] == 0 and row["phase"] == "random_like" and row["warning"] == ""
    eigs = esd(gaussian, device="cpu")
    ref = spectral_metrics(eigs, n=600, alpha=fit_power_law(eigs).alpha)
    for key, value in ref.items():
        assert_allclose(row[key], value, rtol=1e-12)
    # alpha_hill is the seeds' PL_Alpha_Hill
    assert_allclose(row["alpha_hill"], pl_alpha_hill(eigs), rtol=1e-12)
    assert row["precision"] == "float64"
    json.dumps(row)  # JSON-serializable: only str/int/float values
    assert all(type(v) in (str, int, float) for v in row.values())


def test_spiked_matrix_counts_spikes():
    W = synthetic.make("bulk_plus_spikes", 800, 400, seed=3, k=2)
    row = analyze_matrix(W, device="cpu")
    assert row["n_spikes"] == 2
    assert row["mp_soft_rank"] < 0.5
    assert row["phase"] == "bulk_plus_spikes"  # the same on seeds 0-4


def test_localization_flag_adds_keys(gaussian):
    row = analyze_matrix(gaussian[:200, :50], localization=True, device="cpu")
    assert tuple(row) == ROW_KEYS + LOCALIZATION_KEYS
    # a Gaussian-like eigenvector is delocalized: participation ratio near (M/3)^(1/4) (= 2.02 for
    # Gaussian components, E v⁴ = 3), far from the fully localized value 1
    assert 1.6 < row["participation_ratio"] < 2.2


@pytest.mark.parametrize("m", [8, 10, 31])
def test_small_matrix_gets_nan_fits_and_warning(m):
    W = np.random.default_rng(0).standard_normal((64, m))  # e.g. a classifier head with m classes
    row = analyze_matrix(W, device="cpu")
    assert row["warning"] == f"too small for a power-law fit (M={m} < 32)"
    for key in ("alpha", "alpha_hill", "D", "xmin", "alpha_sigma", "alpha_weighted", "log_alpha_norm"):
        assert math.isnan(row[key]), key
    assert row["stable_rank"] > 1  # eigenvalue-only metrics are still computed
    # fewer than 16 eigenvalues are too few to tell a phase; more, from a Gaussian, are random-like
    assert row["phase"] == (UNDETERMINED if m < 16 else "random_like")


def test_degenerate_matrices_never_crash():
    zero = analyze_matrix(np.zeros((40, 20)), device="cpu")
    assert math.isnan(zero["alpha"]) and zero["warning"] and zero["phase"] == UNDETERMINED
    const = analyze_matrix(np.ones((40, 20)), device="cpu")  # rank one
    assert const["numerical_rank"] == 1 and const["phase"] == UNDETERMINED


def test_bad_input_errors():
    W = np.ones((30, 20))
    W[3, 4] = np.inf
    with pytest.raises(ValueError, match=r"layer 'fc2': weights contain 1 NaN/Inf"):
        analyze_matrix(W, name="fc2", device="cpu")
    with pytest.raises(ValueError, match="expected a 2-D matrix"):
        analyze_matrix(np.ones((2, 3, 4)), device="cpu")
    with pytest.raises(ValueError, match="expected n >= m"):
        analyze_eigs(np.ones(5), n=3, m=5)
    with pytest.raises(ValueError, match="parameter 'n'"):
        analyze_eigs(np.ones(5), n=0, m=5)


def test_analyze_layers_matches_analyze_matrix():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 32), nn.Linear(32, 16))
    layers = extract_layers(model)
    rows = analyze_layers(layers, device="cpu", precision="float64")
    assert [r["name"] for r in rows] == ["0", "2", "3"] and all(r["kind"] == "linear" for r in rows)
    for row, layer in zip(rows, layers, strict=True):
        single = analyze_matrix(layer.matrix, name=layer.name, device="cpu", precision="float64")
        assert_allclose(row["eigs"], esd(layer.matrix, device="cpu"), rtol=1e-12, atol=1e-15)
        for key in ("alpha", "stable_rank", "sigma2", "n_spikes", "phase"):
            assert row[key] == single[key] or (isinstance(row[key], float) and math.isnan(row[key]))


def test_analyze_model_dataframe():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Flatten(), nn.Linear(40, 20))
    df = analyze_model(model, device="cpu")
    assert list(df.columns) == list(ROW_KEYS)
    assert list(df["name"]) == ["0", "2"] and list(df["kind"]) == ["conv2d", "linear"]
    assert "eigs" not in df.columns
    kernel = analyze_model(model, conv="kernel", device="cpu")
    assert len(kernel) == 9 + 1  # one row per 3x3 kernel position + the Linear
    with pytest.raises(TypeError, match="unexpected keyword"):
        analyze_model(model, bogus=1)


def test_float32_matches_float64_on_trained_like_spectra():
    # heavy-tailed (Student-t) and spiked matrices: float32 alpha within 0.02 and the same phase
    rng = np.random.default_rng(11)
    mats = [rng.standard_t(2.5, size=(700, 300)), synthetic.make("bulk_plus_spikes", 640, 320, seed=4, k=3),
            rng.standard_normal((300, 300))]
    for W in mats:
        r64 = analyze_matrix(W, device="cpu", precision="float64")
        r32 = analyze_matrix(torch.from_numpy(W).float(), device="cpu", precision="float32")
        assert r32["precision"] == "float32"
        assert abs(r32["alpha"] - r64["alpha"]) < 0.02 and r32["phase"] == r64["phase"]
        assert r32["n_spikes"] == r64["n_spikes"]
        assert_allclose(r32["lambda_max"], r64["lambda_max"], rtol=1e-5)


def test_rank_collapse_is_redone_in_float64():
    rng = np.random.default_rng(12)
    W = (rng.standard_normal((400, 20)) @ rng.standard_normal((20, 200))).astype(np.float32)  # rank 20
    row = analyze_layers([LayerMatrix.from_tensor("low", "linear", torch.from_numpy(W))], device="cpu",
                         precision="float32")[0]
    assert row["precision"] == "float64"  # the zero cluster needs float64 to be resolved
    assert row["numerical_rank"] == 20 and row["phase"] == "rank_collapse"
    assert row["eigs"][:180].max() < 1e-9 * row["eigs"][-1]


def test_analyze_model_reads_checkpoints_and_selects_layers(tmp_path):
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(64, 48), nn.ReLU(), nn.Linear(48, 40), nn.Linear(40, 36))
    torch.save(model.state_dict(), tmp_path / "m.pt")
    df = analyze_model(tmp_path / "m.pt", exclude="3", precision="float64", device="cpu")
    ref = analyze_model(model, exclude="3", precision="float64", device="cpu")
    assert list(df["name"]) == list(ref["name"]) == ["0", "2"]
    assert_allclose(df["alpha"], ref["alpha"], rtol=1e-12)
    assert list(analyze_model(model, max_dim=40, device="cpu")["name"]) == ["2", "3"]


def test_correlation_traps_count_large_entries_not_correlations():
    rng = np.random.default_rng(16)
    n, m = 400, 200
    noise = rng.standard_normal((n, m))
    trapped = noise.copy()
    trapped[[5, 80, 300], [7, 90, 150]] = 40.0  # θ² ≈ w²/N = 4 ≫ √(M/N): each entry alone is an outlier
    u, v = rng.standard_normal(n), rng.standard_normal(m)
    signal = noise + 3.0 * np.outer(u / np.linalg.norm(u), v / np.linalg.norm(v)) * np.sqrt(n)  # a learned direction
    rows = {}
    for label, W in (("noise", noise), ("trapped", trapped), ("signal", signal)):
        layer = LayerMatrix.from_tensor(label, "linear", torch.from_numpy(W))
        rows[label] = analyze_layers([layer], device="cpu", precision="float64", traps=3)[0]
    assert rows["noise"]["n_traps"] == 0 and rows["signal"]["n_traps"] == 0
    assert rows["trapped"]["n_traps"] == 3
    assert rows["signal"]["n_spikes"] >= 1  # the spike is a correlation: shuffling removes it
    # λ+ of the shuffled ESD is the MP edge of the entry variance (closed form σ²(1 + 1/√Q)²)
    assert_allclose(rows["noise"]["shuffle_lambda_plus"], noise.var() * (1 + 1 / math.sqrt(2)) ** 2, rtol=0.03)
    # the spike stays above the shuffled spectrum; shuffling noise changes the ESD little (KS ~ 1/√M)
    assert rows["signal"]["lambda_max"] > 3 * rows["signal"]["shuffle_lambda_max"]
    assert rows["noise"]["shuffle_distance"] < 0.05 and rows["signal"]["shuffle_distance"] > rows["noise"]["shuffle_distance"]
    df = analyze_model(nn.Sequential(nn.Linear(64, 48)), traps=2, device="cpu")
    assert list(df.columns[-4:]) == ["n_traps", "shuffle_lambda_plus", "shuffle_lambda_max", "shuffle_distance"]
    assert "n_traps" not in analyze_model(nn.Sequential(nn.Linear(64, 48)), device="cpu").columns
