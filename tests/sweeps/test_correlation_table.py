"""The end-of-sweep "which spectral metric tracks test accuracy" table, read as a new user reads it:
no per-group columns for a sweep of one hyperparameter, no groups of fewer than 3 trials, and
every line within 100 columns."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from htsweep.sweeps.spec import SweepSpec
from htsweep.sweeps.status import TrialRow, correlation_table
from htsweep.sweeps.trial_data import generalization, grouping_params

EXAMPLES = Path(__file__).resolve().parents[2] / "sweeps" / "examples"


def _layers(alpha: float, rng: np.random.Generator) -> list[dict]:
    """Three layer rows whose model-level metrics move with alpha (plus noise)."""
    return [{"alpha": alpha + rng.normal(0, 0.2), "alpha_weighted": alpha * 0.5, "log_alpha_norm": alpha * 0.3,
             "alpha_hill": alpha + rng.normal(0, 0.3), "stable_rank": 10 + rng.normal(0, 1),
             "mp_soft_rank": 0.3 + rng.normal(0, 0.05), "n_spikes": int(rng.integers(0, 4)),
             "log_spectral_norm": rng.normal(0, 0.1), "log_frobenius_norm": rng.normal(1, 0.1)} for _ in range(3)]


def _sweep(spec: SweepSpec, params: list[dict], seed: int = 0):
    rng = np.random.default_rng(seed)
    rows, layers = [], {}
    for i, p in enumerate(params):
        alpha = rng.uniform(2, 5)
        rows.append(TrialRow(number=i, state="COMPLETE", params=p, alpha=alpha, test_acc=1 - alpha / 10
                             + rng.normal(0, 0.02)))
        layers[i] = _layers(alpha, rng)
    return generalization(None, spec, rows, layers=layers, n_boot=200)


def _render(table) -> list[str]:
    console = Console(record=True, width=100)
    console.print(correlation_table(table))
    return console.export_text().splitlines()


def test_a_sweep_of_one_grid_has_no_per_value_columns():
    """The shipped batch_size_phases_mnist5k.yaml: 8 batch sizes, one trial each."""
    spec = SweepSpec.from_yaml(EXAMPLES / "batch_size_phases_mnist5k.yaml")
    values = spec.search["batch_size"].values
    table = _sweep(spec, [{"batch_size": b} for b in values])
    assert grouping_params(spec, [TrialRow(number=i, state="COMPLETE", params={"batch_size": b})
                                  for i, b in enumerate(values)]) == []
    assert [c.group for c in table.correlations] == [""] * len(table.overall())
    lines = _render(table)
    assert max(map(len, lines)) <= 100
    assert not any("batch_size=" in ln for ln in lines)
    # one line per metric: nothing wraps
    for metric in ("alpha_mean", "stable_rank", "log_frobenius_norm"):
        line = next(ln for ln in lines if metric in ln)
        assert "[" in line and "]" in line


def test_groups_by_other_hyperparameters_drop_small_groups_and_fit_100_columns():
    spec = SweepSpec.from_dict({
        "name": "g", "model": "mlp3", "dataset": "digits", "train": {"steps": 10},
        "search": {"optimizer": {"type": "choice", "values": ["sgd", "adam", "momentum"]},
                   "batch_size": {"type": "choice", "values": [8, 16, 32, 64, 128, 256]},
                   "lr": {"type": "loguniform", "low": 1e-3, "high": 1e-1}}})
    rng = np.random.default_rng(1)
    # momentum has 2 trials only: too few for a within-group correlation
    opts = ["sgd"] * 14 + ["adam"] * 14 + ["momentum"] * 2
    params = [{"optimizer": o, "batch_size": int(rng.choice([8, 16, 32, 64, 128, 256])),
               "lr": float(10 ** rng.uniform(-3, -1))} for o in opts]
    table = _sweep(spec, params, seed=1)
    groups = list(dict.fromkeys(c.group for c in table.correlations if c.group))
    assert "optimizer=sgd" in groups and "optimizer=adam" in groups and "optimizer=momentum" not in groups
    counts = {f"batch_size={b}": sum(p["batch_size"] == b for p in params) for b in (8, 16, 32, 64, 128, 256)}
    assert {g for g in groups if g.startswith("batch_size")} == {g for g, k in counts.items() if k >= 3}
    # the within-group estimate is the overall one restricted to that group
    sgd = [i for i, o in enumerate(opts) if o == "sgd"]
    from scipy import stats

    got = next(c for c in table.correlations if c.group == "optimizer=sgd" and c.metric == "alpha_mean")
    want = stats.spearmanr(table.metrics["alpha_mean"][sgd], table.target_values[sgd]).statistic
    assert got.spearman == pytest.approx(want, abs=1e-12)
    lines = _render(table)
    assert max(map(len, lines)) <= 100
    shown = len(correlation_table(table).columns) - 3
    assert 0 < shown < len(groups)  # some fit, the rest are named in the caption
    caption = " ".join(lines[-6:])
    assert f"{len(groups) - shown} more group column(s)" in caption
    for metric in ("alpha_mean", "alpha_hill", "mp_soft_rank"):
        row = next(ln for ln in lines if ln.lstrip("│ ").startswith(metric))
        cells = [c.strip() for c in row.split("│")[1:-1]]
        assert len(cells) == 3 + shown and all(cells)
        assert not math.isnan(float(cells[1].split()[0]))
