"""Shared helpers for the trainer tests: a tiny "boring" random dataset and a hook recorder."""

from __future__ import annotations

from typing import Any

import torch

from htsweep.trainers.callbacks import Callback
from htsweep.trainers.data import DataBundle


def boring_data(n: int = 64, n_test: int = 32, features: int = 32, classes: int = 2, seed: int = 0) -> DataBundle:
    """Random Gaussian inputs (features,) with random labels: a dataset that only exercises the loop."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n + n_test, features, generator=g)
    y = torch.randint(0, classes, (n + n_test,), generator=g)
    return DataBundle("digits", "classification", x[:n], y[:n], x[n:], y[n:], input_shape=(features,),
                      n_classes=classes)


HOOKS = ("on_fit_start", "on_train_step_end", "on_train_epoch_end", "on_evaluate", "on_monitor", "on_report",
         "on_checkpoint", "on_fit_end", "on_exception")


class Recorder(Callback):
    """Appends ``(hook, step)`` for every hook call (Lightning's test_hooks style)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []
        self.reports: list[dict[str, Any]] = []
        self.exceptions: list[BaseException] = []

    def _rec(self, name: str, trainer: Any) -> None:
        self.calls.append((name, trainer.step))

    def on_fit_start(self, trainer, model):
        self._rec("on_fit_start", trainer)

    def on_train_step_end(self, trainer, model, step, loss):
        assert step == trainer.step and isinstance(loss, float)
        self._rec("on_train_step_end", trainer)

    def on_train_epoch_end(self, trainer, model, epoch):
        self._rec("on_train_epoch_end", trainer)

    def on_evaluate(self, trainer, model, step, metrics):
        self._rec("on_evaluate", trainer)

    def on_monitor(self, trainer, model, step):
        self._rec("on_monitor", trainer)

    def on_report(self, trainer, model, step, metrics):
        self.reports.append(metrics)
        self._rec("on_report", trainer)

    def on_checkpoint(self, trainer, path):
        self._rec("on_checkpoint", trainer)

    def on_fit_end(self, trainer, model):
        self._rec("on_fit_end", trainer)

    def on_exception(self, trainer, exc):
        self.exceptions.append(exc)
        self._rec("on_exception", trainer)
