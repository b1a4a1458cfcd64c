"""What defines one training run: ``TrainConfig``, validated from a table of field constraints.

Numeric fields are checked with the constraint forms of :mod:`analysis._validation` (the one
validation mechanism of the library); names (model, dataset, optimizer, schedule) with the
registries' did-you-mean check. Every violation raises ``ValueError`` naming the field, the
allowed values and the value received, so a sweep spec fails before any trial starts.
"""

from __future__ import annotations

import dataclasses
import math
import operator
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from htsweep.analysis._validation import Interval, Options, check_value
from htsweep.trainers.alpha_balance import AlphaBalanceConfig
from htsweep.trainers.data import DATASETS, check_data_kwargs
from htsweep.trainers.models import MODELS, _check_choice, _did_you_mean
from htsweep.trainers.optim import OPTIMIZERS, SCHEDULES
from htsweep.trainers.precision import check_precision
from htsweep.trainers.tasks import TASKS
from htsweep.trainers.user_code import is_import_path

__all__ = ["LOADERS", "TrainConfig", "resolve_device"]

LOADERS = ("auto", "memory", "dataloader")
"""Ways the trainer reads training batches (``TrainConfig.loader``)."""

# An explicit right bound of inf (not None) keeps inf itself out: Interval leaves unbounded sides open-ended.
_POSITIVE = Interval(float, 0.0, math.inf, closed="neither")
_NON_NEGATIVE = Interval(float, 0.0, math.inf, closed="left")
_UNIT = Interval(float, 0.0, 1.0, closed="left")
_COUNT = Interval(int, 1, None, closed="left")
_EVERY = Interval(int, 0, None, closed="left")

_FIELD_CONSTRAINTS: dict[str, list[Any]] = {
    "batch_size": [_COUNT, Options({"full"})],
    "lr": [_POSITIVE],
    "momentum": [_UNIT],
    "weight_decay": [_NON_NEGATIVE],
    "dropout": [_UNIT],
    "lr_step_size": [_COUNT, None],
    "lr_gamma": [_POSITIVE],
    "epochs": [_COUNT, None],
    "steps": [_COUNT, None],
    "eval_every": [_EVERY, None],
    "spectral_every": [_EVERY, None],
    "eval_samples": [_COUNT, None],
    "grad_clip": [_POSITIVE, None],
    "seed": [Interval(int, 0, None, closed="left")],
    "threads": [_COUNT, None],
    "checkpoint_every": [_COUNT, None],
    "num_workers": [Interval(int, 0, None, closed="left")],
}
"""Numeric field → allowed forms (``analysis._validation`` table entries)."""


def _parsed(value: Any, kind: type) -> Any:
    """``value`` as a built-in ``kind`` when it reads as one, else unchanged (for the check to reject).

    YAML leaves numbers such as ``1e-3`` as text, and numpy/torch scalars come from sweeps, so
    both are read as the field's kind; a float is never truncated to an int.
    """
    if value is None or isinstance(value, bool):
        return value
    try:
        if kind is float:
            return float(value)
        return int(value) if isinstance(value, str) else operator.index(value)
    except (TypeError, ValueError):
        return value


def _checked(name: str, value: Any) -> Any:
    specs = _FIELD_CONSTRAINTS[name]
    kind = next(c.kind for c in specs if isinstance(c, Interval))
    out = _parsed(value, kind)
    check_value(name, out, specs, error=ValueError)
    return out


