"""Optimizers and learning-rate schedules by name, each name checked against a fixed set.

Optimizers: ``sgd`` (plain, momentum 0), ``momentum`` (heavy-ball SGD), ``adam``, ``adamw``.
Schedules (stepped once per optimizer step): ``constant``, ``cosine`` (to 0 over the run),
``step`` (multiply by ``gamma`` every ``step_size`` steps, as ``torch.optim.lr_scheduler.StepLR``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from trainers.models import _check_choice

__all__ = ["OPTIMIZERS", "SCHEDULES", "build_optimizer", "build_scheduler"]

OPTIMIZERS: tuple[str, ...] = ("sgd", "momentum", "adam", "adamw")
SCHEDULES: tuple[str, ...] = ("constant", "cosine", "step")


def build_optimizer(name: str, params: Iterable[torch.nn.Parameter], *, lr: float, momentum: float = 0.9,
                    weight_decay: float = 0.0, **kwargs: Any) -> torch.optim.Optimizer:
    """Build an optimizer by name over the parameters that require gradients.

    Parameters
    ----------
    name : {'sgd', 'momentum', 'adam', 'adamw'}
    params : iterable of Parameter
        Frozen parameters (``requires_grad=False``) are skipped.
    lr : float
        Learning rate (> 0).
    momentum : float, default=0.9
        Used by ``momentum`` only (``sgd`` is momentum-free).
    weight_decay : float, default=0.0
        L2 penalty (``sgd``/``momentum``/``adam``) or decoupled decay (``adamw``).
    **kwargs
        Passed to the torch optimizer (``betas``, ``eps``, ``nesterov`` ...).

    Raises
    ------
    ValueError
        Unknown name (lists the options), or no trainable parameters.
    """
    _check_choice("optimizer", name, OPTIMIZERS)
    trainable = [p for p in params if p.requires_grad]
    if not trainable:
        raise ValueError("the model has no trainable parameters")
    if name in ("sgd", "momentum"):
        m = momentum if name == "momentum" else 0.0
        return torch.optim.SGD(trainable, lr=lr, momentum=m, weight_decay=weight_decay, **kwargs)
    cls = torch.optim.Adam if name == "adam" else torch.optim.AdamW
    return cls(trainable, lr=lr, weight_decay=weight_decay, **kwargs)


def build_scheduler(name: str, optimizer: torch.optim.Optimizer, *, total_steps: int,
                    step_size: int | None = None, gamma: float = 0.1) -> torch.optim.lr_scheduler.LRScheduler:
    """Build a per-step learning-rate schedule by name.

    Parameters
    ----------
    name : {'constant', 'cosine', 'step'}
    optimizer : torch.optim.Optimizer
    total_steps : int
        Length of the run in optimizer steps (the cosine period).
    step_size : int, optional
        Steps between decays for ``step``; default ``max(1, total_steps // 3)``.
    gamma : float, default=0.1
        Decay factor for ``step``.

    Raises
    ------
    ValueError
        Unknown name (lists the options).
    """
    _check_choice("schedule", name, SCHEDULES)
    if name == "constant":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    if name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, int(total_steps)))
    size = int(step_size) if step_size else max(1, int(total_steps) // 3)
    return torch.optim.lr_scheduler.StepLR(optimizer, step_size=size, gamma=gamma)
