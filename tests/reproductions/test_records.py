"""Trial records: a trial read back from a real sweep's MLflow store equals the same config trained
in-process, so the trend measures mean the same thing on reduced (in-process) and full (sweep) runs."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_allclose

from benchmarks.repro_records import grid_points, records_from_sweep, run_trial, spec_setup

pytestmark = pytest.mark.timeout(600)


def _spec(name: str) -> dict:
    return {
        "name": name, "model": "mlp3", "dataset": "digits",
        "train": {"steps": 30, "lr": 0.1, "batch_size": 32, "optimizer": "sgd", "eval_at_start": True,
                  "model_kwargs": {"width": 48}, "threads": 1},
        "search": {"seed": {"type": "grid", "values": [3]}},
        "monitor": {"eval_every": 10, "spectral_every": 15},
        "num_samples": 1, "max_concurrent_trials": 1, "seed": 0,
    }


@pytest.mark.integration
def test_sweep_records_equal_in_process_records(tmp_path, ray_local, monkeypatch):
    from htsweep.sweeps.spec import SweepSpec
    from htsweep.sweeps.tune_runner import run_sweep

    for var in ("MLFLOW_TRACKING_URI", "HTSWEEP_TRACKING_URI"):
        monkeypatch.delenv(var, raising=False)
    spec = _spec("repro-records")
    run_sweep(SweepSpec.from_dict(spec), workdir=tmp_path / "sweep", quiet=True)
    [swept] = records_from_sweep(tmp_path / "sweep")

    base = {**spec["train"], "model": "mlp3", "dataset": "digits", "eval_every": 10, "spectral_every": 15}
    here = run_trial({**base, "seed": 3}, {"seed": 3})
    assert swept.params == here.params == {"seed": 3}
    # evaluation every 10 steps, monitoring every 15 and at the end, both at step 0
    assert list(swept.history.index) == list(here.history.index) == [0, 10, 15, 20, 30]
    assert swept.steps == here.steps == [0, 15, 30]
    # the sweep adds its objective's short metrics (services.tracking) to what the trainer reports
    assert set(swept.history.columns) - set(here.history.columns) == {"alpha", "alpha_error", "objective"}
    assert set(here.history.columns) <= set(swept.history.columns)
    assert {"effective_rank/fc2", "mp_soft_rank/fc1", "test_acc"} <= set(here.history.columns)
    for key in here.history.columns:  # same training (CPU, one thread), same analysis (actor vs here)
        assert_allclose(swept.history[key].to_numpy(float), here.history[key].to_numpy(float), rtol=1e-6,
                        equal_nan=True, err_msg=key)
    # spectral metrics only where they were measured (step 10 and 20 are evaluation-only)
    assert np.isnan(here.history.loc[10, "alpha/fc2"]) and np.isfinite(here.history.loc[15, "alpha/fc2"])
    for step in here.steps:
        for layer, eigs in here.esds[step].items():
            assert_allclose(swept.esds[step][layer], eigs, rtol=1e-9, atol=1e-12)
    assert swept.layers["fc2"]["n"] == here.layers["fc2"]["n"] == 48
    assert_allclose(swept.singular_values("fc1")[0] ** 2, 64 * swept.esd("fc1")[-1], rtol=1e-12)


def test_spec_setup_reduces_a_shipped_spec():
    base, points = spec_setup("batch_size_phases_mnist5k", train={"epochs": 2, "model_kwargs": {"width": 16}},
                              grid={"batch_size": [500, 8]})
    assert base["model"] == "mlp3" and base["lr"] == 0.01 and base["optimizer"] == "momentum"
    assert base["epochs"] == 2 and base["model_kwargs"] == {"width": 16} and base["seed"] == 0
    assert points == [{"batch_size": 500}, {"batch_size": 8}]
    assert grid_points({"a": [1, 2], "b": ["x", "y"]}) == [{"a": 1, "b": "x"}, {"a": 1, "b": "y"},
                                                            {"a": 2, "b": "x"}, {"a": 2, "b": "y"}]
    with pytest.raises(ValueError, match="spec 'batch_size_phases_mnist5k' has no grid domain lr; grid: batch_size"):
        spec_setup("batch_size_phases_mnist5k", grid={"lr": [0.1]})


def test_record_accessors_name_what_is_missing():
    record = run_trial({"model": "mlp3", "dataset": "digits", "steps": 2, "batch_size": 64, "eval_every": 0,
                        "spectral_every": 0, "model_kwargs": {"width": 40}, "threads": 1})
    with pytest.raises(KeyError, match="metric 'sim' was not recorded; recorded: .*test_acc"):
        record.series("sim")
    with pytest.raises(KeyError, match=r"no ESD at step 1; monitoring steps: \[2\]"):
        record.esd("fc1", 1)
