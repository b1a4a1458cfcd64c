"""Tests for analysis.farms: against a plain loop written here, and the aspect-ratio acceptance."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose

from htsweep.analysis import analyze_matrix, analyze_model, spectral_aggregates
from htsweep.analysis.farms import farms, window_offsets
from htsweep.analysis.layers import LayerMatrix
from htsweep.analysis.metric_names import FARMS_KEYS, ROW_KEYS, is_spectral_key
from htsweep.analysis.powerlaw_fit import fit_power_law, pl_alpha_hill


def _plain_farms(W: np.ndarray, max_rows: int, q: float, count: int) -> np.ndarray:
    """FARMS pooled ESD the slow, obvious way: every window sliced out, float64 Gram, eigvalsh."""
    if W.shape[0] < W.shape[1]:
        W = W.T
    n, m = W.shape
    cols = min(max_rows, m)
    rows = min(n, max(cols, int(round(q * cols))))
    starts_r = sorted({int(round(v)) for v in np.linspace(0, n - rows, count)})
    starts_c = sorted({int(round(v)) for v in np.linspace(0, m - cols, count)})
    parts = []
    for r in starts_r:
        for c in starts_c:
            w = W[r : r + rows, c : c + cols].astype(np.float64)
            parts.append(np.clip(np.linalg.eigvalsh(w.T @ w / rows), 0.0, None))
    return np.sort(np.concatenate(parts))


def _plain_hill(x: np.ndarray) -> float:
    x = np.sort(x[x > 0])
    tail = x[x.size // 2 :]
    return 1.0 + tail.size / float(np.sum(np.log(tail / tail[0])))


@pytest.mark.parametrize(("shape", "max_rows", "q", "count"), [
    ((300, 120), 2000, 1.0, 10),   # window M×M sliding along N
    ((120, 300), 2000, 1.0, 10),   # transposed input: same windows
    ((150, 90), 40, 1.0, 10),      # windows smaller than both sides: a 10×10 grid
    ((130, 100), 50, 2.0, 4),      # long windows (q = 2)
    ((64, 64), 2000, 1.0, 10),     # square layer: one window, the layer itself
    ((70, 66), 64, 1.0, 10),       # coinciding offsets are taken once
])
def test_pooled_esd_and_alphas_match_a_plain_implementation(shape, max_rows, q, count):
    W = np.random.default_rng(sum(shape)).standard_t(3.0, size=shape)
    (res,) = farms([W], device="cpu", precision="float64", max_rows=max_rows, q=q, n_windows=count)
    ref = _plain_farms(W, max_rows, q, count)
    assert res.eigs.shape == ref.shape
    assert_allclose(res.eigs, ref, rtol=1e-9, atol=1e-12 * ref[-1])
    assert res.n_windows * res.window[1] == ref.size
    assert res.alpha_hill == pytest.approx(_plain_hill(ref), rel=1e-9)
    # CSN α of the pooled ESD above the window's round-off floor (the fitter itself is checked
    # against the powerlaw package in test_powerlaw_fit.py)
    fit = fit_power_law(ref[ref > res.window[1] * np.finfo(np.float64).eps * ref[-1]])
    assert res.alpha == pytest.approx(fit.alpha, rel=1e-9)


def test_offsets_are_evenly_spaced_clipped_and_distinct():
    assert window_offsets(100, 100, 10).tolist() == [0]
    assert window_offsets(109, 100, 10).tolist() == list(range(10))
    offs = window_offsets(4000, 1000, 10)
    assert offs[0] == 0 and offs[-1] == 3000 and np.ptp(np.diff(offs)) <= 1


def test_pooled_conv_layer_is_windowed_per_kernel_slice():
    rng = np.random.default_rng(5)
    stack = torch.as_tensor(rng.standard_normal((4, 96, 40)))
    (pooled,) = farms([LayerMatrix.from_tensor("conv", "conv2d", stack)], device="cpu", precision="float64")
    per_slice = farms([s for s in stack], device="cpu", precision="float64")
    assert pooled.n_windows == sum(r.n_windows for r in per_slice) == 40
    assert_allclose(pooled.eigs, np.sort(np.concatenate([r.eigs for r in per_slice])), rtol=1e-12)


def test_reshaped_conv_is_windowed_per_kernel_slice_like_the_pooled_stack():
    from htsweep.analysis import extract_layers

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(40, 96, 3))
    (reshaped,) = extract_layers(model, conv="reshape")
    (pooled,) = extract_layers(model, conv="pooled")
    assert reshaped.kernel == 9 and reshaped.matrix.shape == (96, 360) and pooled.kernel == 1
    (a,) = farms([reshaped], device="cpu", precision="float64")
    (b,) = farms([pooled], device="cpu", precision="float64")
    assert a.n_windows == b.n_windows == 90
    assert_allclose(a.eigs, b.eigs, rtol=1e-10, atol=1e-14)


def test_float32_default_agrees_with_float64():
    W = np.random.default_rng(2).standard_normal((500, 100))
    (f32,) = farms([W], device="cpu")
    (f64,) = farms([W], device="cpu", precision="float64")
    assert f32.precision == "float32" and f64.precision == "float64"
    # a square window's smallest eigenvalues fall under float32's round-off floor and are left
    # out of the fits, which moves the median (PL_Alpha_Hill's xmin) a little
    assert f32.alpha_hill == pytest.approx(f64.alpha_hill, abs=0.01)
    assert_allclose(f32.eigs[-50:], f64.eigs[-50:], rtol=1e-4)


def test_small_layers_and_bad_input():
    (small,) = farms([np.random.default_rng(0).standard_normal((50, 20))], device="cpu")
    assert math.isnan(small.alpha) and math.isnan(small.alpha_hill)
    bad = np.ones((40, 40))
    bad[3, 4] = np.nan
    with pytest.raises(ValueError, match="layer 'fc'.*NaN/Inf"):
        farms([LayerMatrix.from_tensor("fc", "linear", torch.as_tensor(bad))], device="cpu")
    with pytest.raises(ValueError, match="max_rows"):
        farms([bad], max_rows=0)


def test_hill_farms_removes_the_aspect_ratio_bias_of_random_layers():
    """Scaled-down acceptance (the 1000-row one is the slow test below): Gaussian, Q = 1…8."""
    rng = np.random.default_rng(0)
    shapes = [(200, 200 * k) for k in (1, 2, 4, 8)]
    hill, hill_farms = [], []
    for shape in shapes:
        W = rng.standard_normal(shape)
        row = analyze_matrix(W, device="cpu", farms=True)
        hill.append(row["alpha_hill"])
        hill_farms.append(row["alpha_hill_farms"])
    assert np.ptp(hill) > 2.0
    assert np.ptp(hill_farms) <= 0.15


def test_rows_aggregates_and_model_columns_carry_the_farms_keys():
    rng = np.random.default_rng(1)
    W = rng.standard_normal((400, 100))
    plain = analyze_matrix(W, device="cpu")
    row = analyze_matrix(W, device="cpu", farms=True)
    assert tuple(plain) == ROW_KEYS and tuple(row) == (*ROW_KEYS, *FARMS_KEYS)
    assert {k: row[k] for k in ROW_KEYS} == plain
    (ref,) = farms([W], device="cpu", min_eigs=32)
    assert (row["alpha_farms"], row["alpha_hill_farms"]) == (ref.alpha, ref.alpha_hill)
    model = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.Linear(256, 10))
    df = analyze_model(model, device="cpu", farms=True)
    assert list(df.columns) == [*ROW_KEYS, *FARMS_KEYS]
    assert np.isfinite(df["alpha_hill_farms"][0]) and math.isnan(df["alpha_hill_farms"][1])  # 10 < 32 columns
    rows = [dict(r, kind="linear") for r in df.to_dict("records")]
    agg = spectral_aggregates(rows)
    assert agg["alpha_farms_mean"] == pytest.approx(df["alpha_farms"][0])
    assert agg["alpha_farms_last"] == agg["alpha_farms_mean"]
    assert math.isnan(agg["alpha_hill_farms/1"]) and agg["alpha_farms/0"] == df["alpha_farms"][0]
    assert all(is_spectral_key(k) for k in ("alpha_farms_mean", "alpha_farms/0", "alpha_hill_farms/1"))
    assert "alpha_farms_mean" not in spectral_aggregates([plain])


@pytest.mark.slow
def test_acceptance_at_1000_rows():
    """The issue's numbers: Gaussian 1000 × {1000…8000}; Student-t (ν = 1.5) at the same shapes."""
    rng = np.random.default_rng(0)
    cols = (1000, 2000, 4000, 8000)
    gauss = [analyze_matrix(rng.standard_normal((1000, c)).astype(np.float32), farms=True) for c in cols]
    assert np.ptp([r["alpha_hill"] for r in gauss]) > 2.0
    assert np.ptp([r["alpha_hill_farms"] for r in gauss]) <= 0.15
    heavy = [analyze_matrix(rng.standard_t(1.5, size=(1000, c)).astype(np.float32), farms=True) for c in cols]
    assert np.ptp([r["alpha_farms"] for r in heavy]) <= 0.3
    assert np.ptp([r["alpha_hill_farms"] for r in heavy]) <= 0.3


