"""Reproduction 4, phases over training time (MIT 18.338 report on LeNet5 and NanoGPT): the shipped
``phases_over_time_lenet5.yaml`` and ``phases_over_time_chargpt.yaml``. ``reduced``: 128 LeNet5
steps (seed 0) and a 1-block, 64-wide GPT for 150 steps, trained here without Ray; ``full`` (slow):
the shipped specs (three LeNet5 seeds over 30 epochs; a 2-block, 128-wide GPT) through ``htsweep run``.

Trends asserted (seed 0, measured numbers in the comments): LeNet5's FC1 starts random-like (no
spikes, λmax/λ+ ≈ 1), passes through a near-edge stage and ends far past the edge with several
spikes, λmax/λ+ growing with the step; FC2 leaves the bulk later than FC1. char-GPT: every matrix
leaves the bulk; the query/key projections end furthest out, value/output projections leave last.
(Not asserted because it does not hold here: the report's "attention layers leave random-like
faster than feed-forward ones" — the feed-forward matrices leave first, see docs/reproductions.md.)
"""

from __future__ import annotations

import pytest

from benchmarks.repro_measures import departure_step, ratio, spearman, timeline
from benchmarks.repro_records import run_grid, spec_setup

SIZES = ["reduced", pytest.param("full", marks=[pytest.mark.slow, pytest.mark.integration])]


@pytest.fixture(scope="module", params=SIZES)
def lenet(request, full_sweep):
    if request.param == "full":
        return full_sweep("phases_over_time_lenet5", esd_steps="none")
    base, points = spec_setup("phases_over_time_lenet5", train={"epochs": None, "steps": 128},
                              grid={"seed": [0]})
    return run_grid(base, points)


def test_lenet_fc1_goes_from_random_like_past_the_edge(lenet):
    # λmax/λ+ every 16 steps: 0.98 0.99 1.09 1.58 2.42 3.22 3.78 4.10 4.24; spikes 0 0 1 5 7 7 8 9 9
    for record in lenet:
        r = timeline(record, ["fc1"])["fc1"]
        assert r.iloc[0] < 1.1 and record.first("n_spikes/fc1") == 0
        assert spearman(r.index, r.to_numpy()) >= 0.9
        assert ((r > 1.1) & (r < 2.0)).any()  # an intermediate, near-edge stage
        assert r.iloc[-1] > 2.0 and record.last("n_spikes/fc1") >= 3


def test_lenet_fc2_leaves_the_bulk_after_fc1(lenet):
    # λmax/λ+ reaches 1.3 at step 48 (fc1) and 96 (fc2)
    for record in lenet:
        assert departure_step(record, "fc2", 1.3) > departure_step(record, "fc1", 1.3)


@pytest.fixture(scope="module", params=SIZES)
def gpt(request, full_sweep):
    if request.param == "full":
        return full_sweep("phases_over_time_chargpt", esd_steps="none")[0]
    base, points = spec_setup("phases_over_time_chargpt",
                              train={"steps": 150, "model_kwargs": {"n_embd": 64, "n_layer": 1},
                                     "eval_samples": 128},
                              grid={"seed": [0]})
    return run_grid(base, points)[0]


def test_gpt_matrices_leave_the_bulk_query_key_furthest(gpt):
    # λmax/λ+ at steps 0 / 25 / 150: q 0.92 1.07 6.08, k 0.93 1.06 5.51, v 1.02 1.00 1.42,
    # out 0.87 0.87 1.36, fc 0.94 1.47 1.78, proj 0.94 1.56 1.78
    attn = [f"blocks.0.attn.{p}_proj" for p in ("q", "k", "v", "out")]
    ff = ["blocks.0.fc", "blocks.0.proj"]
    for layer in [*attn, *ff]:
        assert ratio(gpt, layer, 0) < 1.15, layer
        assert ratio(gpt, layer) > 1.2, layer
    qk = min(ratio(gpt, layer) for layer in attn[:2])
    assert qk > 1.5 * max(ratio(gpt, layer) for layer in ff)
    # departure (λmax/λ+ ≥ 1.3): q, k at 50; v at 125, out at 150
    assert min(departure_step(gpt, layer, 1.3) for layer in attn[2:]) > \
        max(departure_step(gpt, layer, 1.3) for layer in attn[:2])
