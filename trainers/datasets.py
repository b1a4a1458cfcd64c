"""Data held as a pair of map-style ``torch.utils.data.Dataset`` s: ``DatasetPair`` and ``from_datasets``.

A user's own data reach the trainer as a ``(train, test)`` pair of Datasets yielding ``(x, y)``
items; :func:`from_datasets` checks the pair once and infers what the trainer and the model
builders need (task, input shape, class count, vocabulary size, block size). The trainer then
streams the items through ``torch.utils.data.DataLoader`` (``trainers.loader``), so the
Dataset's own transforms and augmentation run per item, or copies them into a ``DataBundle``
of tensors (:func:`to_bundle`) when that is the faster path and the items are fixed.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils.data import IterableDataset, TensorDataset

from htsweep.trainers.data import DataBundle
from htsweep.trainers.models import _check_choice

__all__ = ["TASK_NAMES", "DatasetPair", "from_bundle", "from_datasets", "is_fixed", "to_bundle"]

TASK_NAMES = ("classification", "regression", "language_model")


@dataclass
class DatasetPair:
    """A dataset held as train and test map-style ``Dataset`` s of ``(x, y)`` items.

    Attributes
    ----------
    name : str
        What the data are called (the spec's ``dataset`` entry, for messages and tags).
    task : {'classification', 'regression', 'language_model'}
    train, test : torch.utils.data.Dataset
        Map-style (``__len__`` and ``__getitem__``); item ``i`` is ``(x, y)``.
    input_shape : tuple of int
        Shape of one ``x``, e.g. ``(3, 32, 32)``; for a language model ``(block_size,)``.
    n_classes : int or None
        Number of classes (classification only).
    vocab_size, block_size : int or None
        Token-id range and window length (language_model only).
    meta : dict
        Provenance (JSON-safe).
    """

    name: str
    task: str
    train: Any
    test: Any
    input_shape: tuple[int, ...]
    n_classes: int | None = None
    vocab_size: int | None = None
    block_size: int | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def n_train(self) -> int:
        """Number of training items."""
        return len(self.train)

    @property
    def in_channels(self) -> int | None:
        """``input_shape[0]`` for image-like inputs ``(c, h, w)``, else None."""
        return self.input_shape[0] if len(self.input_shape) == 3 else None


def _check_map_style(role: str, ds: Any) -> None:
    if isinstance(ds, IterableDataset):
        raise ValueError(f"{role} is an IterableDataset; htsweep needs a map-style Dataset "
                         "(with __len__ and __getitem__) so batches can be shuffled and resumed")
    if isinstance(ds, (str, bytes, Mapping)) or not (hasattr(ds, "__getitem__") and hasattr(ds, "__len__")):
        raise ValueError(f"{role} is not a map-style torch.utils.data.Dataset (got {type(ds).__name__}); "
                         "it needs __len__ and __getitem__ returning (x, y)")
    try:
        n = len(ds)
    except Exception as exc:  # noqa: BLE001 - the user's __len__ may raise anything
        raise ValueError(f"len({role}) raised {type(exc).__name__}: {exc}") from None
    if n == 0:
        raise ValueError(f"{role} is empty")


def _item(role: str, ds: Any, i: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Item ``i`` of ``ds`` as a pair of tensors, or a one-line ``ValueError`` saying what is wrong."""
    try:
        item = ds[i]
    except Exception as exc:  # noqa: BLE001 - the user's __getitem__ may raise anything
        raise ValueError(f"{role}[{i}] raised {type(exc).__name__}: {exc}") from None
    if not isinstance(item, (tuple, list)) or len(item) != 2:
        what = f"a {len(item)}-tuple" if isinstance(item, (tuple, list)) else f"a {type(item).__name__}"
        raise ValueError(f"items of {role} must be (x, y) pairs; {role}[{i}] is {what}")
    out = []
    for part, value in zip(("x", "y"), item, strict=True):
        try:
            out.append(torch.as_tensor(value))
        except (TypeError, ValueError, RuntimeError):
            raise ValueError(f"{part} of {role}[{i}] is a {type(value).__name__}, not a tensor, array or "
                             "number") from None
    return out[0], out[1]


def _infer_task(x: torch.Tensor, y: torch.Tensor) -> str:
    if y.is_floating_point():
        return "regression"
    if y.dtype == torch.bool or y.is_complex():
        raise ValueError(f"targets of dtype {y.dtype} are neither class ids (int) nor regression values (float)")
    if y.ndim >= 1 and not x.is_floating_point() and x.shape == y.shape:
        return "language_model"  # integer token windows with next-token targets
    return "classification"


def _targets(ds: Any) -> torch.Tensor | None:
    """The labels of every item when ``ds`` exposes them without loading items (torchvision's ``targets``)."""
    for attr in ("targets", "labels"):
        values = getattr(ds, attr, None)
        if values is not None:
            try:
                t = torch.as_tensor(np.asarray(values))
            except (TypeError, ValueError):
                return None
            return t if t.ndim == 1 and len(t) == len(ds) else None
    return None


def _scan_max(role: str, ds: Any, parts: tuple[int, ...]) -> int:
    """The largest integer over parts ``parts`` (0 = x, 1 = y) of every item of ``ds``."""
    best = -1
    for i in range(len(ds)):
        pair = _item(role, ds, i)
        for p in parts:
            t = pair[p]
            if t.is_floating_point():
                raise ValueError(f"{'xy'[p]} of {role}[{i}] is floating point; expected integer ids")
            if t.numel():
                if int(t.min()) < 0:
                    raise ValueError(f"{'xy'[p]} of {role}[{i}] holds a negative id {int(t.min())}")
                best = max(best, int(t.max()))
    return best


def _n_classes(train: Any) -> int:
    declared = getattr(train, "n_classes", None)
    if isinstance(declared, numbers.Integral):
        return int(declared)
    labels = _targets(train)
    if labels is not None and not labels.is_floating_point():
        if int(labels.min()) < 0:
            raise ValueError(f"train targets hold a negative class id {int(labels.min())}")
        return int(labels.max()) + 1
    return _scan_max("train", train, (1,)) + 1


def from_datasets(train: Any, test: Any, *, name: str, task: str | None = None) -> DatasetPair:
    """Check a ``(train, test)`` pair of map-style Datasets and describe it as a ``DatasetPair``.

    Item 0 of each split is read to check the ``(x, y)`` form and to infer the task: integer
    scalar targets are ``classification``, floating-point targets ``regression``, integer
    target windows of an integer input's shape ``language_model``.

    Parameters
    ----------
    train, test : torch.utils.data.Dataset
        Map-style datasets (``__len__``, ``__getitem__``) whose items are ``(x, y)``; ``x`` and ``y``
        may be tensors, numpy arrays or numbers.
    name : str
        What the data are called (spec entry, messages, checkpoints).
    task : {'classification', 'regression', 'language_model'}, optional
        Overrides the inferred task (e.g. integer targets read as regression values).

    Returns
    -------
    DatasetPair
        ``n_classes`` comes from ``train.n_classes``, else ``train.targets`` (torchvision), else a
        scan of every train label; a language model's ``vocab_size`` from ``train.vocab_size``,
        else a scan of every train token.

    Raises
    ------
    ValueError
        A split that is not a map-style Dataset or is empty, items that are not ``(x, y)``,
        inputs whose shapes differ between the splits, targets that do not fit the task, an
        unknown ``task``. One line each, naming the split and the item.

    Examples
    --------
    >>> from torch.utils.data import TensorDataset
    >>> x, y = torch.randn(20, 3), torch.arange(20) % 4
    >>> pair = from_datasets(TensorDataset(x[:15], y[:15]), TensorDataset(x[15:], y[15:]), name="toy")
    >>> pair.task, pair.input_shape, pair.n_classes
    ('classification', (3,), 4)
    """
    if task is not None:
        _check_choice("task", task, TASK_NAMES)
    for role, ds in (("train", train), ("test", test)):
        _check_map_style(role, ds)
    x_tr, y_tr = _item("train", train, 0)
    x_te, y_te = _item("test", test, 0)
    inferred = _infer_task(x_tr, y_tr)
    task = task or inferred
    if x_tr.shape != x_te.shape and task != "language_model":
        raise ValueError(f"train inputs have shape {tuple(x_tr.shape)} but test inputs {tuple(x_te.shape)}")
    if y_tr.is_floating_point() != y_te.is_floating_point():
        raise ValueError(f"train targets are {y_tr.dtype} but test targets {y_te.dtype}")
    pair = DatasetPair(name, task, train, test, input_shape=tuple(x_tr.shape),
                       meta={"source": "datasets", "n_train": len(train), "n_test": len(test)})
    if task == "classification":
        if y_tr.is_floating_point() or y_tr.ndim != 0:
            raise ValueError(f"task 'classification' needs one integer class id per item; train[0] has a "
                             f"{y_tr.dtype} target of shape {tuple(y_tr.shape)}")
        pair.n_classes = _n_classes(train)
    elif task == "language_model":
        if x_tr.ndim != 1 or x_tr.is_floating_point() or y_tr.shape != x_tr.shape:
            raise ValueError("task 'language_model' needs items (x, y) of integer token ids of one shape "
                             f"(block_size,); train[0] has x {tuple(x_tr.shape)} {x_tr.dtype}, "
                             f"y {tuple(y_tr.shape)} {y_tr.dtype}")
        declared = getattr(train, "vocab_size", None)
        vocab = int(declared) if isinstance(declared, numbers.Integral) else _scan_max("train", train, (0, 1)) + 1
        pair.vocab_size, pair.block_size = vocab, int(x_tr.shape[0])
    return pair


def is_fixed(pair: DatasetPair) -> bool:
    """True when both splits are ``TensorDataset`` s: items are fixed tensors, with no per-item transform."""
    return isinstance(pair.train, TensorDataset) and isinstance(pair.test, TensorDataset)


def _stack(role: str, ds: Any) -> tuple[torch.Tensor, torch.Tensor]:
    if isinstance(ds, TensorDataset) and len(ds.tensors) == 2:
        return ds.tensors[0], ds.tensors[1]
    xs, ys = zip(*(_item(role, ds, i) for i in range(len(ds))), strict=True)
    return torch.stack(xs), torch.stack(ys)


def to_bundle(pair: DatasetPair) -> DataBundle:
    """Every item of ``pair`` stacked into an in-memory ``DataBundle`` (one read of each item).

    A random transform is drawn once per item here, so use it for fixed items (:func:`is_fixed`).

    Raises
    ------
    ValueError
        A language-model pair (in memory, a language model is one token stream, not windows).
    """
    if pair.task == "language_model":
        raise ValueError("loader='memory' does not hold language-model Datasets (windows); use loader='dataloader'")
    (x_tr, y_tr), (x_te, y_te) = _stack("train", pair.train), _stack("test", pair.test)
    if x_tr.is_floating_point():
        x_tr, x_te = x_tr.float(), x_te.float()
    if pair.task == "regression":
        y_tr, y_te = y_tr.float(), y_te.float()
    return DataBundle(pair.name, pair.task, x_tr, y_tr, x_te, y_te, input_shape=pair.input_shape,
                      n_classes=pair.n_classes, meta=dict(pair.meta))


def from_bundle(bundle: DataBundle) -> DatasetPair:
    """A supervised ``DataBundle`` as a pair of ``TensorDataset`` s (on the CPU), for the DataLoader path.

    Raises
    ------
    ValueError
        A language-model bundle (its training batches are random windows of one stream).
    """
    if bundle.task == "language_model":
        raise ValueError(f"dataset {bundle.name!r} is a token stream; loader='dataloader' needs Datasets of "
                         "windows, so use loader='memory' (or 'auto')")
    cpu = bundle.to("cpu")
    return DatasetPair(bundle.name, bundle.task, TensorDataset(cpu.x_train, cpu.y_train),
                       TensorDataset(cpu.x_test, cpu.y_test), input_shape=bundle.input_shape,
                       n_classes=bundle.n_classes, meta=dict(bundle.meta))
