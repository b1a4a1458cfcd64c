"""Training precision: autocast for mixed precision and gradient scaling for float16.

``'32'`` trains in float32. ``'bf16-mixed'`` and ``'16-mixed'`` keep the weights and the optimizer
in float32 and run the forward pass (and the loss) under ``torch.autocast`` in bfloat16 or
float16; float16 gradients can underflow, so ``'16-mixed'`` scales the loss with
``torch.amp.GradScaler`` (which skips a step whose gradients overflowed). Because the weights
stay float32, the spectral monitor reads the same matrices whatever the precision.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch

__all__ = ["PRECISIONS", "MixedPrecision", "check_precision"]

PRECISIONS = ("32", "bf16-mixed", "16-mixed")
"""``TrainConfig.precision`` values."""

_AUTOCAST = {"32": None, "bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}


def check_precision(value: Any) -> str:
    """``value`` as one of ``PRECISIONS`` (YAML's number ``32`` reads as ``'32'``).

    Raises
    ------
    ValueError
        Any other value; the message lists the allowed ones.
    """
    text = str(value) if isinstance(value, (int, str)) and not isinstance(value, bool) else value
    if text not in PRECISIONS:
        hint = {"16": " (did you mean '16-mixed'?)", "bf16": " (did you mean 'bf16-mixed'?)"}.get(text, "")
        raise ValueError(f"unknown precision {value!r}{hint}; choose one of {', '.join(map(repr, PRECISIONS))}")
    return text


class MixedPrecision:
    """Autocast context, backward and optimizer step of one training precision on one device.

    Parameters
    ----------
    precision : {'32', 'bf16-mixed', '16-mixed'}
    device : torch.device

    Raises
    ------
    ValueError
        ``'16-mixed'`` off CUDA (float16 autocast is a GPU feature; use ``'bf16-mixed'`` on CPU).
    """

    def __init__(self, precision: str, device: torch.device):
        self.precision, self.device_type = check_precision(precision), torch.device(device).type
        if self.precision == "16-mixed" and self.device_type != "cuda":
            raise ValueError(f"precision '16-mixed' needs a CUDA device, this run is on {self.device_type!r}; "
                             "use 'bf16-mixed' or '32'")
        self.dtype = _AUTOCAST[self.precision]
        self.scaler = torch.amp.GradScaler(self.device_type) if self.precision == "16-mixed" else None

    def autocast(self) -> contextlib.AbstractContextManager:
        """The context the forward pass and loss run in (a no-op at ``'32'``)."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def backward(self, loss: torch.Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def unscale(self, optimizer: torch.optim.Optimizer) -> None:
        """Bring scaled gradients back to their true size (before clipping them)."""
        if self.scaler is not None:
            self.scaler.unscale_(optimizer)

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        """``optimizer.step()``; with a scaler, skipped when gradients overflowed, and the scale updated."""
        if self.scaler is None:
            optimizer.step()
            return
        self.scaler.step(optimizer)
        self.scaler.update()

    def state_dict(self) -> dict[str, Any]:
        """The scaler's state (empty without one)."""
        return self.scaler.state_dict() if self.scaler is not None else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.scaler is not None and state:
            self.scaler.load_state_dict(state)
