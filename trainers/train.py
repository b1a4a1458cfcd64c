"""The training loop: ``TrainConfig`` (validated dataclass), ``Trainer`` (loop, hooks, checkpoints).

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
"""

from __future__ import annotations

import dataclasses
import logging
import math
import operator
import os
import random
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from trainers.alpha_balance import AlphaBalance, AlphaBalanceConfig
from trainers.callbacks import Callback
from trainers.data import DATASETS, Batcher, DataBundle, check_data_kwargs, load_dataset
from trainers.models import MODELS, _check_choice, _did_you_mean, build_model
from trainers.monitor import SpectralSnapshot
from trainers.optim import (
    OPTIMIZERS,
    SCHEDULES,
    build_optimizer,
    build_scheduler,
    layer_param_groups,
    scaled_lr,
)

__all__ = [
    "CHECKPOINT_FORMAT",
    "RIDGE_LAMBDA",
    "TrainConfig",
    "Trainer",
    "kernel_target_alignment",
    "resolve_device",
    "ridge_readout_losses",
    "teacher_alignment",
]

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "htsweep-trainer-checkpoint/1"
RIDGE_LAMBDA = 1e-2
"""Ridge penalty of the teacher–student readout refit (the paper's ``reg_lambda``)."""

_EVAL_CHUNK = 1024


def _as_int(name: str, value: Any, *, minimum: int, allow_none: bool = False) -> int | None:
    if value is None and allow_none:
        return None
    try:
        if isinstance(value, bool):
            raise TypeError
        out = int(value) if isinstance(value, str) else operator.index(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}") from None
    if out < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return out


def _as_float(name: str, value: Any, *, low: float, high: float = math.inf, low_open: bool = False,
              high_open: bool = True) -> float:
    try:
        if isinstance(value, bool):
            raise TypeError
        out = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    lo_ok = out > low if low_open else out >= low
    hi_ok = out < high if high_open else out <= high
    if not (math.isfinite(out) and lo_ok and hi_ok):
        lb, rb = ("(" if low_open else "["), (")" if high_open else "]")
        raise ValueError(f"{name} must be in {lb}{low}, {high}{rb}, got {value!r}")
    return out


