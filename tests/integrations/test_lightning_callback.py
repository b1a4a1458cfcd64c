"""SpectralCallback in a real Lightning Trainer on CPU: α and phase per layer reach MLflow and CSV."""

from __future__ import annotations

import csv
import math

import pytest
import torch
from integrations_testutils import metric_steps

pl = pytest.importorskip("lightning.pytorch")

from htsweep.analysis.phases import CLASSIFIER_VERSION  # noqa: E402
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
    callback = SpectralCallback(every_n_steps=3, device="cpu", farms=True, farms_windows=2)
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
    assert data.tags["phase_classifier"] == CLASSIFIER_VERSION  # which classifier labelled the run
    assert metric_steps(client, ml.run_id, "alpha_farms/net.0") == [3, 6, 7]  # the callback's farms=True
    assert math.isclose(data.metrics["alpha_farms/net.0"], last["alpha_farms"], rel_tol=1e-12)
    with open(tmp_path / "lightning_logs" / "version_0" / "metrics.csv") as f:
        rows = [r for r in csv.DictReader(f) if r.get("alpha/net.0")]
    assert [int(r["step"]) for r in rows] == [3, 6, 7]
    assert math.isclose(float(rows[-1]["alpha/net.0"]), last["alpha"], rel_tol=1e-6)
    assert callback.state_dict() == {"last_step": 7}


def test_every_n_steps_must_be_positive():
    with pytest.raises(ValueError, match="every_n_steps must be a positive integer, got 0"):
        SpectralCallback(every_n_steps=0)


def test_inside_a_trial_it_monitors_and_reports_through_the_session(tmp_path, _store):
    """The trial's side without Ray: the sweep's session with its real MLflow logger; the same loop
    through a real local Ray/Tune sweep is ``tests/sweeps/test_function_trainable.py``'s slow test."""
    import mlflow

    from htsweep.services.tracking import TrackingConfig
    from htsweep.sweeps.session import TrialSession
    from htsweep.sweeps.spec import ObjectiveSpec
    from htsweep.sweeps.trial_logger import MlflowTrialLogger
    from htsweep.trainers.monitor import InProcessAnalyzer, SpectralMonitor
    from tests.sweeps.own_loops import lightning_train

    class _Tune:  # what the sweep's TuneReporter would send to Tune
        checkpoint = False

        def __init__(self):
            self.reports = []

        def on_report(self, trainer, model, step, metrics):
            self.reports.append((step, dict(metrics)))

    tracking = TrackingConfig(_store, experiment="lightning-in-trial", artifacts=str(tmp_path / "art"),
                              buffer_dir=str(tmp_path / "buf"))
    logger = MlflowTrialLogger(tracking, trial_id="lt0")
    config = {"steps": 60, "monitor_every": 20, "batch_size": 32, "width": 48, "lr": 0.1, "seed": 0}
    session = TrialSession(config, objective=ObjectiveSpec(target_alpha=2.0), trial_id="lt0", trial_dir=tmp_path,
                           device="cpu", monitor=SpectralMonitor(InProcessAnalyzer(device="cpu")), logger=logger,
                           reporter=(tune := _Tune()))
    logger.on_fit_start(session.trainer_view, None)
    with session:
        lightning_train(config, session)
    session.finish()
    logger.on_fit_end(session.trainer_view, None)

    assert [step for step, _ in tune.reports] == [20, 40, 60]
    last = session.spectral.layer("net.0")
    assert session.spectral.step == 60 and tune.reports[-1][1]["alpha/net.0"] == last["alpha"]
    assert 0.1 < tune.reports[-1][1]["test_acc"] <= 1.0 and "alpha_mean" in tune.reports[-1][1]
    client = mlflow.MlflowClient(_store)
    run = client.get_run(logger.run_id)
    for key in ("alpha/net.0", "alpha/net.4", "phase_code/net.2", "alpha_mean", "test_acc"):
        assert metric_steps(client, logger.run_id, key) == [20, 40, 60], key
    assert math.isclose(run.data.metrics["alpha/net.0"], last["alpha"], rel_tol=1e-12)
    assert run.data.tags["phase.net.0"] == last["phase"] and run.data.tags["phase_step"] == "60"
    assert run.info.status == "FINISHED"
