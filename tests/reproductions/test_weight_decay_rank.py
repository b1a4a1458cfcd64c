"""Reproduction 3, weight decay → low rank (Yunis et al., "spectral dynamics of weights"): the
shipped ``weight_decay_rank.yaml`` (MLP3 on MNIST-5k, b = 32, momentum SGD lr 0.01, weight decay
the only thing varied). ``reduced``: width 128, 3 epochs, four weight decays, trained here without
Ray; ``full`` (slow): the shipped spec through ``htsweep run``.

Trends asserted: effective rank falls during training for every moderate weight decay, falls
further with more weight decay, and the strongest weight decay collapses the norm.
"""

from __future__ import annotations

import pytest

from benchmarks.repro_measures import log_frobenius
from benchmarks.repro_records import run_grid, spec_setup

LAYERS = ("fc1", "fc2", "fc3")
MODERATE = (0.0, 0.03, 0.1)
COLLAPSE = 0.3


@pytest.fixture(scope="module", params=["reduced", pytest.param("full", marks=[pytest.mark.slow, pytest.mark.integration])])
def records(request, full_sweep):
    if request.param == "full":
        return {r.params["weight_decay"]: r for r in full_sweep("weight_decay_rank", esd_steps="all")}
    base, points = spec_setup("weight_decay_rank", train={"epochs": 3, "model_kwargs": {"width": 128}},
                              grid={"weight_decay": [*MODERATE, COLLAPSE]})
    return {r.params["weight_decay"]: r for r in run_grid(base, points)}


@pytest.mark.parametrize("layer", LAYERS)
def test_effective_rank_falls_in_training_and_with_weight_decay(records, layer):
    # FC2 effective rank 103.2 at init -> 100.5 (wd 0), 85.4 (0.03), 14.3 (0.1)
    key = f"effective_rank/{layer}"
    final = [records[wd].last(key) for wd in MODERATE]
    for wd in MODERATE:
        assert records[wd].last(key) < records[wd].first(key), wd
    assert final[0] > final[1] > final[2]
    assert final[2] < 0.5 * final[0]


def test_strong_weight_decay_collapses_the_norm(records):
    # log10 ||W||_F^2: 1.63 at init -> 0.56 (wd 0.1), -14.6 (wd 0.3); test accuracy 0.79 / 0.10
    for layer in LAYERS:
        start, end = log_frobenius(records[COLLAPSE], layer, 0), log_frobenius(records[COLLAPSE], layer)
        assert end < start - 3, layer  # ||W||_F^2 shrinks by more than 1000x
        assert end < log_frobenius(records[0.1], layer) - 2
    assert records[COLLAPSE].last("test_acc") < 0.5 < records[0.1].last("test_acc")
