"""Checkpoint files and random state: seeding, RNG state capture/restore, atomic checkpoint read/write.

A trainer checkpoint is a ``torch.save`` dict tagged ``"format": CHECKPOINT_FORMAT`` and loadable
with ``weights_only=True``, so it holds only tensors and plain containers; the RNG states are
stored in that form too. What goes into the dict is the trainer's business
(``Trainer.save_checkpoint``); this module writes it atomically, reads it back, and checks that a
run may be resumed from it.
"""

from __future__ import annotations

import os
import random
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:
    from htsweep.trainers.config import TrainConfig

__all__ = [
    "CHECKPOINT_FORMAT",
    "check_resumable",
    "read_checkpoint",
    "rng_state",
    "seed_everything",
    "set_rng_state",
    "write_checkpoint",
]

CHECKPOINT_FORMAT = "htsweep-trainer-checkpoint/1"


def seed_everything(seed: int) -> None:
    """Seed python's ``random``, numpy's legacy global RNG and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002  (code we call may use the legacy global RNG)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """The torch / numpy / python (and, once initialized, CUDA) RNG states, as tensors and plain values."""
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


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore the RNG states captured by :func:`rng_state` (CUDA only when a GPU is present)."""
    torch.set_rng_state(state["torch"])
    npst = state["numpy"]
    np_state = ("MT19937", npst["keys"].numpy().astype(np.uint32), npst["pos"], npst["has_gauss"],
                npst["cached_gaussian"])
    np.random.set_state(np_state)  # noqa: NPY002
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def write_checkpoint(path: str | os.PathLike, ckpt: Mapping[str, Any]) -> Path:
    """``torch.save`` ``ckpt`` (tagged with the format) to ``path`` atomically; return ``path``.

    A crash mid-write leaves the previous file intact: the dict goes to ``<path>.tmp`` first and
    is then renamed over ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"format": CHECKPOINT_FORMAT, **ckpt}, tmp)
    os.replace(tmp, path)
    return path


def read_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load a trainer checkpoint onto the CPU (``weights_only=True``).

    Raises
    ------
    ValueError
        The file cannot be read, or it is not a trainer checkpoint.
    """
    try:
        ckpt = torch.load(Path(path), map_location="cpu", weights_only=True)
    except (OSError, RuntimeError) as exc:
        raise ValueError(f"cannot read checkpoint {str(path)!r}: {exc}") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{str(path)!r} is not a trainer checkpoint (format {CHECKPOINT_FORMAT!r})")
    return ckpt


def check_resumable(ckpt: Mapping[str, Any], config: TrainConfig, path: str | os.PathLike) -> None:
    """Raise ``ValueError`` unless a run under ``config`` can continue from ``ckpt`` (read from ``path``).

    Model and dataset must match, and alpha_balance must be on in both or off in both.
    """
    saved = ckpt["config"]
    for key in ("model", "dataset"):
        if saved.get(key) != getattr(config, key):
            raise ValueError(f"checkpoint {str(path)!r} was made with {key}={saved.get(key)!r}, "
                             f"this trainer has {key}={getattr(config, key)!r}")
    if (saved.get("alpha_balance") is None) != (config.alpha_balance is None):
        # per-layer parameter groups exist only with alpha_balance; the optimizer state would not fit
        raise ValueError(f"checkpoint {str(path)!r} was made with alpha_balance={saved.get('alpha_balance')!r}, "
                         f"this trainer has alpha_balance={config.alpha_balance!r}")
