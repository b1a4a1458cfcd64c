"""Optimizers and learning-rate schedules by name, each name checked against a fixed set.

Optimizers: ``sgd`` (plain, momentum 0), ``momentum`` (heavy-ball SGD), ``adam``, ``adamw``.
Schedules (stepped once per optimizer step): ``constant``, ``cosine`` (to 0 over the run),
``step`` (multiply by ``gamma`` every ``step_size`` steps, as ``torch.optim.lr_scheduler.StepLR``).

Per-layer learning rates: :func:`layer_param_groups` gives every weight layer its own named
parameter group, and :func:`scaled_lr` multiplies each group's scheduled lr by a factor around one
optimizer step, so the schedule itself never sees the factors (they compose with any schedule).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from htsweep.trainers.models import _check_choice

__all__ = ["OPTIMIZERS", "OTHER_GROUP", "SCHEDULES", "build_optimizer", "build_scheduler", "layer_param_groups",
           "scaled_lr"]

OPTIMIZERS: tuple[str, ...] = ("sgd", "momentum", "adam", "adamw")
SCHEDULES: tuple[str, ...] = ("constant", "cosine", "step")
OTHER_GROUP = "other"
"""Name of the parameter group holding everything outside a weight layer (norms, fused projections)."""
_LAYER_MODULES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Embedding)


def layer_param_groups(model: nn.Module) -> list[dict[str, Any]]:
    """One named optimizer parameter group per weight layer, plus one for everything else.

    A weight layer is a ``Linear``, ``Conv1d``, ``Conv2d`` or ``Embedding`` module; its group holds
    its own parameters (weight and bias) and is named like the module, which is also the name
    ``analysis.extract_layers`` gives the layer's matrix. The remaining parameters (norms, a
    ``MultiheadAttention``'s packed in-projection ...) form the group ``OTHER_GROUP``.

    Parameters
    ----------
    model : nn.Module

    Returns
    -------
    list of dict
        ``{"name": str, "params": list of Parameter}`` in module order, ``OTHER_GROUP`` last (left
        out when empty); frozen parameters are skipped, empty groups dropped.

    Examples
    --------
    >>> net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.LayerNorm(3), torch.nn.Linear(3, 2))
    >>> [(g["name"], len(g["params"])) for g in layer_param_groups(net)]
    [('0', 2), ('2', 2), ('other', 2)]
    """
    groups, seen = [], set()
    for name, module in model.named_modules():
        if not isinstance(module, _LAYER_MODULES):
            continue
        params = [p for p in module.parameters(recurse=False) if p.requires_grad and id(p) not in seen]
        seen.update(id(p) for p in params)
        if params:
            groups.append({"name": name or type(module).__name__.lower(), "params": params})
    rest = [p for p in model.parameters() if p.requires_grad and id(p) not in seen]
    if rest:
        groups.append({"name": OTHER_GROUP, "params": rest})
    return groups


@contextmanager
def scaled_lr(optimizer: torch.optim.Optimizer, factors: Mapping[str, float]) -> Iterator[None]:
    """Multiply each named group's ``lr`` by ``factors[name]`` inside the block, then restore it.

    Wrap ``optimizer.step()`` in it: the step uses ``lr · factor`` while the scheduler, stepped
    afterwards, reads and writes the unscaled values (restored exactly), so any schedule composes
    with the factors and checkpoints hold the scheduled lr.

    Parameters
    ----------
    optimizer : torch.optim.Optimizer
        Groups without a ``"name"``, or whose name is not in ``factors``, keep their lr.
    factors : mapping of str to float
    """
    saved = []
    for group in optimizer.param_groups:
        factor = factors.get(group.get("name"), 1.0)
        if factor != 1.0:
            saved.append((group, group["lr"]))
            group["lr"] = group["lr"] * factor
    try:
        yield
    finally:
        for group, lr in saved:
            group["lr"] = lr


def build_optimizer(name: str, params: Iterable[torch.nn.Parameter] | Iterable[dict[str, Any]], *, lr: float,
                    momentum: float = 0.9, weight_decay: float = 0.0, **kwargs: Any) -> torch.optim.Optimizer:
    """Build an optimizer by name over the parameters that require gradients.

    Parameters
    ----------
    name : {'sgd', 'momentum', 'adam', 'adamw'}
    params : iterable of Parameter, or of parameter-group dicts
        Frozen parameters (``requires_grad=False``) are skipped. Group dicts (e.g. from
        :func:`layer_param_groups`) keep their extra keys, such as ``"name"``.
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
    items = list(params)
    if items and isinstance(items[0], dict):
        trainable: list[Any] = [{**g, "params": [p for p in g["params"] if p.requires_grad]} for g in items]
        trainable = [g for g in trainable if g["params"]]
    else:
        trainable = [p for p in items if p.requires_grad]
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
