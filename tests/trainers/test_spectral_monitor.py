"""SpectralMonitor and SpectralSnapshot (the aggregation math is tested in tests/analysis/test_aggregate.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from trainers_testutils import Recorder, boring_data

from htsweep.trainers.monitor import SpectralMonitor, SpectralSnapshot
from htsweep.trainers.train import TrainConfig, Trainer


def _row(name, kind, phase, alpha, **kw):
    return {"name": name, "kind": kind, "phase": phase, "alpha": alpha, "alpha_hill": alpha + 0.5,
            "alpha_weighted": 2 * alpha, "stable_rank": 10.0, "mp_soft_rank": 0.5, "n_spikes": 1, **kw}


def test_snapshot_helpers():
    snap = SpectralSnapshot(3, [{**_row("fc1", "linear", "random_like", 5.0), "eigs": np.arange(3.0)}])
    assert snap.names == ["fc1"] and snap.layer("fc1")["alpha"] == 5.0
    assert list(snap.eigs()["fc1"]) == [0.0, 1.0, 2.0]
    assert "eigs" not in snap.to_frame().columns
    with pytest.raises(KeyError, match="no layer 'fc9' in the snapshot; layers: fc1"):
        snap.layer("fc9")


class _FakeAnalyzer:
    def __init__(self):
        self.calls = []

    def __call__(self, layers, step):
        self.calls.append((step, [lm.name for lm in layers]))
        return [_row(lm.name, lm.kind, "random_like", 5.0, eigs=np.ones(lm.m)) for lm in layers]


def test_monitor_with_a_custom_analyzer_feeds_on_report():
    fake, rec = _FakeAnalyzer(), Recorder()
    mon = SpectralMonitor(fake)
    cfg = TrainConfig(model="mlp3", dataset="digits", steps=4, batch_size=32, eval_every=2, spectral_every=2,
                      model_kwargs={"width": 8})
    trainer = Trainer(cfg, [mon, rec], data=boring_data())
    trainer.fit()
    assert fake.calls == [(2, ["fc1", "fc2", "fc3", "fc4"]), (4, ["fc1", "fc2", "fc3", "fc4"])]
    assert isinstance(trainer.spectral, SpectralSnapshot) and trainer.spectral.step == 4
    assert rec.reports[-1]["alpha/fc2"] == 5.0 and rec.reports[-1]["alpha_mean"] == 5.0
    assert mon.n_calls == 2 and mon.state_dict()["last_step"] == 4


def test_monitor_argument_errors():
    with pytest.raises(ValueError, match="conv must be 'reshape' or 'kernel', got 'flat'"):
        SpectralMonitor(conv="flat")
    with pytest.raises(TypeError, match="analyzer must be callable"):
        SpectralMonitor(analyzer=3)


def test_default_in_process_analyzer_on_a_real_model():
    mon = SpectralMonitor()
    cfg = TrainConfig(model="lenet5", dataset="digits", steps=3, batch_size=32, eval_every=0, spectral_every=0,
                      data_kwargs={"max_train": 200})
    out = Trainer(cfg, [mon]).fit()
    names = mon.last.names
    assert names == ["conv1", "conv2", "fc1", "fc2", "fc3"]
    assert mon.last.layer("fc1")["eigs"].shape == (120,)
    for key in ("alpha_mean", "phase_code", "alpha/fc1", "phase_code/fc2", "stable_rank_mean"):
        assert key in out, key
    assert 0 <= out["phase_code"] <= 5


class _PoisonWeights(Recorder):
    """Writes an Inf into fc2's weights after step 2 (the loss of step 2 was computed before: finite)."""

    def __init__(self) -> None:
        super().__init__()
        self.losses: list[float] = []

    def on_train_step_end(self, trainer, model, step, loss):
        super().on_train_step_end(trainer, model, step, loss)
        self.losses.append(loss)
        if step == 2:
            import torch

            with torch.no_grad():
                model.fc2.weight[0, 0] = float("inf")


def test_non_finite_weights_at_a_monitoring_step_are_a_divergence():
    fake, poison = _FakeAnalyzer(), _PoisonWeights()
    cfg = TrainConfig(model="mlp3", dataset="digits", steps=6, batch_size=32, eval_every=2, spectral_every=2,
                      model_kwargs={"width": 8})
    trainer = Trainer(cfg, [SpectralMonitor(fake), poison], data=boring_data())
    # The same exception a non-finite loss raises, so the sweep records the same "diverged" outcome.
    with pytest.raises(FloatingPointError, match=r"^non-finite weights in layer fc2 at step 2$"):
        trainer.fit()
    assert fake.calls == []  # the analyzer never saw the Inf
    assert poison.losses and all(math.isfinite(v) for v in poison.losses)
    assert poison.calls[-1] == ("on_exception", 2) and isinstance(poison.exceptions[0], FloatingPointError)
