"""Tests for analysis.plots: figures are drawn with the fitted curves and saved as PNG."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from analysis import analyze_layers, synthetic
from analysis.layers import LayerMatrix
from analysis.marchenko_pastur import fit_marchenko_pastur
from analysis.plots import plot_esd, plot_layer, plot_tail
from analysis.powerlaw_fit import fit_power_law


@pytest.fixture(scope="module")
def row():
    W = synthetic.make("bulk_plus_spikes", 300, 150, seed=0)
    return analyze_layers([LayerMatrix.from_tensor("fc", "linear", torch.from_numpy(W))], device="cpu")[0]


def test_importing_analysis_does_not_import_matplotlib():
    # fresh interpreter: importing the package (plots included) must not pull in matplotlib
    code = "import sys, analysis, analysis.plots; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_plot_esd_draws_mp_density_and_edges(row):
    eigs = row["eigs"]
    mp = fit_marchenko_pastur(eigs, row["q"])
    pl = fit_power_law(eigs)
    ax = plot_esd(eigs, mp=mp, pl=pl, title="fc")
    labels = [line.get_label() for line in ax.get_lines()]
    assert any(lab.startswith("MP") for lab in labels)
    lam_plus = [line for line in ax.get_lines() if line.get_label().startswith("λ+")][0]
    assert lam_plus.get_xdata()[0] == pytest.approx(mp.lambda_plus)
    assert ax.get_title() == "fc"


def test_plot_tail_line_has_fitted_slope(row):
    pl = fit_power_law(row["eigs"])
    ax = plot_tail(row["eigs"], pl)
    line = [ln for ln in ax.get_lines() if ln.get_label().startswith("PL")][0]
    x, y = np.asarray(line.get_xdata()), np.asarray(line.get_ydata())
    slope = np.polyfit(np.log(x), np.log(y), 1)[0]
    assert slope == pytest.approx(-pl.alpha, rel=1e-9)  # a pure power law: log-log slope -alpha
    xmin_line = [ln for ln in ax.get_lines() if ln.get_label().startswith("xmin")][0]
    assert xmin_line.get_xdata()[0] == pytest.approx(pl.xmin)


def test_plot_layer_writes_png(tmp_path, row):
    out = plot_layer(row, tmp_path / "sub" / "fc.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    bare = plot_layer(row["eigs"], tmp_path / "bare.png", q=row["q"])
    assert bare.stat().st_size > 1000
    with pytest.raises(ValueError, match="has no 'eigs'"):
        plot_layer({"name": "x"}, tmp_path / "x.png")
