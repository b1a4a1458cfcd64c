"""Nothing is lost when the tracking server goes away: a real ``mlflow server`` stopped mid-run.

Timeline of the trial (reports at steps 10, 20, 30, 40):
step 20  server stopped → steps 20 and 30 are journaled on disk, training goes on;
step 40  server restarted (same port) → the trial's next write flushes the journal in order.
(A journal left behind when a trial ends during an outage is sent by ``flush_buffers``; that path
is tested against a sqlite store in ``test_buffer.py``, sparing a third server start here.)
"""

from __future__ import annotations

import os

import pytest

mlflow = pytest.importorskip("mlflow")

from htsweep.analysis.aggregate import model_phase  # noqa: E402
from htsweep.services.mlflow_server import start_server  # noqa: E402
from htsweep.services.tracking import TrackingConfig  # noqa: E402
from htsweep.sweeps.trial_logger import MlflowTrialLogger  # noqa: E402
from htsweep.trainers.callbacks import Callback  # noqa: E402
from htsweep.trainers.monitor import SpectralMonitor  # noqa: E402
from htsweep.trainers.train import Trainer  # noqa: E402


class _Outage(Callback):
    """Stops/restarts the real server at fixed points; runs before the logger's hooks."""

    def __init__(self, holder, logger):
        self.holder, self.logger, self.pending_seen = holder, logger, []

    def on_report(self, trainer, model, step, metrics):
        if step == 20:
            self.holder["server"].stop()
        elif step == 40:
            self.pending_seen.append(self.logger.pending)
            self.holder["server"] = start_server(self.holder["workdir"], port=self.holder["server"].port)


@pytest.mark.integration
def test_outage_buffers_to_disk_and_flushes_when_server_returns(tmp_path, tiny_train_config):
    workdir = tmp_path / "sweep"
    server = start_server(workdir)
    holder = {"server": server, "workdir": workdir}
    try:
        cfg = TrackingConfig(server.url, experiment="outage", buffer_dir=str(tmp_path / "buf"),
                             retry_interval=0.2, flush_timeout=1.0, http_timeout=3.0)
        logger = MlflowTrialLogger(cfg, trial_id="trial_o", params={"lr": 0.05})
        outage = _Outage(holder, logger)
        trainer = Trainer(tiny_train_config(steps=40), callbacks=[SpectralMonitor(), outage, logger])
        trainer.fit()  # the outage never fails the trial

        assert outage.pending_seen[0] >= 2  # steps 20 and 30 (metrics + npz) waited on disk
        assert logger.pending == 0 and not (tmp_path / "buf" / "trial_o.jsonl").exists()
        assert logger._buffer.n_buffered >= 2

        client = mlflow.MlflowClient(holder["server"].url)
        run = client.get_run(logger.run_id)
        assert run.info.status == "FINISHED"
        assert run.data.params["lr"] == "0.05"
        assert run.data.tags["phase"] == model_phase(trainer.spectral.rows)
        layer = trainer.spectral.rows[0]["name"]
        for key in ("alpha_mean", f"alpha/{layer}", "test_acc", "train_loss"):
            assert sorted(m.step for m in client.get_metric_history(logger.run_id, key)) == [10, 20, 30, 40], key
        listed = {a.path for a in client.list_artifacts(logger.run_id, "esd")}
        assert {f"esd/step_{s}.npz" for s in (10, 20, 30, 40)} <= listed and "esd/final" in listed
        assert "spectral_summary.json" in {a.path for a in client.list_artifacts(logger.run_id)}
        assert not (tmp_path / "buf" / "trial_o.rejected.jsonl").exists()
    finally:
        pgid = holder["server"].process.pid
        holder["server"].stop()
        with pytest.raises(ProcessLookupError):  # the whole process group is gone
            os.killpg(pgid, 0)
