"""SpectralCallback in a real Lightning Trainer on CPU: α and phase per layer reach MLflow and CSV."""

from __future__ import annotations

import csv
import math

import pytest
import torch
from integrations_testutils import metric_steps

pl = pytest.importorskip("lightning.pytorch")

from htsweep.integrations.lightning import SpectralCallback  # noqa: E402


class _Boring(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(48, 64), torch.nn.ReLU(), torch.nn.Linear(64, 2))

    def training_step(self, batch, batch_idx):
        x, y = batch
        return torch.nn.functional.cross_entropy(self.net(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _loader():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(128, 48, generator=g)
    data = torch.utils.data.TensorDataset(x, (x[:, 0] > 0).long())
    return torch.utils.data.DataLoader(data, batch_size=16)


def test_alpha_and_phase_per_layer_through_the_trainers_loggers(tmp_path, mlflow_uri):
    import mlflow
    from lightning.pytorch.loggers import CSVLogger, MLFlowLogger

    torch.manual_seed(0)
    ml = MLFlowLogger(experiment_name="lightning", tracking_uri=mlflow_uri)
    callback = SpectralCallback(every_n_steps=3, device="cpu")
    trainer = pl.Trainer(max_steps=7, logger=[ml, CSVLogger(tmp_path)], callbacks=[callback],
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         accelerator="cpu", log_every_n_steps=1)
    trainer.fit(_Boring(), _loader())

    client = mlflow.MlflowClient(mlflow_uri)
    assert metric_steps(client, ml.run_id, "alpha/net.0") == [3, 6, 7]  # every 3 steps and the last
    assert metric_steps(client, ml.run_id, "phase_code/net.2") == [3, 6, 7]
    data = client.get_run(ml.run_id).data
    last = callback.last.layer("net.0")
    assert math.isclose(data.metrics["alpha/net.0"], last["alpha"], rel_tol=1e-12)
    assert data.tags["phase.net.0"] == last["phase"] and data.tags["phase_step"] == "7"
    with open(tmp_path / "lightning_logs" / "version_0" / "metrics.csv") as f:
        rows = [r for r in csv.DictReader(f) if r.get("alpha/net.0")]
    assert [int(r["step"]) for r in rows] == [3, 6, 7]
    assert math.isclose(float(rows[-1]["alpha/net.0"]), last["alpha"], rel_tol=1e-6)
    assert callback.state_dict() == {"last_step": 7}


def test_every_n_steps_must_be_positive():
    with pytest.raises(ValueError, match="every_n_steps must be a positive integer, got 0"):
        SpectralCallback(every_n_steps=0)