def test_pl_alpha_hill_is_the_function_used():
    x = np.random.default_rng(3).pareto(1.5, 500) + 1.0
    assert pl_alpha_hill(x) == pytest.approx(_plain_hill(x), rel=1e-12)


def test_one_window_covering_the_layer_gives_the_layers_alphas():
    """A square layer within the window size is its own only window: FARMS must give its α and
    PL_Alpha_Hill exactly, in float32 too (the unresolved small eigenvalues count alike)."""
    from htsweep.analysis import analyze_matrix

    W = np.random.default_rng(0).standard_normal((300, 300)).astype(np.float32)
    (windowed,) = farms([W], device="cpu", min_eigs=32)  # the window's own eigensolve
    row = analyze_matrix(W, device="cpu", farms=True)  # reuses the layer's spectrum
    assert windowed.n_windows == 1
    assert row["alpha_farms"] == row["alpha"] == windowed.alpha
    assert row["alpha_hill_farms"] == row["alpha_hill"] == windowed.alpha_hill


def test_given_spectra_are_used_only_where_the_one_window_is_the_whole_matrix():
    rng = np.random.default_rng(6)
    square, tall = rng.standard_normal((80, 80)), rng.standard_normal((200, 80))
    marker = (np.linspace(0.5, 3.0, 80) ** 4, "float64")  # not either matrix's spectrum
    got = farms([square, tall], device="cpu", precision="float64", spectra=[marker, marker])
    plain = farms([square, tall], device="cpu", precision="float64")
    assert got[0].eigs.tolist() == marker[0].tolist() and got[0].n_windows == 1
    assert got[1] == plain[1] and got[1].n_windows == 10  # windowed as without spectra
    assert farms([square], device="cpu", precision="float64", spectra=[None]) == plain[:1]  # None: computed
    with pytest.raises(ValueError, match=r"^farms: spectra must hold one spectrum per matrix; got 1 for 2$"):
        farms([square, tall], spectra=[marker])