@dataclass
class TrainConfig:
    """Everything that defines one training run (one sweep trial).

    Parameters
    ----------
    model : {'mlp3', 'lenet5', 'minialexnet', 'student', 'char_gpt'}, default='mlp3'
    dataset : {'teacher_student', 'digits', 'mnist5k', 'text', 'mnist', 'cifar10', 'svhn'}, default='digits'
    batch_size : int or 'full', default=64
        ``'full'`` = full-batch gradient descent (not for ``text``).
    lr : float, default=0.01
        Peak learning rate (> 0).
    optimizer : {'sgd', 'momentum', 'adam', 'adamw'}, default='sgd'
    momentum : float, default=0.9
        Heavy-ball momentum of ``optimizer='momentum'``.
    weight_decay : float, default=0.0
    dropout : float, default=0.0
        Passed to the model's dropout layers.
    schedule : {'constant', 'cosine', 'step'}, default='constant'
    lr_step_size : int, optional
        Decay period of ``schedule='step'`` (default: a third of the run).
    lr_gamma : float, default=0.1
        Decay factor of ``schedule='step'``.
    epochs, steps : int, optional
        Run length; set exactly one.
    eval_every : int, optional, default=100
        Evaluate every this many steps (0 or None: only at the end).
    spectral_every : int, optional, default=500
        Call ``on_monitor`` every this many steps (0 or None: only at the end).
    eval_at_start : bool, default=False
        Also evaluate, monitor and report at step 0 (the initialization).
    eval_samples : int, optional, default=10000
        Train-set examples (language model: windows) used for ``train_loss``/``train_acc``; None = all.
    grad_clip : float, optional
        Clip the gradient norm to this value.
    seed : int, default=0
        Seeds model init, dropout, batch order and (unless ``data_kwargs`` has ``seed``) the data.
    device : {'auto', 'cpu', 'cuda', 'cuda:<i>'}, default='auto'
        ``'auto'`` picks CUDA when available.
    threads : int, optional
        ``torch.set_num_threads`` for this process (trials share cores).
    model_kwargs, data_kwargs, optimizer_kwargs : dict
        Extra arguments of ``build_model``, ``load_dataset`` and the torch optimizer;
        ``data_kwargs`` keys are checked here against the dataset's options
        (``trainers.data.data_kwargs_of``).
    data_dir : str, optional
        Download directory of the torchvision datasets.
    checkpoint_dir : str, optional
        Where periodic checkpoints go.
    checkpoint_every : int, optional
        Write a checkpoint every this many steps (needs ``checkpoint_dir``).
    alpha_balance : dict, optional
        Alpha-guided per-layer learning rates (``trainers.alpha_balance.AlphaBalanceConfig``
        settings: ``target, method, min_factor, max_factor, metric, gain, exclude_first,
        exclude_last``; stored with defaults filled in). When set, every layer gets its own
        optimizer parameter group and the trainer appends an ``AlphaBalance`` callback.
    """

    model: str = "mlp3"
    dataset: str = "digits"
    batch_size: int | str = 64
    lr: float = 0.01
    optimizer: str = "sgd"
    momentum: float = 0.9
    weight_decay: float = 0.0
    dropout: float = 0.0
    schedule: str = "constant"
    lr_step_size: int | None = None
    lr_gamma: float = 0.1
    epochs: int | None = None
    steps: int | None = None
    eval_every: int | None = 100
    spectral_every: int | None = 500
    eval_at_start: bool = False
    eval_samples: int | None = 10_000
    grad_clip: float | None = None
    seed: int = 0
    device: str = "auto"
    threads: int | None = None
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    data_kwargs: dict[str, Any] = field(default_factory=dict)
    optimizer_kwargs: dict[str, Any] = field(default_factory=dict)
    data_dir: str | None = None
    checkpoint_dir: str | None = None
    checkpoint_every: int | None = None
    alpha_balance: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        _check_choice("model", self.model, MODELS)
        _check_choice("dataset", self.dataset, DATASETS)
        _check_choice("optimizer", self.optimizer, OPTIMIZERS)
        _check_choice("schedule", self.schedule, SCHEDULES)
        if self.batch_size != "full":
            if isinstance(self.batch_size, str) and not self.batch_size.isdigit():
                raise ValueError(f"batch_size must be a positive integer or 'full', got {self.batch_size!r}")
            self.batch_size = _as_int("batch_size", self.batch_size, minimum=1)
        self.lr = _as_float("lr", self.lr, low=0.0, low_open=True)
        self.momentum = _as_float("momentum", self.momentum, low=0.0, high=1.0)
        self.weight_decay = _as_float("weight_decay", self.weight_decay, low=0.0)
        self.dropout = _as_float("dropout", self.dropout, low=0.0, high=1.0)
        self.lr_gamma = _as_float("lr_gamma", self.lr_gamma, low=0.0, low_open=True)
        self.lr_step_size = _as_int("lr_step_size", self.lr_step_size, minimum=1, allow_none=True)
        self._check_length()
        self.eval_every = _as_int("eval_every", self.eval_every, minimum=0, allow_none=True)
        self.spectral_every = _as_int("spectral_every", self.spectral_every, minimum=0, allow_none=True)
        self.eval_samples = _as_int("eval_samples", self.eval_samples, minimum=1, allow_none=True)
        if self.grad_clip is not None:
            self.grad_clip = _as_float("grad_clip", self.grad_clip, low=0.0, low_open=True)
        self.seed = _as_int("seed", self.seed, minimum=0)
        self.threads = _as_int("threads", self.threads, minimum=1, allow_none=True)
        self._check_device()
        for name in ("model_kwargs", "data_kwargs", "optimizer_kwargs"):
            value = getattr(self, name)
            if not isinstance(value, Mapping):
                raise ValueError(f"{name} must be a mapping, got {type(value).__name__}")
            setattr(self, name, dict(value))
        check_data_kwargs(self.dataset, self.data_kwargs)
        self.checkpoint_every = _as_int("checkpoint_every", self.checkpoint_every, minimum=1, allow_none=True)
        if self.checkpoint_every is not None and not self.checkpoint_dir:
            raise ValueError("checkpoint_every needs checkpoint_dir")
        if self.batch_size == "full" and self.dataset == "text":
            raise ValueError("batch_size='full' is not supported for the text (language-model) dataset")
        if self.alpha_balance is not None:
            self.alpha_balance = AlphaBalanceConfig.from_dict(self.alpha_balance).to_dict()

    def _check_length(self) -> None:
        if (self.epochs is None) == (self.steps is None):
            raise ValueError(f"set exactly one of epochs or steps (got epochs={self.epochs!r}, steps={self.steps!r})")
        self.epochs = _as_int("epochs", self.epochs, minimum=1, allow_none=True)
        self.steps = _as_int("steps", self.steps, minimum=1, allow_none=True)

    def _check_device(self) -> None:
        if self.device not in ("auto", "cpu", "cuda") and not str(self.device).startswith("cuda:"):
            raise ValueError(f"unknown device {self.device!r}; choose one of 'auto', 'cpu', 'cuda', 'cuda:<index>'")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TrainConfig:
        """Build a config from a mapping (e.g. a sweep spec), rejecting unknown keys.

        Raises
        ------
        ValueError
            An unknown key (the message names it, suggests the closest valid key, and lists all
            valid keys), or an invalid value.
        """
        valid = [f.name for f in dataclasses.fields(cls)]
        unknown = [k for k in values if k not in valid]
        if unknown:
            hints = [f"{key!r}{_did_you_mean(key, valid)}" for key in unknown]
            raise ValueError(f"unknown TrainConfig key(s) {', '.join(hints)}; valid keys: {', '.join(valid)}")
        return cls(**dict(values))

    def to_dict(self) -> dict[str, Any]:
        """A plain-dict copy (JSON/YAML-safe when the kwargs dicts are)."""
        return dataclasses.asdict(self)


