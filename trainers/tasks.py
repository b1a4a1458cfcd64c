"""One object per kind of dataset — classification, regression, language modelling — saying how to train and score it.

A task knows its loss, what one evaluation unit is (an example, or a ``block_size`` window of a
token stream), how to gather a chunk of units, and which per-split scores it reports (accuracy or
R²); ``Task.evaluate`` runs the shared evaluation over the train subset and the test split. The
trainer picks the task from ``DataBundle.task`` with :func:`task_of` and never branches on it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from htsweep.trainers.teacher_student import teacher_student_metrics

if TYPE_CHECKING:  # trainers.data imports lm_windows from here
    from htsweep.trainers.data import DataBundle

__all__ = ["EVAL_CHUNK", "TASKS", "Classification", "LanguageModel", "Regression", "Task", "lm_windows", "task_of"]

EVAL_CHUNK = 1024
"""Evaluation units per forward pass (bounds evaluation memory, not the result)."""


def lm_windows(ids: torch.Tensor, starts: torch.Tensor, block_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and next-token targets of the windows of ``block_size`` tokens starting at ``starts``.

    Parameters
    ----------
    ids : Tensor of shape (n_tokens,)
    starts : Tensor of shape (k,)
        First token of each window; ``start + block_size`` must be a valid index.
    block_size : int

    Returns
    -------
    (x, y) : Tensors of shape (k, block_size)
        ``y`` is ``x`` shifted by one token.

    Examples
    --------
    >>> x, y = lm_windows(torch.arange(10), torch.tensor([0, 4]), 3)
    >>> x.tolist(), y.tolist()
    ([[0, 1, 2], [4, 5, 6]], [[1, 2, 3], [5, 6, 7]])
    """
    offsets = starts.to(ids.device)[:, None] + torch.arange(block_size + 1, device=ids.device)[None, :]
    window = ids[offsets]
    return window[:, :-1], window[:, 1:]


class Task:
    """How one kind of dataset is trained and evaluated; this base is classification."""

    name: ClassVar[str] = "classification"

    @classmethod
    def from_data(cls, data: DataBundle) -> Task:
        """The task for ``data`` (whose ``task`` is this one's ``name``)."""
        return cls()

    def loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The training (and evaluation) loss of model outputs ``out`` against targets ``y``."""
        return F.cross_entropy(out, y)

    def n_units(self, x: torch.Tensor) -> int:
        """How many evaluation units the split with inputs ``x`` holds."""
        return int(x.shape[0])

    def units(self, x: torch.Tensor, y: torch.Tensor | None,
              which: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs and targets of the evaluation units ``which``."""
        return x[which], y[which]

    def n_correct(self, out: torch.Tensor, y: torch.Tensor) -> float:
        """Correct predictions among ``y.numel()`` targets (0 for a task without accuracy)."""
        return float((out.argmax(-1) == y).sum())

    def scores(self, split: str, loss: float, accuracy: float, y: torch.Tensor | None) -> dict[str, float]:
        """Per-split scores besides the loss, keyed ``<split>_<score>``; ``y``: the targets scored."""
        return {f"{split}_acc": accuracy}

    def extra_metrics(self, model: nn.Module, data: DataBundle) -> dict[str, float]:
        """Model-level metrics this task adds to every evaluation."""
        return {}

    @torch.no_grad()
    def evaluate_batches(self, model: nn.Module,
                         batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> tuple[float, float, torch.Tensor]:
        """Mean loss, accuracy and the targets scored, over ``batches`` of ``(x, y)``."""
        total_loss, correct, count, ys = 0.0, 0.0, 0, []
        for xb, yb in batches:
            out = model(xb)
            k = yb.numel()
            total_loss += float(self.loss(out.float(), yb)) * k
            correct += self.n_correct(out, yb)
            count += k
            ys.append(yb)
        return total_loss / max(count, 1), correct / max(count, 1), torch.cat(ys) if ys else torch.empty(0)

    def evaluate_split(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor | None,
                       idx: torch.Tensor | None) -> tuple[float, float, torch.Tensor]:
        """:meth:`evaluate_batches` over the evaluation units ``idx`` (all when None) of one in-memory split."""
        which = idx if idx is not None else torch.arange(self.n_units(x), device=x.device)
        return self.evaluate_batches(model, (self.units(x, y, chunk) for chunk in torch.split(which, EVAL_CHUNK)))

    def summarize_splits(self, train: tuple[float, float, torch.Tensor],
                  test: tuple[float, float, torch.Tensor]) -> dict[str, float]:
        """``train_loss, test_loss, gen_gap`` and the per-split scores of two :meth:`evaluate_batches` results."""
        metrics = {"train_loss": train[0], "test_loss": test[0], "gen_gap": test[0] - train[0]}
        metrics.update(self.scores("train", *train))
        metrics.update(self.scores("test", *test))
        return metrics

    def evaluate(self, model: nn.Module, data: DataBundle, train_idx: torch.Tensor | None) -> dict[str, float]:
        """``train_loss, test_loss, gen_gap``, the task's per-split scores and its extra metrics.

        Parameters
        ----------
        model : nn.Module
            Evaluated as it is (the caller sets eval mode).
        data : DataBundle
        train_idx : Tensor, optional
            Train-split units to score (all when None); the test split is always scored whole.
        """
        metrics = self.summarize_splits(self.evaluate_split(model, data.x_train, data.y_train, train_idx),
                                 self.evaluate_split(model, data.x_test, data.y_test, None))
        metrics.update(self.extra_metrics(model, data))
        return metrics


class Classification(Task):
    """Cross-entropy over classes; reports accuracy."""


class Regression(Task):
    """Mean squared error; reports R² = 1 − MSE / Var(y), and the teacher–student metrics when there is a teacher."""

    name: ClassVar[str] = "regression"

    def loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(out, y)

    def n_correct(self, out: torch.Tensor, y: torch.Tensor) -> float:
        return 0.0

    def scores(self, split: str, loss: float, accuracy: float, y: torch.Tensor | None) -> dict[str, float]:
        # R² is the share of the targets' variance the model explains
        var = float(((y - y.mean(dim=0)) ** 2).mean())
        return {f"{split}_r2": 1.0 - loss / var if var > 0 else math.nan}

    def extra_metrics(self, model: nn.Module, data: DataBundle) -> dict[str, float]:
        if getattr(data, "teacher", None) is not None and hasattr(model, "features"):
            return teacher_student_metrics(model, data)
        return {}


@dataclass(frozen=True)
class LanguageModel(Task):
    """Next-token cross-entropy and accuracy over non-overlapping ``block_size`` windows of a token stream."""

    block_size: int
    name: ClassVar[str] = "language_model"

    @classmethod
    def from_data(cls, data: DataBundle) -> LanguageModel:
        return cls(int(data.block_size))

    def loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1))

    def n_units(self, x: torch.Tensor) -> int:
        return max(0, (x.shape[0] - 1) // self.block_size)

    def units(self, x: torch.Tensor, y: torch.Tensor | None,
              which: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return lm_windows(x, which * self.block_size, self.block_size)


TASKS: dict[str, type[Task]] = {t.name: t for t in (Classification, Regression, LanguageModel)}
"""``DataBundle.task`` name → task class."""


def task_of(data: DataBundle) -> Task:
    """The task object of ``data.task`` (a language model takes its ``block_size`` from ``data``).

    Raises
    ------
    ValueError
        An unknown task name.
    """
    if data.task not in TASKS:
        raise ValueError(f"unknown task {data.task!r}; choose one of {', '.join(map(repr, TASKS))}")
    return TASKS[data.task].from_data(data)
