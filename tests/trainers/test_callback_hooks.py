"""Hook order, the single dispatcher, exceptions, signalling and callback state (Lightning style)."""

from __future__ import annotations

import math

import pytest
from trainers_testutils import HOOKS, Recorder, boring_data

from htsweep.trainers.callbacks import Callback, EarlyStopping, MetricsHistory
from htsweep.trainers.train import TrainConfig, Trainer


def _config(**kw):
    base = dict(model="mlp3", dataset="digits", steps=4, batch_size=32, lr=0.01, eval_every=2,
                spectral_every=4, model_kwargs={"width": 8})
    base.update(kw)
    return TrainConfig(**base)


def test_base_callback_hooks_are_documented_noops():
    cb = Callback()
    for name in HOOKS:
        hook = getattr(Callback, name)
        assert hook.__doc__ and "\n" not in hook.__doc__.strip(), name
    assert cb.state_dict() == {} and cb.state_key == "Callback"


def test_hook_order(tmp_path):
    rec = Recorder()
    cfg = _config(checkpoint_dir=str(tmp_path), checkpoint_every=4)
    Trainer(cfg, [rec], data=boring_data()).fit()
    # 64 examples / batch 32 = 2 steps per epoch; eval every 2, monitor every 4 and at the end.
    assert rec.calls == [
        ("on_fit_start", 0),
        ("on_train_step_end", 1),
        ("on_train_step_end", 2), ("on_train_epoch_end", 2), ("on_evaluate", 2), ("on_report", 2),
        ("on_train_step_end", 3),
        ("on_train_step_end", 4), ("on_train_epoch_end", 4), ("on_evaluate", 4), ("on_monitor", 4),
        ("on_report", 4), ("on_checkpoint", 4), ("on_checkpoint", 4),
        ("on_fit_end", 4),
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt", "step_4.pt"]


def test_eval_at_start_and_end_only_cadence():
    rec = Recorder()
    Trainer(_config(steps=3, eval_every=0, spectral_every=None, eval_at_start=True), [rec], data=boring_data()).fit()
    reported = [s for name, s in rec.calls if name == "on_report"]
    monitored = [s for name, s in rec.calls if name == "on_monitor"]
    assert reported == [0, 3] and monitored == [0, 3]


def test_report_is_one_flat_dict():
    rec = Recorder()
    final = Trainer(_config(), [rec], data=boring_data()).fit()
    for key in ("step", "epoch", "lr", "batch_loss", "train_loss", "train_acc", "test_loss", "test_acc", "gen_gap"):
        assert key in final, key
    assert final == rec.reports[-1]
    assert all(isinstance(v, (int, float)) for v in final.values())


def test_hooks_go_through_the_dispatcher():
    trainer = Trainer(_config(), [Recorder()], data=boring_data())
    trainer.fit()
    assert {"Recorder.on_train_step_end", "Recorder.on_report", "Recorder.on_fit_end"} <= set(trainer.hook_seconds)


class _Boom(Callback):
    def on_report(self, trainer, model, step, metrics):
        raise RuntimeError("boom in on_report")


def test_exception_in_a_hook_runs_on_exception_then_propagates():
    rec = Recorder()
    trainer = Trainer(_config(), [rec, _Boom()], data=boring_data())
    with pytest.raises(RuntimeError, match="boom in on_report"):
        trainer.fit()
    assert [n for n, _ in rec.calls].count("on_exception") == 1
    assert rec.calls[-1] == ("on_exception", 2)
    assert "on_fit_end" not in [n for n, _ in rec.calls]


def test_exception_in_the_loop_runs_on_exception():
    rec = Recorder()
    data = boring_data()
    data.x_train[0, 0] = float("nan")
    trainer = Trainer(_config(batch_size="full"), [rec], data=data)
    with pytest.raises(FloatingPointError, match="non-finite training loss"):
        trainer.fit()
    assert len(rec.exceptions) == 1 and isinstance(rec.exceptions[0], FloatingPointError)


class _StopAfter(Callback):
    def __init__(self, step):
        self.step = step

    def on_train_step_end(self, trainer, model, step, loss):
        if step >= self.step:
            trainer.should_stop = True


def test_should_stop_ends_training_with_a_final_report():
    rec = Recorder()
    trainer = Trainer(_config(steps=50, eval_every=10, spectral_every=10), [rec, _StopAfter(3)], data=boring_data())
    out = trainer.fit()
    assert trainer.step == 3 and out["step"] == 3
    assert ("on_monitor", 3) in rec.calls and rec.calls[-1] == ("on_fit_end", 3)


def test_early_stopping_signals():
    es = EarlyStopping("test_loss", mode="max", patience=0)  # "max" of a loss: stops at the 2nd report
    trainer = Trainer(_config(steps=50, eval_every=1, spectral_every=0), [es], data=boring_data())
    trainer.fit()
    assert trainer.step < 50 and es.stopped_step == trainer.step


def test_early_stopping_errors():
    with pytest.raises(ValueError, match="mode must be 'min' or 'max', got 'up'"):
        EarlyStopping(mode="up")
    trainer = Trainer(_config(), [EarlyStopping("val_acc")], data=boring_data())
    with pytest.raises(KeyError, match="metric 'val_acc' is not reported; available: .*test_loss"):
        trainer.fit()


def test_non_callback_rejected():
    with pytest.raises(TypeError, match="must be trainers.callbacks.Callback instances, got dict"):
        Trainer(_config(), [{}], data=boring_data())


def test_stateful_callbacks_round_trip_through_checkpoints(tmp_path):
    hist = MetricsHistory(keys=["test_loss"])
    es = EarlyStopping(patience=5)
    trainer = Trainer(_config(), [hist, es], data=boring_data())
    trainer.fit()
    path = trainer.save_checkpoint(tmp_path / "c.pt")
    hist2, es2 = MetricsHistory(keys=["test_loss"]), EarlyStopping(patience=5)
    Trainer(_config(), [hist2, es2], data=boring_data()).load_checkpoint(path)
    assert hist2.history == hist.history and len(hist2.history) == 2
    assert es2.best == es.best and math.isfinite(es2.best)


def test_duplicate_state_keys_rejected(tmp_path):
    trainer = Trainer(_config(), [MetricsHistory(), MetricsHistory()], data=boring_data())
    trainer.fit()
    with pytest.raises(ValueError, match="share state_key 'MetricsHistory'"):
        trainer.save_checkpoint(tmp_path / "c.pt")