def resolve_device(name: str) -> torch.device:
    """``'auto'`` → CUDA when available, else CPU; ``'cuda'`` without a GPU raises ``RuntimeError``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} requested but CUDA is not available; use device='auto' or 'cpu'")
    return torch.device(name)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002  (code we call may use the legacy global RNG)
    torch.manual_seed(seed)


@torch.no_grad()
def teacher_alignment(weight: torch.Tensor, teacher: torch.Tensor) -> float:
    """The ``sim`` metric: ``|⟨v₁, β⟩|`` for the top right singular vector ``v₁`` of ``weight``.

    Parameters
    ----------
    weight : Tensor of shape (h, d)
        First-layer weight of the student.
    teacher : Tensor of shape (d,)
        Unit teacher direction ``β``.

    Returns
    -------
    float in [0, 1]
    """
    vh = torch.linalg.svd(weight.detach().double(), full_matrices=False).Vh
    beta = teacher.detach().double().to(vh.device)
    return float((vh[0] @ beta).abs() / beta.norm())


@torch.no_grad()
def kernel_target_alignment(features: torch.Tensor, y: torch.Tensor) -> float:
    """Kernel-target alignment of the conjugate kernel ``K = Z Zᵀ`` with ``y yᵀ``.

    ``KTA = ⟨K, y yᵀ⟩_F / (‖K‖_F ‖y yᵀ‖_F) = ‖Zᵀy‖² / (‖ZᵀZ‖_F ‖y‖²)`` (Cristianini et al. 2001).

    Parameters
    ----------
    features : Tensor of shape (n, h)
        Hidden post-activations ``Z``.
    y : Tensor of shape (n,)
        Targets.
    """
    z, t = features.double(), y.double().reshape(-1)
    num = (z.T @ t).square().sum()
    den = torch.linalg.matrix_norm(z.T @ z) * t.square().sum()
    return float(num / den) if float(den) > 0 else math.nan


@torch.no_grad()
def _r2(mse: float, y: torch.Tensor) -> float:
    """Coefficient of determination from a mean squared error over all entries of ``y``."""
    var = float(((y - y.mean(dim=0)) ** 2).mean())
    return 1.0 - mse / var if var > 0 else math.nan


def ridge_readout_losses(model: nn.Module, data: DataBundle, lam: float = RIDGE_LAMBDA) -> tuple[float, float]:
    """Train/test MSE after refitting the readout by ridge regression on the hidden features.

    The second stage of the paper's two-stage procedure: ``â = argmin (1/n)‖y − Z a‖² + λ‖a‖²`` on
    the training features ``Z = σ(W x / √d)``, then the MSE of ``Z â`` on train and test.

    Returns
    -------
    (train_mse, test_mse) : tuple of float
    """
    z = model.features(data.x_train).double()
    y = data.y_train.double()
    n, h = z.shape
    gram = z.T @ z + n * lam * torch.eye(h, dtype=z.dtype, device=z.device)
    a = torch.linalg.solve(gram, z.T @ y)
    z_test = model.features(data.x_test).double()
    return float((z @ a - y).square().mean()), float((z_test @ a - data.y_test.double()).square().mean())


class Trainer:
    """Train a model under a ``TrainConfig``, calling callbacks at the documented points.

    Parameters
    ----------
    config : TrainConfig or mapping
        A mapping is passed to ``TrainConfig.from_dict``.
    callbacks : iterable of Callback, default=()
    data : DataBundle, optional
        A dataset already loaded (e.g. shared through Ray's object store); default
        ``load_dataset(config.dataset, ...)``.

    Attributes
    ----------
    model : nn.Module
    optimizer : torch.optim.Optimizer
    scheduler : torch.optim.lr_scheduler.LRScheduler
    data : DataBundle
        On ``device``.
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
                 data: DataBundle | None = None):
        self.config = config if isinstance(config, TrainConfig) else TrainConfig.from_dict(config)
        self.callbacks = self._check_callbacks(callbacks)
        cfg = self.config
        if cfg.threads is not None:
            torch.set_num_threads(cfg.threads)
        self.device = resolve_device(cfg.device)
        _seed_everything(cfg.seed)
        if data is None:
            kwargs = {"seed": cfg.seed, **cfg.data_kwargs}
            data = load_dataset(cfg.dataset, data_dir=cfg.data_dir, **kwargs)
        self.data = data.to(self.device)
        self.model = build_model(cfg.model, data=self.data, **{"dropout": cfg.dropout, **cfg.model_kwargs})
        self.model.to(self.device)
        bs = self.data.n_train if cfg.batch_size == "full" else int(cfg.batch_size)
        self.batcher = Batcher(self.data, bs, cfg.seed)
        self.total_steps = cfg.steps if cfg.steps is not None else cfg.epochs * self.batcher.steps_per_epoch
        params = layer_param_groups(self.model) if cfg.alpha_balance is not None else self.model.parameters()
        self.optimizer = build_optimizer(cfg.optimizer, params, lr=cfg.lr, momentum=cfg.momentum,
                                         weight_decay=cfg.weight_decay, **cfg.optimizer_kwargs)
        self.lr_factors: dict[str, float] = {g["name"]: 1.0 for g in self.optimizer.param_groups if "name" in g}
        if cfg.alpha_balance is not None:
            self.callbacks.append(AlphaBalance(cfg.alpha_balance))
        self.scheduler = build_scheduler(cfg.schedule, self.optimizer, total_steps=self.total_steps,
                                         step_size=cfg.lr_step_size, gamma=cfg.lr_gamma)
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

    @staticmethod
    def _check_callbacks(callbacks: Iterable[Callback]) -> list[Callback]:
        out = list(callbacks)
        for cb in out:
            if not isinstance(cb, Callback):
                raise TypeError(f"callbacks must be trainers.callbacks.Callback instances, got {type(cb).__name__}")
        return out

    def _eval_subset(self) -> torch.Tensor | None:
        k = self.config.eval_samples
        n = self._n_eval_units(self.data.x_train)
        if k is None or k >= n:
            return None
        g = torch.Generator().manual_seed(self.config.seed + 31)
        return torch.randperm(n, generator=g)[:k].sort().values.to(self.device)

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
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ValueError(f"lr factor of {name!r} must be a finite number > 0, got {value!r}")
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
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        loss = self._loss(self.model(x), y)
        value = float(loss.detach())  # the one host sync per step
        if not math.isfinite(value):
            raise FloatingPointError(f"non-finite training loss {value} at step {self.step + 1} "
                                     f"(lr={self.config.lr}, optimizer={self.config.optimizer})")
        loss.backward()
        if self.config.grad_clip is not None:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
        with scaled_lr(self.optimizer, self.lr_factors):
            self.optimizer.step()
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
    def _loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        task = self.data.task
        if task == "regression":
            return F.mse_loss(out, y)
        if task == "language_model":
            return F.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1))
        return F.cross_entropy(out, y)

    def _n_eval_units(self, x: torch.Tensor) -> int:
        if self.data.task == "language_model":
            return max(0, (x.shape[0] - 1) // int(self.data.block_size))
        return int(x.shape[0])

    def _windows(self, ids: torch.Tensor, which: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        t = int(self.data.block_size)
        offsets = which[:, None] * t + torch.arange(t + 1, device=ids.device)[None, :]
        w = ids[offsets]
        return w[:, :-1], w[:, 1:]

    @torch.no_grad()
    def _eval_split(self, x: torch.Tensor, y: torch.Tensor | None,
                    idx: torch.Tensor | None) -> tuple[float, float]:
        """Mean loss and accuracy over the examples ``idx`` (all when None) of one split."""
        n_units = self._n_eval_units(x)
        which = idx if idx is not None else torch.arange(n_units, device=self.device)
        total_loss, correct, count = 0.0, 0.0, 0
        for chunk in torch.split(which, _EVAL_CHUNK):
            if self.data.task == "language_model":
                xb, yb = self._windows(x, chunk)
            else:
                xb, yb = x[chunk], y[chunk]
            out = self.model(xb)
            k = yb.numel()
            total_loss += float(self._loss(out, yb)) * k
            if self.data.task != "regression":
                correct += float((out.argmax(-1) == yb).sum())
            count += k
        return total_loss / max(count, 1), correct / max(count, 1)

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Train/test loss (and accuracy for classification / language models) in eval mode.

        Returns
        -------
        dict of str to float
            ``train_loss, test_loss, gen_gap`` (= test − train loss), ``train_acc, test_acc``
            (classification, language model) or ``train_r2, test_r2`` (regression: 1 − MSE / Var(y)). The teacher–student student adds ``sim``, ``kta``
            (conjugate kernel on the test set) and ``ridge_train_loss, ridge_test_loss``.
        """
        was_training = self.model.training
        self.model.eval()
        try:
            d = self.data
            train_loss, train_acc = self._eval_split(d.x_train, d.y_train, self._eval_train_idx)
            test_loss, test_acc = self._eval_split(d.x_test, d.y_test, None)
            metrics = {"train_loss": train_loss, "test_loss": test_loss, "gen_gap": test_loss - train_loss}
            if d.task != "regression":
                metrics.update(train_acc=train_acc, test_acc=test_acc)
            else:  # R² = 1 - MSE / Var(y): the share of the targets' variance the model explains
                y_tr = d.y_train if self._eval_train_idx is None else d.y_train[self._eval_train_idx]
                metrics.update(train_r2=_r2(train_loss, y_tr), test_r2=_r2(test_loss, d.y_test))
            if d.teacher is not None and hasattr(self.model, "features"):
                metrics.update(self._teacher_student_metrics())
            return metrics
        finally:
            self.model.train(was_training)

    def _teacher_student_metrics(self) -> dict[str, float]:
        d, m = self.data, self.model
        ridge_train, ridge_test = ridge_readout_losses(m, d)
        return {"sim": teacher_alignment(m.fc1.weight, d.teacher),
                "kta": kernel_target_alignment(m.features(d.x_test), d.y_test),
                "ridge_train_loss": ridge_train, "ridge_test_loss": ridge_test}

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
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        ckpt = {
            "format": CHECKPOINT_FORMAT,
            "config": self.config.to_dict(),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "step": self.step,
            "epoch": self.epoch,
            "batcher": self.batcher.state_dict(),
            "rng": _rng_state(),
            "callbacks": self._callback_states(),
            "callback_metrics": dict(self.callback_metrics),
            "losses": list(self._losses),
            "last_report": dict(self._last_report),
            "lr_factors": dict(self.lr_factors),
        }
        tmp = path.with_name(path.name + ".tmp")
        torch.save(ckpt, tmp)
        os.replace(tmp, path)
        self._call_hooks("on_checkpoint", path)
        return path

    def load_checkpoint(self, path: str | os.PathLike) -> None:
        """Restore a checkpoint written by ``save_checkpoint`` (model, optimizer, RNGs, callbacks).

        Raises
        ------
        ValueError
            Not a trainer checkpoint, or one for a different model/dataset.
        """
        try:
            ckpt = torch.load(Path(path), map_location="cpu", weights_only=True)
        except (OSError, RuntimeError) as exc:
            raise ValueError(f"cannot read checkpoint {str(path)!r}: {exc}") from None
        if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"{str(path)!r} is not a trainer checkpoint (format {CHECKPOINT_FORMAT!r})")
        saved = ckpt["config"]
        for key in ("model", "dataset"):
            if saved.get(key) != getattr(self.config, key):
                raise ValueError(f"checkpoint {str(path)!r} was made with {key}={saved.get(key)!r}, "
                                 f"this trainer has {key}={getattr(self.config, key)!r}")
        if (saved.get("alpha_balance") is None) != (self.config.alpha_balance is None):
            # per-layer parameter groups exist only with alpha_balance; the optimizer state would not fit
            raise ValueError(f"checkpoint {str(path)!r} was made with alpha_balance={saved.get('alpha_balance')!r}, "
                             f"this trainer has alpha_balance={self.config.alpha_balance!r}")
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.step, self.epoch = int(ckpt["step"]), int(ckpt["epoch"])
        self.batcher.load_state_dict(ckpt["batcher"])
        self.callback_metrics = dict(ckpt["callback_metrics"])
        self._losses = list(ckpt["losses"])
        self._last_report = dict(ckpt.get("last_report", {}))
        self.lr_factors.update(ckpt.get("lr_factors", {}))
        self._done_at = {"evaluate": self.step, "monitor": self.step}
        states = ckpt["callbacks"]
        for cb in self.callbacks:
            if cb.state_key in states:
                cb.load_state_dict(states[cb.state_key])
        _set_rng_state(ckpt["rng"])


def _rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()  # noqa: NPY002
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "python": _python_state_to_list(random.getstate()),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _python_state_to_list(state: tuple) -> list:
    version, internal, gauss = state
    return [version, list(internal), gauss]


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    npst = state["numpy"]
    np_state = ("MT19937", npst["keys"].numpy().astype(np.uint32), npst["pos"], npst["has_gauss"],
                npst["cached_gaussian"])
    np.random.set_state(np_state)  # noqa: NPY002
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
