"""Build a run's trainer once and push one training batch through its model, without training.

A sweep calls :func:`dry_run` on the driver before any trial starts when the spec names the
user's code, so an import path that does not import, a factory that raises or returns the wrong
thing, or a model whose shapes do not fit the data is one line naming the spec field, not a
traceback from every trial.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import torch

from htsweep.trainers.config import TrainConfig
from htsweep.trainers.user_code import UserCodeError

__all__ = ["dry_run"]

_PROBE_BATCH = 16  # enough items for batch norm's batch statistics, cheap on any model


def _one_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {' '.join(str(exc).split())}"[:400]


def dry_run(config: TrainConfig | Mapping[str, Any]) -> None:
    """Build ``Trainer(config)`` on the CPU and compute the loss of one training batch (no step).

    The batch holds at most 16 items; DataLoader workers, compilation and mixed precision are
    left out (they change speed, not shapes).

    Raises
    ------
    UserCodeError
        One line starting with the spec field at fault: ``dataset:`` (the factory or its items),
        ``model:`` (the factory, its forward pass on the batch, or an output that does not fit
        the targets).
    ValueError, TypeError
        Settings the trainer rejects (as ``TrainConfig`` and ``build_model`` raise them).
    """
    from htsweep.trainers.train import Trainer

    cfg = config if isinstance(config, TrainConfig) else TrainConfig.from_dict(config)
    bs = _PROBE_BATCH if cfg.batch_size == "full" else min(int(cfg.batch_size), _PROBE_BATCH)
    light = {"batch_size": bs, "device": "cpu", "checkpoint_dir": None, "checkpoint_every": None,
             "num_workers": 0, "compile": False, "precision": "32", "threads": None}
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    cfg = dataclasses.replace(cfg, **{k: v for k, v in light.items() if k in names})
    trainer = Trainer(cfg)
    x, y, _ = trainer.batcher.next()
    model = trainer.model.train()
    with torch.no_grad():
        try:
            out = model(x)
        except Exception as exc:
            raise UserCodeError(f"model: {cfg.model} fails on a batch of {cfg.dataset} (x of shape "
                                f"{tuple(x.shape)}, {x.dtype}): {_one_line(exc)}") from None
        if not isinstance(out, torch.Tensor):
            raise UserCodeError(f"model: {cfg.model} returned a {type(out).__name__} for a batch; the trainer needs "
                                "one tensor of outputs")
        n_classes = getattr(trainer.data, "n_classes", None)
        if trainer.task.name == "classification" and n_classes and (out.ndim != 2 or out.shape[1] != n_classes):
            raise UserCodeError(f"model: {cfg.model} outputs shape {tuple(out.shape)} for a batch of {len(x)}, but "
                                f"{cfg.dataset} has {n_classes} classes: expected ({len(x)}, {n_classes})")
        try:
            trainer.task.loss(out, y)
        except Exception as exc:
            raise UserCodeError(f"model: the output of {cfg.model} (shape {tuple(out.shape)}) does not fit the "
                                f"{trainer.task.name} targets of {cfg.dataset} (shape {tuple(y.shape)}): "
                                f"{_one_line(exc)}") from None