def test_farms_windows_reaches_every_path_that_computes_farms(tmp_path):
    """``farms_windows=2`` through analyze_matrix, analyze_model, ``htsweep analyze`` and the monitor
    gives the values of ``farms(n_windows=2)`` called directly (which differ from the paper's 10)."""
    from typer.testing import CliRunner

    from htsweep.analysis.analyze import MONITOR_PRECISION
    from htsweep.sweeps.cli import app
    from htsweep.trainers.monitor import SpectralMonitor

    W = np.random.default_rng(4).standard_t(3.0, size=(300, 100)).astype(np.float32)
    (two,) = farms([W], device="cpu", n_windows=2, min_eigs=32)
    (ten,) = farms([W], device="cpu", min_eigs=32)
    assert two.n_windows == 2 and ten.n_windows == 10 and two.alpha_hill != ten.alpha_hill
    want = [two.alpha, two.alpha_hill]
    row = analyze_matrix(W, device="cpu", farms=True, farms_windows=2)
    assert [row[k] for k in FARMS_KEYS] == want
    model = torch.nn.Sequential(torch.nn.Linear(100, 300))
    model[0].weight.data = torch.from_numpy(W)
    df = analyze_model(model, device="cpu", farms=True, farms_windows=2)
    assert [df[k][0] for k in FARMS_KEYS] == want
    np.save(tmp_path / "w.npy", W)
    cli = CliRunner().invoke(app, ["analyze", str(tmp_path / "w.npy"), "--json", "--farms", "--farms-windows", "2"])
    assert cli.exit_code == 0, cli.output
    assert [json.loads(cli.stdout)[k] for k in FARMS_KEYS] == pytest.approx(want, rel=1e-15)  # JSON round trip
    (mon_ref,) = farms([W], device="cpu", precision=MONITOR_PRECISION, n_windows=2, min_eigs=32)
    (mon_row,) = SpectralMonitor(farms=True, farms_windows=2).analyze(model, 0).rows
    assert [mon_row[k] for k in FARMS_KEYS] == [mon_ref.alpha, mon_ref.alpha_hill]


