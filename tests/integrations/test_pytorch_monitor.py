"""htsweep.SpectralMonitor in a plain PyTorch loop: the same rows as analyze_model, logged to MLflow."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from integrations_testutils import metric_steps
from numpy.testing import assert_allclose

import htsweep
from htsweep.integrations.pytorch import SpectralMonitor


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(40, 96), torch.nn.ReLU(), torch.nn.Linear(96, 64), torch.nn.ReLU(),
                               torch.nn.Linear(64, 3))


def _train(model: torch.nn.Module, steps: int, monitor: SpectralMonitor, every: int) -> list:
    rng = torch.Generator().manual_seed(1)
    x = torch.randn(256, 40, generator=rng)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0).long()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    frames = []
    for step in range(1, steps + 1):
        idx = torch.randint(0, 256, (32,), generator=rng)
        loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % every == 0:
            frames.append(monitor(model, step))
    return frames


def test_rows_match_analyze_model_in_float64():
    model = _model()
    df = SpectralMonitor(device="cpu")(model, 0)
    ref = htsweep.analyze_model(model, device="cpu", precision="float64")
    assert list(df["name"]) == list(ref["name"]) == ["0", "2", "4"]
    assert list(df["phase"]) == list(ref["phase"])
    finite = ref["alpha"].notna()
    assert finite.sum() == 2  # the 3-class head has too few eigenvalues to fit
    assert_allclose(df.loc[finite, "alpha"], ref.loc[finite, "alpha"], rtol=1e-9)


def test_logs_per_layer_alpha_and_phase_tags_to_the_active_run(mlflow_uri):
    import mlflow

    monitor = SpectralMonitor(mlflow=True, device="cpu")
    with mlflow.start_run() as run:
        frames = _train(_model(), 6, monitor, every=3)
    client = mlflow.MlflowClient(mlflow_uri)
    logged = client.get_run(run.info.run_id).data
    assert metric_steps(client, run.info.run_id, "alpha/0") == [3, 6]
    assert metric_steps(client, run.info.run_id, "phase_code/2") == [3, 6]
    last = frames[-1].set_index("name")
    assert math.isclose(logged.metrics["alpha/0"], last.loc["0", "alpha"], rel_tol=1e-12)
    assert logged.tags["phase.0"] == last.loc["0", "phase"] and logged.tags["phase_step"] == "6"
    assert logged.tags["phase"] in htsweep.PHASES
    assert monitor.metrics()["alpha/2"] == pytest.approx(last.loc["2", "alpha"])
    assert set(monitor.last.eigs()) == {"0", "2", "4"} and np.all(monitor.last.eigs()["0"] >= 0)


def test_bad_input_is_one_line():
    with pytest.raises(TypeError, match="spectral monitoring needs a torch.nn.Module, got dict"):
        SpectralMonitor()({"w": torch.ones(3, 3)}, 0)
    with pytest.raises(RuntimeError, match=r"no active MLflow run .*mlflow.start_run\(\)"):
        SpectralMonitor(mlflow=True, device="cpu")(_model(), 0)
    model = _model()
    with torch.no_grad():
        model[2].weight[0, 0] = float("nan")
    with pytest.raises(FloatingPointError, match="non-finite weights in layer 2 at step 7"):
        SpectralMonitor(device="cpu")(model, 7)


def test_farms_and_tail_law_options_reach_the_rows_and_the_run(mlflow_uri):
    """The opt-in metrics of analyze_model are the monitor's too: FARMS with the chosen window count
    (equal to calling analysis.farms on the same layers) and the tail-law verdict, logged per layer."""
    import mlflow

    from htsweep.analysis.analyze import MIN_FIT_EIGS, MONITOR_PRECISION
    from htsweep.analysis.farms import farms
    from htsweep.analysis.layers import extract_layers

    model = _model()
    monitor = SpectralMonitor(mlflow=True, device="cpu", farms=True, farms_windows=2, tail_law=True)
    with mlflow.start_run() as run:
        df = monitor(model, 5)
    direct = farms(extract_layers(model), precision=MONITOR_PRECISION, n_windows=2, min_eigs=MIN_FIT_EIGS)
    assert direct[0].n_windows == 2  # 96×40: two row offsets of a 40×40 window
    assert_allclose(df["alpha_farms"][:2], [f.alpha for f in direct[:2]], rtol=1e-12)
    assert_allclose(df["alpha_hill_farms"][:2], [f.alpha_hill for f in direct[:2]], rtol=1e-12)
    assert math.isnan(df["alpha_farms"][2])  # the 3-wide head has too few eigenvalues
    assert set(df["tail_law"][:2]) <= {"power_law", "truncated_power_law", "lognormal", "undecided"}
    logged = mlflow.MlflowClient(mlflow_uri).get_run(run.info.run_id).data
    assert math.isclose(logged.metrics["alpha_farms/0"], df["alpha_farms"][0], rel_tol=1e-12)
    assert logged.tags["tail_law.0"] == df["tail_law"][0]
    with pytest.raises(ValueError, match="farms_windows"):
        SpectralMonitor(farms=True, farms_windows=0)
