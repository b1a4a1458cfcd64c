"""Lightning-style callbacks: typed no-op hooks that observe the loop and signal through the trainer.

The ``Trainer`` owns the loop and calls every hook through one dispatcher
(``Trainer._call_hooks``). A callback reads ``trainer.callback_metrics``, ``trainer.spectral`` and
``trainer.step``, and may set ``trainer.should_stop``; it never steps the optimizer, changes the
model or breaks the loop. A callback with state implements ``state_dict``/``load_state_dict``; the
trainer saves it in checkpoints under ``state_key``.

Hook order in one run (``N`` = total steps)::

    on_fit_start
    [eval_at_start: on_evaluate, on_monitor, on_report at step 0]
    for each step: on_train_step_end
                   [epoch boundary: on_train_epoch_end]
                   [step % eval_every == 0 or last: on_evaluate]
                   [step % spectral_every == 0 or last: on_monitor]
                   [if either: on_report]
                   [step % checkpoint_every == 0: save, then on_checkpoint]
    on_fit_end                       (on any exception instead: on_exception)

``SpectralMonitor`` lives in ``trainers.monitor``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn

    from htsweep.trainers.train import Trainer

__all__ = ["Callback", "EarlyStopping", "MetricsHistory"]


class Callback:
    """Base class: every hook does nothing. Override only the hooks you need."""

    @property
    def state_key(self) -> str:
        """Key of this callback's state in a checkpoint (the class name by default)."""
        return type(self).__name__

    def on_fit_start(self, trainer: Trainer, model: nn.Module) -> None:
        """Called once when ``fit`` begins, after a checkpoint (if any) has been restored."""

    def on_train_step_end(self, trainer: Trainer, model: nn.Module, step: int, loss: float) -> None:
        """Called after each optimizer step; ``step`` counts steps done, ``loss`` is the batch loss."""

    def on_train_epoch_end(self, trainer: Trainer, model: nn.Module, epoch: int) -> None:
        """Called after the last batch of an epoch; ``epoch`` counts epochs done."""

    def on_evaluate(self, trainer: Trainer, model: nn.Module, step: int, metrics: dict[str, float]) -> None:
        """Called after evaluation (every ``eval_every`` steps and at the end) with its metrics."""

    def on_monitor(self, trainer: Trainer, model: nn.Module, step: int) -> None:
        """Called every ``spectral_every`` steps and at the end, for spectral monitoring."""

    def on_report(self, trainer: Trainer, model: nn.Module, step: int, metrics: dict[str, Any]) -> None:
        """Called after ``on_evaluate``/``on_monitor`` at a step with one flat metrics dict."""

    def on_checkpoint(self, trainer: Trainer, path: Path) -> None:
        """Called after the trainer wrote a checkpoint to ``path``."""

    def on_fit_end(self, trainer: Trainer, model: nn.Module) -> None:
        """Called once when ``fit`` finishes normally (also after an early stop)."""

    def on_exception(self, trainer: Trainer, exc: BaseException) -> None:
        """Called when ``fit`` fails (in the loop or in a hook), before the exception propagates."""

    def state_dict(self) -> dict[str, Any]:
        """The callback's state to save in a checkpoint (empty: stateless)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the state returned by ``state_dict``."""


class MetricsHistory(Callback):
    """Keeps every ``on_report`` metrics dict in ``history`` (a list, saved in checkpoints).

    Parameters
    ----------
    keys : sequence of str, optional
        Keep only these keys (plus ``step``); default all.
    """

    def __init__(self, keys: list[str] | tuple[str, ...] | None = None):
        self.keys = None if keys is None else tuple(keys)
        self.history: list[dict[str, Any]] = []

    def on_report(self, trainer: Trainer, model: nn.Module, step: int, metrics: dict[str, Any]) -> None:
        """Append the (filtered) metrics."""
        row = dict(metrics) if self.keys is None else {k: metrics.get(k) for k in ("step", *self.keys)}
        self.history.append(row)

    def state_dict(self) -> dict[str, Any]:
        return {"history": [dict(r) for r in self.history]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.history = [dict(r) for r in state.get("history", [])]


class EarlyStopping(Callback):
    """Sets ``trainer.should_stop`` when a reported metric stops improving.

    Parameters
    ----------
    monitor : str, default='test_loss'
        Key in the ``on_report`` metrics.
    mode : {'min', 'max'}, default='min'
    patience : int, default=3
        Number of reports without improvement tolerated.
    min_delta : float, default=0.0
        Smallest change that counts as an improvement.
    """

    def __init__(self, monitor: str = "test_loss", *, mode: str = "min", patience: int = 3,
                 min_delta: float = 0.0):
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        if patience < 0:
            raise ValueError(f"patience must be >= 0, got {patience!r}")
        self.monitor, self.mode, self.patience, self.min_delta = monitor, mode, int(patience), abs(min_delta)
        self.best = math.inf if mode == "min" else -math.inf
        self.wait = 0
        self.stopped_step: int | None = None

    @property
    def state_key(self) -> str:
        return f"EarlyStopping[monitor={self.monitor},mode={self.mode}]"

    def on_report(self, trainer: Trainer, model: nn.Module, step: int, metrics: dict[str, Any]) -> None:
        """Compare ``metrics[monitor]`` with the best so far; signal a stop after ``patience`` misses."""
        if self.monitor not in metrics:
            raise KeyError(f"EarlyStopping: metric {self.monitor!r} is not reported; "
                           f"available: {', '.join(sorted(metrics))}")
        value = float(metrics[self.monitor])
        better = value < self.best - self.min_delta if self.mode == "min" else value > self.best + self.min_delta
        if better:
            self.best, self.wait = value, 0
            return
        self.wait += 1
        if self.wait > self.patience:
            self.stopped_step = step
            trainer.should_stop = True

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "wait": self.wait, "stopped_step": self.stopped_step}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.wait = float(state["best"]), int(state["wait"])
        self.stopped_step = state.get("stopped_step")