@dataclass
class TrainConfig:
    """Everything that defines one training run (one sweep trial).

    Parameters
    ----------
    model : {'mlp3', 'lenet5', 'minialexnet', 'student', 'char_gpt'} or str, default='mlp3'
        A registered name or the import path of the user's factory, ``"package.module:factory"``
        (see ``trainers.models.build_model``).
    dataset : {'teacher_student', 'digits', 'mnist5k', 'text', 'mnist', 'cifar10', 'svhn'} or str, default='digits'
        A registered name or the import path of the user's dataset factory.
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
    task : {'classification', 'regression', 'language_model'}, optional
        Overrides the task inferred from a user's Datasets (e.g. integer targets read as
        regression values); for a registered dataset it must be the dataset's own.
    loader : {'auto', 'memory', 'dataloader'}, default='auto'
        How training batches are read. ``'memory'``: the data as tensors on the device, batches by
        indexing (``trainers.data.Batcher``); Dataset items are read once and stacked, so a random
        transform is drawn once. ``'dataloader'``: Dataset items through
        ``torch.utils.data.DataLoader`` every epoch (``trainers.loader.LoaderBatcher``), so
        transforms and augmentation run per read. ``'auto'``: memory for registered datasets and
        for pairs of ``TensorDataset`` s (faster, see ``benchmarks/bench_loader.py``), the
        DataLoader for any other Dataset.
    num_workers : int, default=0
        DataLoader worker processes (``loader='dataloader'``).
    pin_memory : bool, optional
        Page-locked batches copied without blocking; default: on when training on CUDA.
    persistent_workers : bool, default=True
        Keep DataLoader workers alive across epochs.
    precision : {'32', 'bf16-mixed', '16-mixed'}, default='32'
        Mixed precision runs the forward pass and loss under ``torch.autocast`` (weights and
        optimizer stay float32); ``'16-mixed'`` (CUDA only) adds gradient scaling
        (``trainers.precision``).
    channels_last : bool, default=False
        Model and image batches in channels-last memory format (faster convolutions on GPUs).
    compile : bool, default=False
        Train through ``torch.compile(model)`` (the model itself, its names and checkpoints are unchanged).
    alpha_balance : dict, optional
        Alpha-guided per-layer learning rates (``trainers.alpha_balance.AlphaBalanceConfig``
        settings: ``target, method, min_factor, max_factor, metric, gain, exclude_first,
        exclude_last``; stored with defaults filled in). When set, every layer gets its own
        optimizer parameter group and the trainer appends an ``AlphaBalance`` callback.

    Raises
    ------
    ValueError
        Any invalid value; the message names the field, what it allows and the value given.
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
    task: str | None = None
    loader: str = "auto"
    num_workers: int = 0
    pin_memory: bool | None = None
    persistent_workers: bool = True
    precision: str = "32"
    channels_last: bool = False
    compile: bool = False
    alpha_balance: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        # An import path ("pkg.module:factory") is the user's code: it is imported where the model
        # or data is built (``build_model``, ``load_user_dataset``), not here.
        if not is_import_path(self.model):
            _check_choice("model", self.model, MODELS)
        if not is_import_path(self.dataset):
            _check_choice("dataset", self.dataset, DATASETS)
        _check_choice("optimizer", self.optimizer, OPTIMIZERS)
        _check_choice("schedule", self.schedule, SCHEDULES)
        _check_choice("loader", self.loader, LOADERS)
        if self.task is not None:
            _check_choice("task", self.task, TASKS)
        self.precision = check_precision(self.precision)
        for name, allowed in (("pin_memory", (bool, type(None))), ("persistent_workers", (bool,)),
                              ("channels_last", (bool,)), ("compile", (bool,))):
            if not isinstance(getattr(self, name), allowed):
                raise ValueError(f"{name} must be true or false, got {getattr(self, name)!r}")
        if (self.epochs is None) == (self.steps is None):
            raise ValueError(f"set exactly one of epochs or steps (got epochs={self.epochs!r}, steps={self.steps!r})")
        for name in _FIELD_CONSTRAINTS:
            setattr(self, name, _checked(name, getattr(self, name)))
        if self.device not in ("auto", "cpu", "cuda") and not str(self.device).startswith("cuda:"):
            raise ValueError(f"unknown device {self.device!r}; choose one of 'auto', 'cpu', 'cuda', 'cuda:<index>'")
        for name in ("model_kwargs", "data_kwargs", "optimizer_kwargs"):
            value = getattr(self, name)
            if not isinstance(value, Mapping):
                raise ValueError(f"{name} must be a mapping, got {type(value).__name__}")
            setattr(self, name, dict(value))
        if not is_import_path(self.dataset):
            check_data_kwargs(self.dataset, self.data_kwargs)
        if self.checkpoint_every is not None and not self.checkpoint_dir:
            raise ValueError("checkpoint_every needs checkpoint_dir")
        if self.batch_size == "full" and self.dataset == "text":
            raise ValueError("batch_size='full' is not supported for the text (language-model) dataset")
        if self.alpha_balance is not None:
            self.alpha_balance = AlphaBalanceConfig.from_dict(self.alpha_balance).to_dict()

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
