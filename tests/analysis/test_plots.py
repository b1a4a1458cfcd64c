"""Tests for analysis.plots: figures are drawn with the fitted curves and saved as PNG."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from htsweep.analysis import analyze_layers, synthetic
from htsweep.analysis.layers import LayerMatrix
from htsweep.analysis.marchenko_pastur import fit_marchenko_pastur
from htsweep.analysis.plots import plot_esd, plot_layer, plot_tail
from htsweep.analysis.powerlaw_fit import fit_power_law


@pytest.fixture(scope="module")
def row():
    W = synthetic.make("bulk_plus_spikes", 300, 150, seed=0)
    return analyze_layers([LayerMatrix.from_tensor("fc", "linear", torch.from_numpy(W))], device="cpu")[0]


def test_importing_analysis_does_not_import_matplotlib_and_figures_never_touch_pyplot(tmp_path):
    # fresh interpreter: importing the package (plots included) must not pull in matplotlib, and
    # drawing must neither import pyplot nor switch the process-wide backend
    code = (
        "import sys, analysis, analysis.plots\n"
        "print('matplotlib' in sys.modules)\n"
        "import matplotlib, numpy as np\n"
        "raw = lambda: dict.__getitem__(matplotlib.rcParams, 'backend')  # without resolving it via pyplot\n"
        "before = raw()\n"
        "from analysis.plots import plot_phase_timeline, plot_alpha_trajectories, plot_esd_evolution, plot_layer\n"
        "plot_phase_timeline([0, 1], ['a'], [[0, 4]]).figure.savefig(sys.argv[1])\n"
        "plot_alpha_trajectories([0, 1], [[3, 2]]).figure.savefig(sys.argv[1])\n"
        "plot_esd_evolution([np.arange(1, 50.0)], [0]).figure.savefig(sys.argv[1])\n"
        "plot_layer(np.arange(1, 80.0), sys.argv[1])\n"
        "print('matplotlib.pyplot' in sys.modules, raw() == before)\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "f.png")], capture_output=True, text=True,
                         check=True)
    assert out.stdout.split() == ["False", "False", "True"]
    assert (tmp_path / "f.png").read_bytes()[:4] == b"\x89PNG"


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


# -- figures over training and across trials --------------------------------------------------
from matplotlib.colors import to_hex  # noqa: E402

from htsweep.analysis.phases import PHASES  # noqa: E402
from htsweep.analysis.plots import (  # noqa: E402
    PHASE_COLORS,
    UNDETERMINED,
    phase_color,
    phase_name,
    plot_alpha_trajectories,
    plot_esd_evolution,
    plot_esd_loglog,
    plot_phase_timeline,
    plot_scatter_groups,
)


def test_phase_names_and_colours_tolerate_unknown_values():
    assert [phase_name(i) for i in range(len(PHASES))] == list(PHASES)
    assert phase_name(float(PHASES.index("heavy_tailed"))) == "heavy_tailed"
    for odd in ("undetermined", "(diverged)", "", None, float("nan"), -1, len(PHASES), 2.5):
        assert phase_name(odd) == UNDETERMINED
        assert phase_color(odd) == "#bdbdbd"
    assert phase_color("bulk_decay") == PHASE_COLORS["bulk_decay"]
    assert len(set(PHASE_COLORS.values())) == len(PHASES) == len(PHASE_COLORS)


def test_phase_timeline_draws_each_cell_in_its_phase_colour():
    steps = [0, 100, 250]
    phases = [["random_like", "bulk_decay", "heavy_tailed"],
              [0, "undetermined", float("nan")]]  # codes, issue-10's new name and a gap
    ax = plot_phase_timeline(steps, ["fc1", "fc2"], phases, title="t")
    mesh = ax.collections[0]
    colors = [to_hex(c) for c in mesh.to_rgba(np.asarray(mesh.get_array()).ravel())]  # row-major: fc1, fc2
    expected = [PHASE_COLORS["random_like"], PHASE_COLORS["bulk_decay"], PHASE_COLORS["heavy_tailed"],
                PHASE_COLORS["random_like"], "#bdbdbd", "#bdbdbd"]
    assert colors == expected
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["random_like", "bulk_decay", "heavy_tailed",
                                                                  UNDETERMINED]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["fc1", "fc2"]
    assert list(ax.get_xticks()) == steps
    with pytest.raises(ValueError, match=r"phases must have shape \(n_layers, n_steps\) = \(2, 3\), got \(2, 2\)"):
        plot_phase_timeline(steps, ["fc1", "fc2"], [[0, 1], [1, 2]])


def test_alpha_trajectories_plot_the_given_values():
    alphas = [[5.0, 3.1, 2.2], [6.0, 4.0, 3.0], [np.nan, np.nan, np.nan]]
    ax = plot_alpha_trajectories([10, 20, 30], alphas, layers=["a", "b", "head"], target=2.0)
    lines = ax.get_lines()
    assert [ln.get_label() for ln in lines] == ["a", "b", "head (no fit)", "target α=2"]
    np.testing.assert_array_equal(lines[1].get_ydata(), [6.0, 4.0, 3.0])
    np.testing.assert_array_equal(lines[0].get_xdata(), [10, 20, 30])
    with pytest.raises(ValueError, match="2 layer names for 3 rows of alphas"):
        plot_alpha_trajectories([10, 20, 30], alphas, layers=["a", "b"])


def test_esd_evolution_histograms_are_densities_and_mark_lambda_plus(row):
    rng = np.random.default_rng(5)
    early = np.sort(rng.chisquare(3, 150) / 3)
    spectra, steps, lam = [early, row["eigs"]], [0, 500], [1.7, row["lambda_plus"]]
    ax = plot_esd_evolution(spectra, steps, lambda_plus=lam)
    hist = [ln for ln in ax.get_lines() if ln.get_label().startswith("step")]
    assert [ln.get_label() for ln in hist] == ["step 0", "step 500"]
    edges_x = [ln for ln in ax.get_lines() if ln.get_linestyle() == ":"]
    assert [ln.get_xdata()[0] for ln in edges_x] == pytest.approx(lam)
    # each curve is a density on shared log bins: its integral over the bins it covers is ~1
    x, d = np.asarray(hist[0].get_xdata()), np.asarray(hist[0].get_ydata())
    assert np.all(d > 0) and x.size >= 5
    ratio = np.min(x[1:] / x[:-1])  # geometric bins: centre ratio = edge ratio
    widths = x * (np.sqrt(ratio) - 1 / np.sqrt(ratio))
    assert np.sum(d * widths) == pytest.approx(1.0, rel=1e-9)
    assert hist[0].get_color() != hist[1].get_color()
    with pytest.raises(ValueError, match="2 spectra for 3 steps"):
        plot_esd_evolution(spectra, [0, 1, 2])


def test_esd_loglog_draws_both_fits(row):
    ax = plot_esd_loglog(row["eigs"], row, title="fc")
    labels = [ln.get_label() for ln in ax.get_lines()]
    assert "MP fit" in labels
    pl = [ln for ln in ax.get_lines() if ln.get_label().startswith("PL")][0]
    x, y = np.asarray(pl.get_xdata()), np.asarray(pl.get_ydata())
    assert np.polyfit(np.log(x), np.log(y), 1)[0] == pytest.approx(-row["alpha"], rel=1e-9)
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"


def test_scatter_groups_colour_each_value_and_follow_the_given_order():
    ax = plot_scatter_groups([1, 2, 3, 4, 5], [2.0, 2.5, 4.0, 5.0, 3.0], groups=["sgd", "adam", "sgd", "adam", "sgd"],
                             labels=[0, 1, 2, 3, 4], order=["adam", "sgd"], group_name="optimizer")
    assert [c.get_label() for c in ax.collections] == ["adam", "sgd"]
    np.testing.assert_array_equal(ax.collections[0].get_offsets()[:, 1], [2.5, 5.0])
    assert to_hex(ax.collections[0].get_facecolor()[0]) != to_hex(ax.collections[1].get_facecolor()[0])
    assert ax.get_legend().get_title().get_text() == "optimizer"
    assert len(ax.texts) == 5
    with pytest.raises(ValueError, match="groups has 2 values for 5 points"):
        plot_scatter_groups([1, 2, 3, 4, 5], [1, 2, 3, 4, 5], groups=["a", "b"])

