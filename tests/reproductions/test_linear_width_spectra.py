"""Reproduction 5, linear-width spectra (Wang et al.): the shipped ``linear_width_gd.yaml`` and
``linear_width_adam.yaml``. ``reduced``: n = 800, d = 200, h = 300 and 100 steps, trained here
without Ray; ``full`` (slow): the shipped specs (n = 2000, d = 1000, h = 1500, 200 steps) through
``htsweep run``.

Trends asserted: small-lr GD fits the data while the ESD bulk stays put (small KS distance between
the initial and the final ESD); the largest GD lr grows outliers far past the edge; Adam at its
largest lr grows a heavy tail (PL_Alpha_KS from > 6 to below half of that and below 5, PL_Alpha_Hill
down). At the reduced size the GD outlier is aligned with the teacher (``sim`` > 0.3); at the full
size it is not (GD jumps from no outlier at η = 1000 to 196 at η = 3000, ``sim`` 0.11; the single
teacher-aligned outlier shows up with small-lr Adam instead), so that check runs reduced only —
see docs/reproductions.md.
"""

from __future__ import annotations

import pytest

from benchmarks.repro_measures import bulk_ks, ratio
from benchmarks.repro_records import run_grid, spec_setup

REDUCED = {"steps": 100, "eval_every": 100, "spectral_every": 100,
           "model_kwargs": {"width": 300}, "data_kwargs": {"n": 800, "n_test": 200, "d": 200}}


SIZES = ["reduced", pytest.param("full", marks=[pytest.mark.slow, pytest.mark.integration])]


@pytest.fixture(scope="module", params=SIZES)
def gd(request, full_sweep):
    if request.param == "full":
        records = full_sweep("linear_width_gd")
    else:
        base, points = spec_setup("linear_width_gd", train=REDUCED, grid={"lr": [10.0, 3000.0]})
        records = run_grid(base, points)
    return {r.params["lr"]: r for r in records}


@pytest.fixture(scope="module", params=SIZES)
def adam(request, full_sweep):
    if request.param == "full":
        records = full_sweep("linear_width_adam")
    else:
        base, points = spec_setup("linear_width_adam", train=REDUCED, grid={"lr": [0.1]})
        records = run_grid(base, points)
    return {r.params["lr"]: r for r in records}


def test_small_lr_gd_keeps_the_bulk(gd):
    # train MSE 1.39 -> 0.40 while KS(init, final) = 0.010, λmax/λ+ 0.98
    r = gd[10.0]
    assert r.last("train_loss") < 0.5 * r.first("train_loss")
    assert bulk_ks(r, "fc1") < 0.05
    assert ratio(r, "fc1") < 1.1 and r.last("n_spikes/fc1") == 0


def test_large_lr_gd_grows_outliers_far_past_the_edge(gd):
    # reduced (η = 3000): λmax/λ+ 26.0, KS 0.70; full: λmax/λ+ 10.1, 196 spikes, KS 0.29 vs 0.002
    r = gd[max(gd)]
    assert ratio(r, "fc1") > 3 and r.last("n_spikes/fc1") >= 1
    assert bulk_ks(r, "fc1") > 4 * bulk_ks(gd[10.0], "fc1")


def test_large_lr_gd_outlier_aligns_with_the_teacher_at_reduced_size(gd, request):
    if request.node.callspec.params["gd"] == "full":
        pytest.skip("not reproduced at the full size (sim 0.029 -> 0.112): see the module docstring")
    # sim 0.008 -> 0.44
    r = gd[max(gd)]
    assert r.last("sim") > 0.3 > 0.05 > r.first("sim")


def test_adam_grows_a_heavy_tail(adam):
    # reduced (η = 0.1): PL_Alpha_KS 7.57 -> 3.25, PL_Alpha_Hill 2.51 -> 2.39;
    # full (η = 1): 13.7 -> 4.3 and 2.46 -> 1.79; train MSE -> 0 at both
    r = adam[max(adam)]
    assert r.first("alpha/fc1") > 6 and r.last("alpha/fc1") < min(5.0, 0.5 * r.first("alpha/fc1"))
    assert r.last("alpha_hill/fc1") < r.first("alpha_hill/fc1")
    assert r.last("train_loss") < 0.1 * r.first("train_loss")
