"""The training loop: ``Trainer`` (loop, hook dispatch, evaluation cadence, checkpoints).

The trainer owns control flow; callbacks observe through one dispatcher, ``Trainer._call_hooks``,
which times each hook and, when one raises, runs every callback's ``on_exception`` before the
exception propagates. Cadence after each optimizer step (``step`` = steps done):

* ``on_train_step_end`` (and ``on_train_epoch_end`` at an epoch boundary);
* every ``eval_every`` steps and at the last step: evaluate → ``on_evaluate``;
* every ``spectral_every`` steps and at the last step: ``on_monitor``;
* whenever either ran: ``on_report`` with one flat metrics dict;
* every ``checkpoint_every`` steps: write ``checkpoint_dir/step_<k>.pt`` and ``last.pt`` →
  ``on_checkpoint``. ``trainer.should_stop`` is checked after each step's hooks.

A checkpoint holds the model, optimizer, scheduler, step/epoch, the data sampler's generator and
position, the torch / CUDA / numpy / python RNG states and every stateful callback's
``state_dict``; a restored run continues bit-identically on CPU.

The parts the loop uses live apart: the run's settings in ``trainers.config``, what differs
between classification, regression and language modelling in ``trainers.tasks``, the
teacher–student metrics in ``trainers.teacher_student``, checkpoint files and RNG state in
``trainers.checkpoint``. Their public names that were defined here are re-exported.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from htsweep.analysis._validation import Interval, check_value
from htsweep.trainers.alpha_balance import AlphaBalance
from htsweep.trainers.callbacks import Callback
from htsweep.trainers.checkpoint import (
    CHECKPOINT_FORMAT,
    check_resumable,
    read_checkpoint,
    rng_state,
    seed_everything,
    set_rng_state,
    write_checkpoint,
)
from htsweep.trainers.config import TrainConfig, resolve_device
from htsweep.trainers.data import Batcher, DataBundle, load_dataset
from htsweep.trainers.datasets import DatasetPair, from_bundle, is_fixed, to_bundle
from htsweep.trainers.loader import LoaderBatcher, device_batches, eval_loader
from htsweep.trainers.models import build_model
from htsweep.trainers.monitor import SpectralSnapshot
from htsweep.trainers.optim import build_optimizer, build_scheduler, layer_param_groups, scaled_lr
from htsweep.trainers.precision import MixedPrecision
from htsweep.trainers.tasks import EVAL_CHUNK, task_of
from htsweep.trainers.teacher_student import (
    RIDGE_LAMBDA,
    kernel_target_alignment,
    ridge_readout_losses,
    teacher_alignment,
)
from htsweep.trainers.user_code import is_import_path
from htsweep.trainers.user_data import load_user_dataset

__all__ = [
    "CHECKPOINT_FORMAT",
    "feed_of",
    "RIDGE_LAMBDA",
    "TrainConfig",
    "Trainer",
    "kernel_target_alignment",
    "resolve_device",
    "ridge_readout_losses",
    "teacher_alignment",
]

log = logging.getLogger(__name__)

# An explicit right bound of inf (not None) keeps inf itself out.
_LR_FACTOR = [Interval(float, 0.0, math.inf, closed="neither")]


def feed_of(data: DataBundle | DatasetPair, loader: str) -> DataBundle | DatasetPair:
    """The form the trainer reads ``data`` in under ``TrainConfig.loader``: tensors or Datasets.

    ``'auto'`` keeps a ``DataBundle`` in memory, stacks a pair of ``TensorDataset`` s into one
    (no per-item work is lost, and indexing device tensors beats a DataLoader:
    ``benchmarks/bench_loader.py``), and streams every other Dataset through a DataLoader.
    """
    if isinstance(data, DatasetPair):
        if loader == "memory" or (loader == "auto" and is_fixed(data) and data.task != "language_model"):
            return to_bundle(data)
        return data
    return from_bundle(data) if loader == "dataloader" else data


class Trainer:
    """Train a model under a ``TrainConfig``, calling callbacks at the documented points.

    Parameters
    ----------
    config : TrainConfig or mapping
        A mapping is passed to ``TrainConfig.from_dict``.
    callbacks : iterable of Callback, default=()
    data : DataBundle or DatasetPair, optional
        A dataset already loaded (e.g. shared through Ray's object store), or a user's pair of
        Datasets (``trainers.datasets.from_datasets``); default ``load_dataset(config.dataset, ...)``.
        ``config.loader`` decides how batches are read (:func:`feed_of`).

    Attributes
    ----------
    model : nn.Module
    optimizer : torch.optim.Optimizer
    scheduler : torch.optim.lr_scheduler.LRScheduler
    data : DataBundle or DatasetPair
        A ``DataBundle`` on ``device`` (in-memory batches) or a ``DatasetPair`` (DataLoader batches).
    batcher : Batcher or LoaderBatcher
        Training batches: ``next()``, ``steps_per_epoch``, ``state_dict()``.
    task : trainers.tasks.Task
        Loss and evaluation of ``data.task``.
    step, epoch : int
        Optimizer steps and epochs done.
    total_steps : int
    callback_metrics : dict of str to float
        Latest evaluation metrics and spectral aggregates.
    spectral : SpectralSnapshot or None
        Set by ``SpectralMonitor``.
    should_stop : bool
        Set by callbacks to end training after the current step.
    hook_seconds : dict of str to float
        Wall time per ``"<Callback class>.<hook>"``.
    lr_factors : dict of str to float
        Per-layer learning-rate factors (parameter-group name → factor, applied on top of the
        schedule); empty unless ``config.alpha_balance`` is set. Change with ``set_lr_factors``.
    """

    def __init__(self, config: TrainConfig | Mapping[str, Any], callbacks: Iterable[Callback] = (), *,
                 data: DataBundle | DatasetPair | None = None):
        self.config = config if isinstance(config, TrainConfig) else TrainConfig.from_dict(config)
        self.callbacks = self._check_callbacks(callbacks)
        cfg = self.config
        if cfg.threads is not None:
            torch.set_num_threads(cfg.threads)
        self.device = resolve_device(cfg.device)
        seed_everything(cfg.seed)
        if data is None:
            data = self._load_data(cfg)
        self.data = feed_of(data, cfg.loader)
        if isinstance(self.data, DataBundle):
            self.data = self.data.to(self.device)
        self.task = task_of(self.data)
        self.model = build_model(cfg.model, data=self.data, defaults={"dropout": cfg.dropout}, **cfg.model_kwargs)
        self.model.to(self.device)
        self.precision = MixedPrecision(cfg.precision, self.device)
        if cfg.channels_last:
            self.model.to(memory_format=torch.channels_last)
        # compiled forward for training only; self.model stays the module (names, state dict, monitor)
        self._forward = torch.compile(self.model) if cfg.compile else self.model
        bs = self.data.n_train if cfg.batch_size == "full" else int(cfg.batch_size)
        self.pin_memory = cfg.pin_memory if cfg.pin_memory is not None else self.device.type == "cuda"
        if isinstance(self.data, DataBundle):
            self.batcher: Batcher | LoaderBatcher = Batcher(self.data, bs, cfg.seed)
        else:
            self.batcher = LoaderBatcher(self.data, bs, cfg.seed, device=self.device, num_workers=cfg.num_workers,
                                         pin_memory=self.pin_memory, persistent_workers=cfg.persistent_workers)
        self.total_steps = cfg.steps if cfg.steps is not None else cfg.epochs * self.batcher.steps_per_epoch
        params = layer_param_groups(self.model) if cfg.alpha_balance is not None else self.model.parameters()
        self.optimizer = build_optimizer(cfg.optimizer, params, lr=cfg.lr, momentum=cfg.momentum,
                                         weight_decay=cfg.weight_decay, **cfg.optimizer_kwargs)
        self.lr_factors: dict[str, float] = {g["name"]: 1.0 for g in self.optimizer.param_groups if "name" in g}
        if cfg.alpha_balance is not None:
            self.callbacks.append(AlphaBalance(cfg.alpha_balance))
        self.scheduler = build_scheduler(cfg.schedule, self.optimizer, total_steps=self.total_steps,
                                         step_size=cfg.lr_step_size, gamma=cfg.lr_gamma)
        # a constant schedule has nothing to change: not stepping it saves ~2 % of a small model's step
        self._scheduled = cfg.schedule != "constant"
        self.step = self.epoch = 0
        self.should_stop = False
        self.callback_metrics: dict[str, float] = {}
        self.spectral: SpectralSnapshot | None = None
        self.hook_seconds: dict[str, float] = defaultdict(float)
        self._losses: list[float] = []
        self._done_at = {"evaluate": -1, "monitor": -1}
        self._last_report: dict[str, Any] = {}
        self._handled: BaseException | None = None
        self._eval_train_idx = self._eval_subset()
        self._eval_loaders: dict[str, Any] = {}

    @staticmethod
    def _load_data(cfg: TrainConfig) -> DataBundle | DatasetPair:
        """The dataset the config names: a registered one, or the user's factory (``"pkg.module:fn"``)."""
        if is_import_path(cfg.dataset):
            return load_user_dataset(cfg.dataset, data_kwargs=cfg.data_kwargs, seed=cfg.seed, task=cfg.task,
                                     data_dir=cfg.data_dir)
        data = load_dataset(cfg.dataset, data_dir=cfg.data_dir, **{"seed": cfg.seed, **cfg.data_kwargs})
        if cfg.task is not None and data.task != cfg.task:
            raise ValueError(f"task: dataset {cfg.dataset!r} is a {data.task} dataset, not {cfg.task}")
        return data

    @staticmethod
    def _check_callbacks(callbacks: Iterable[Callback]) -> list[Callback]:
        out = list(callbacks)
        for cb in out:
            if not isinstance(cb, Callback):
                raise TypeError(f"callbacks must be trainers.callbacks.Callback instances, got {type(cb).__name__}")
        return out

    def _eval_subset(self) -> torch.Tensor | None:
        k = self.config.eval_samples
        memory = isinstance(self.data, DataBundle)
        n = self.task.n_units(self.data.x_train) if memory else self.data.n_train
        if k is None or k >= n:
            return None
        g = torch.Generator().manual_seed(self.config.seed + 31)
        idx = torch.randperm(n, generator=g)[:k].sort().values
        return idx.to(self.device) if memory else idx

    # ------------------------------------------------------------------ per-layer learning rates
    def set_lr_factors(self, factors: Mapping[str, float]) -> None:
        """Set per-layer learning-rate factors, in effect from the next optimizer step.

        Parameters
        ----------
        factors : mapping of str to float
            Parameter-group name → factor (finite, > 0); groups left out keep theirs.

        Raises
        ------
        ValueError
            An unknown group (the message lists the known ones) or a bad factor.
        """
        for name, value in factors.items():
            if name not in self.lr_factors:
                raise ValueError(f"no parameter group {name!r}; groups: {', '.join(self.lr_factors) or '(none)'}")
            check_value(f"lr factor of {name!r}", value, _LR_FACTOR, error=ValueError)
        self.lr_factors.update({name: float(v) for name, v in factors.items()})

    # ------------------------------------------------------------------ hooks
    def _call_hooks(self, name: str, *args: Any) -> None:
        """Call ``name`` on every callback; on an exception run ``on_exception`` hooks, then re-raise."""
        for cb in self.callbacks:
            t0 = time.perf_counter()
            try:
                getattr(cb, name)(self, *args)
            except Exception as exc:
                if name == "on_exception":
                    log.exception("%s.on_exception raised; continuing", type(cb).__name__)
                    continue
                log.error("%s.%s raised %s: %s", type(cb).__name__, name, type(exc).__name__, exc)
                self._handle_exception(exc)
                raise
            finally:
                self.hook_seconds[f"{type(cb).__name__}.{name}"] += time.perf_counter() - t0

    def _handle_exception(self, exc: BaseException) -> None:
        if self._handled is exc:
            return
        self._handled = exc
        self._call_hooks("on_exception", exc)

    # ------------------------------------------------------------------ loop
    def fit(self, resume_from: str | os.PathLike | None = None) -> dict[str, Any]:
        """Train until ``total_steps`` or ``should_stop``; return the last reported metrics.

        Parameters
        ----------
        resume_from : path-like, optional
            A checkpoint written by ``save_checkpoint`` to restore first.
        """
        try:
            return self._fit(resume_from)
        except BaseException as exc:
            self._handle_exception(exc)
            raise

    def _fit(self, resume_from: str | os.PathLike | None) -> dict[str, Any]:
        if resume_from is not None:
            self.load_checkpoint(resume_from)
        self._call_hooks("on_fit_start", self.model)
        if self.config.eval_at_start and self.step == 0:
            self._evaluate_monitor_report(evaluate=True, monitor=True)
        while self.step < self.total_steps and not self.should_stop:
            x, y, epoch_done = self.batcher.next()
            loss = self._train_step(x, y)
            self.step += 1
            self._after_step(loss, epoch_done)
        if self._done_at["evaluate"] != self.step or self._done_at["monitor"] != self.step:
            self._evaluate_monitor_report(evaluate=self._done_at["evaluate"] != self.step,
                                          monitor=self._done_at["monitor"] != self.step)
        self._call_hooks("on_fit_end", self.model)
        return dict(self._last_report)

    def _train_step(self, x: torch.Tensor, y: torch.Tensor) -> float:
        if not self.model.training:  # evaluation restores the mode; train() walks every submodule
            self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        if self.config.channels_last and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        with self.precision.autocast():
            loss = self.task.loss(self._forward(x), y)
        value = float(loss.detach())  # the one host sync per step
        if not math.isfinite(value):
            raise FloatingPointError(f"non-finite training loss {value} at step {self.step + 1} "
                                     f"(lr={self.config.lr}, optimizer={self.config.optimizer})")
        self.precision.backward(loss)
        if self.config.grad_clip is not None:
            self.precision.unscale(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
        if self.lr_factors:
            with scaled_lr(self.optimizer, self.lr_factors):
                self.precision.step(self.optimizer)
        else:
            self.precision.step(self.optimizer)
        if self._scheduled:
            self.scheduler.step()
        self._losses.append(value)
        return value

    def _after_step(self, loss: float, epoch_done: bool) -> None:
        self._call_hooks("on_train_step_end", self.model, self.step, loss)
        if epoch_done:
            self.epoch += 1
            self._call_hooks("on_train_epoch_end", self.model, self.epoch)
        last = self.step >= self.total_steps or self.should_stop
        self._evaluate_monitor_report(evaluate=last or self._due(self.config.eval_every),
                                      monitor=last or self._due(self.config.spectral_every))
        every = self.config.checkpoint_every
        if every and self.step % every == 0:
            directory = Path(self.config.checkpoint_dir)
            self.save_checkpoint(directory / f"step_{self.step}.pt")
            self.save_checkpoint(directory / "last.pt")

    def _due(self, every: int | None) -> bool:
        return bool(every) and self.step % every == 0

    def _evaluate_monitor_report(self, *, evaluate: bool, monitor: bool) -> None:
        if evaluate:
            metrics = self.evaluate()
            self.callback_metrics.update(metrics)
            self._done_at["evaluate"] = self.step
            self._call_hooks("on_evaluate", self.model, self.step, metrics)
        if monitor:
            self._done_at["monitor"] = self.step
            self._call_hooks("on_monitor", self.model, self.step)
        if evaluate or monitor:
            report = self._report_metrics()
            self._last_report = report
            self._call_hooks("on_report", self.model, self.step, dict(report))

    def _report_metrics(self) -> dict[str, Any]:
        batch_loss = float(np.mean(self._losses)) if self._losses else math.nan
        self._losses = []
        head = {"step": self.step, "epoch": self.epoch, "lr": float(self.optimizer.param_groups[0]["lr"]),
                "batch_loss": batch_loss}
        return {**head, **self.callback_metrics}

    # ------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Train/test loss and the task's scores, in eval mode (``trainers.tasks.Task.evaluate``).

        Returns
        -------
        dict of str to float
            ``train_loss, test_loss, gen_gap`` (= test − train loss), ``train_acc, test_acc``
            (classification, language model) or ``train_r2, test_r2`` (regression: 1 − MSE / Var(y)).
            The teacher–student student adds ``sim``, ``kta`` (conjugate kernel on the test set)
            and ``ridge_train_loss, ridge_test_loss``. ``train_*`` are over ``eval_samples`` units.
        """
        was_training = self.model.training
        self.model.eval()
        try:  # in float32 whatever the training precision: exact metrics, and evaluation is rare
            if isinstance(self.data, DataBundle):
                return self.task.evaluate(self.model, self.data, self._eval_train_idx)
            return self.task.summarize_splits(*(self.task.evaluate_batches(self.model, self._eval_batches(split))
                                                for split in ("train", "test")))
        finally:
            self.model.train(was_training)

    def _eval_batches(self, split: str) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
        if split not in self._eval_loaders:  # made once: persistent workers then serve every evaluation
            cfg = self.config
            self._eval_loaders[split] = eval_loader(
                self.data.train if split == "train" else self.data.test, batch_size=EVAL_CHUNK, seed=cfg.seed,
                indices=self._eval_train_idx if split == "train" else None, num_workers=cfg.num_workers,
                pin_memory=self.pin_memory, persistent_workers=cfg.persistent_workers)
        return device_batches(self._eval_loaders[split], self.device, regression=self.data.task == "regression",
                              non_blocking=self.pin_memory and self.device.type == "cuda")

    # ------------------------------------------------------------------ checkpoints
    def _callback_states(self) -> dict[str, dict[str, Any]]:
        states: dict[str, dict[str, Any]] = {}
        for cb in self.callbacks:
            state = cb.state_dict()
            if not state:
                continue
            if cb.state_key in states:
                raise ValueError(f"two stateful callbacks share state_key {cb.state_key!r}; "
                                 "override state_key to tell them apart")
            states[cb.state_key] = state
        return states

    def save_checkpoint(self, path: str | os.PathLike) -> Path:
        """Write everything needed to continue this run bit-identically; then ``on_checkpoint``.

        The file is a ``torch.save`` dict (loadable with ``weights_only=True``) whose ``"model"``
        key is the model's state dict, so ``analysis.load_matrices`` reads it too.

        Returns
        -------
        Path
            ``path``.
        """
        ckpt = {
            "config": self.config.to_dict(),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "step": self.step,
            "epoch": self.epoch,
            "batcher": self.batcher.state_dict(),
            "rng": rng_state(),
            "callbacks": self._callback_states(),
            "callback_metrics": dict(self.callback_metrics),
            "losses": list(self._losses),
            "last_report": dict(self._last_report),
            "lr_factors": dict(self.lr_factors),
        }
        if self.precision.scaler is not None:
            ckpt["grad_scaler"] = self.precision.state_dict()
        path = write_checkpoint(path, ckpt)
        self._call_hooks("on_checkpoint", path)
        return path

    def load_checkpoint(self, path: str | os.PathLike) -> None:
        """Restore a checkpoint written by ``save_checkpoint`` (model, optimizer, RNGs, callbacks).

        Raises
        ------
        ValueError
            Not a trainer checkpoint, or one for a different model/dataset.
        """
        ckpt = read_checkpoint(path)
        check_resumable(ckpt, self.config, path)
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.step, self.epoch = int(ckpt["step"]), int(ckpt["epoch"])
        self.batcher.load_state_dict(ckpt["batcher"])
        self.callback_metrics = dict(ckpt["callback_metrics"])
        self._losses = list(ckpt["losses"])
        self._last_report = dict(ckpt.get("last_report", {}))
        self.lr_factors.update(ckpt.get("lr_factors", {}))
        self.precision.load_state_dict(ckpt.get("grad_scaler", {}))
        self._done_at = {"evaluate": self.step, "monitor": self.step}
        states = ckpt["callbacks"]
        for cb in self.callbacks:
            if cb.state_key in states:
                cb.load_state_dict(states[cb.state_key])
        set_rng_state(ckpt["rng"])