def test_monitor_reuses_its_rows_spectrum_for_a_layer_that_is_its_own_window():
    from htsweep.trainers.monitor import InProcessAnalyzer, SpectralMonitor

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(96, 96), torch.nn.Linear(96, 200))
    marker = np.linspace(0.5, 3.0, 96) ** 4  # not the layer's spectrum: shows where it was taken from

    def analyzer(layers, step):
        rows = InProcessAnalyzer(device="cpu")(layers, step)
        return [{**rows[0], "eigs": marker}, rows[1]]

    rows = SpectralMonitor(analyzer, farms=True).analyze(model, 0).rows
    (square, tall) = farms([lay.weight.detach() for lay in model], device="cpu", precision="float64", min_eigs=32,
                           spectra=[(marker, "float64"), None])
    assert [rows[0][k] for k in FARMS_KEYS] == [square.alpha, square.alpha_hill]  # from the row's spectrum
    assert [rows[1][k] for k in FARMS_KEYS] == [tall.alpha, tall.alpha_hill] and tall.n_windows == 10


@pytest.mark.parametrize("bad", [0, -1])
def test_bad_farms_windows_is_a_one_line_error_at_each_boundary(tmp_path, bad):
    from typer.testing import CliRunner

    from htsweep.sweeps.cli import app
    from htsweep.trainers.monitor import SpectralMonitor

    W = np.ones((40, 40), dtype=np.float32)
    with pytest.raises(ValueError, match=rf"^analyze_matrix: parameter 'farms_windows' must be an int in \[1, inf\); "
                                         rf"got {bad}\.$"):
        analyze_matrix(W, farms=True, farms_windows=bad)
    with pytest.raises(ValueError, match=rf"^farms_windows must be an int in \[1, inf\); got {bad}\.$"):
        SpectralMonitor(farms=True, farms_windows=bad)
    np.save(tmp_path / "w.npy", W)
    for args, message in (([str(bad)], "--farms-windows needs --farms"),
                          (["2"], "--farms-windows needs --farms"),
                          ([str(bad), "--farms"], f"--farms-windows must be >= 1; got {bad}")):
        result = CliRunner().invoke(app, ["analyze", str(tmp_path / "w.npy"), "--farms-windows", *args])
        assert result.exit_code == 2
        assert result.stderr.strip().splitlines() == [f"error: {message}"]


def test_a_given_spectrum_is_reused_only_when_it_can_be_the_windows():
    rng = np.random.default_rng(3)
    square = rng.standard_normal((100, 100))
    plain = farms([square], device="cpu", precision="float64")
    short = (np.arange(1.0, 5.0), "float64")  # 4 eigenvalues cannot be a 100-column window's ESD
    assert farms([square], device="cpu", precision="float64", spectra=[short]) == plain
    assert farms([square], device="cpu", precision="float64", spectra=[(None, "float64")]) == plain
    bad = square.copy()
    bad[3, 7] = np.nan
    with pytest.raises(ValueError, match="NaN"):  # a caller's spectrum does not hide bad weights
        farms([bad], device="cpu", precision="float64", spectra=[(np.ones(100), "float64")])
