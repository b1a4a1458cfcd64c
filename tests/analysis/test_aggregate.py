"""Model-level aggregation of per-layer rows: model_phase, spectral_aggregates, is_spectral_key."""

from __future__ import annotations

import math

import numpy as np
import pytest

from htsweep.analysis.aggregate import is_spectral_key, model_phase, spectral_aggregates


def _row(name, kind, phase, alpha, **kw):
    return {"name": name, "kind": kind, "phase": phase, "alpha": alpha, "alpha_hill": alpha + 0.5,
            "alpha_weighted": 2 * alpha, "stable_rank": 10.0, "mp_soft_rank": 0.5, "n_spikes": 1, **kw}


def test_model_phase_majority_of_dense_layers():
    rows = [_row("conv1", "conv2d", "heavy_tailed", 2.0), _row("fc1", "linear", "bulk_decay", 4.0),
            _row("fc2", "linear", "bulk_decay", 4.5), _row("fc3", "linear", "random_like", 7.0)]
    assert model_phase(rows) == "bulk_decay"  # the conv layer does not vote


def test_model_phase_ties_go_to_the_later_phase():
    rows = [_row("fc1", "linear", "random_like", 6.0), _row("fc2", "linear", "heavy_tailed", 3.0)]
    assert model_phase(rows) == "heavy_tailed"


def test_model_phase_without_linear_layers_uses_all():
    rows = [_row("conv1", "conv2d", "bleeding_out", 5.0), _row("emb", "embedding", "bleeding_out", 5.0)]
    assert model_phase(rows) == "bleeding_out"
    assert model_phase([]) == ""


def test_layers_too_small_to_fit_do_not_vote():
    rows = [_row("fc1", "linear", "heavy_tailed", 3.0, m=64), _row("fc2", "linear", "random_like", math.nan,
            m=2, warning="too small for a power-law fit (M=2 < 32)"), _row("fc3", "linear", "random_like",
            math.nan, m=2, warning="too small for a power-law fit (M=2 < 32)")]
    assert model_phase(rows) == "heavy_tailed"
    only_small = [dict(r, kind="linear") for r in rows[1:]]
    assert model_phase(only_small) == "random_like"  # with nothing fitted, the small layers still decide
    assert math.isnan(spectral_aggregates(only_small)["alpha_last"])


def test_rank_collapsed_layers_vote_although_their_fit_failed():
    # Real rows: two 256x128 dense layers of rank 8 and one random layer. The collapsed layers'
    # power-law fits fail (a warning), but their phase must still decide the model's phase.
    from htsweep.analysis.analyze import analyze_matrix

    rng = np.random.default_rng(0)
    low_rank = [rng.standard_normal((256, 8)) @ rng.standard_normal((8, 128)) for _ in range(2)]
    rows = [dict(analyze_matrix(W, name=f"fc{i}", device="cpu"), kind="linear") for i, W in enumerate(low_rank)]
    rows.append(dict(analyze_matrix(rng.standard_normal((256, 128)), name="fc9", device="cpu"), kind="linear"))
    assert [r["phase"] for r in rows] == ["rank_collapse", "rank_collapse", "random_like"]
    assert model_phase(rows) == "rank_collapse"


def test_spectral_aggregates():
    from htsweep.analysis.phases import PHASE_CODES

    rows = [_row("conv1", "conv2d", "heavy_tailed", 2.0), _row("fc1", "linear", "bulk_decay", 4.0),
            _row("fc2", "linear", "bulk_decay", math.nan)]
    agg = spectral_aggregates(rows)
    assert agg["alpha_mean"] == pytest.approx(3.0)  # NaN skipped
    assert agg["alpha_median"] == pytest.approx(3.0)
    assert agg["alpha_weighted_mean"] == pytest.approx(6.0)
    assert agg["alpha_last"] == 4.0  # fc2 (the last linear layer) has no fit, so fc1 stands in
    assert agg["frac_heavy_tailed"] == pytest.approx(1 / 3)
    assert agg["phase_code"] == PHASE_CODES["bulk_decay"]
    assert agg["alpha/fc1"] == 4.0 and agg["alpha_hill/conv1"] == 2.5 and agg["n_spikes/fc2"] == 1.0
    assert agg["phase_code/conv1"] == PHASE_CODES["heavy_tailed"]
    assert {"stable_rank/fc1", "mp_soft_rank/fc2", "effective_rank/fc1", "stable_rank_mean",
            "mp_soft_rank_mean"} <= set(agg)
    assert all(isinstance(v, float) for v in agg.values())
    assert math.isnan(spectral_aggregates([])["alpha_mean"])


def test_is_spectral_key_matches_exactly_what_spectral_aggregates_produces():
    rows = [_row("fc1", "linear", "heavy_tailed", 3.0, m=64), _row("block.0/fc2", "linear", "bulk_decay", 4.0, m=64)]
    assert all(is_spectral_key(k) for k in spectral_aggregates(rows))
    for other in ("test_acc", "train_loss", "lr", "step", "sim", "alpha", "stable_rank"):
        assert not is_spectral_key(other), other
