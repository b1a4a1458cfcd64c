"""Weight matrices of a model or a file, as named :class:`LayerMatrix` records.

Supported modules: ``Linear``, ``Conv1d``/``Conv2d`` (reshaped to (out, in·k) by default, or one
(out, in) slice per kernel position with ``conv="kernel"``), ``Embedding`` and
``MultiheadAttention`` (the packed in-projection split into Q, K, V, plus the output projection).
Biases, norms and every other 1-D parameter are skipped. Files: a ``.pt`` state dict, a checkpoint
dict holding one under ``"model"``/``"state_dict"``, a pickled ``nn.Module``, or ``.npy``/``.npz``
matrices.
"""

from __future__ import annotations

import pickle
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from analysis._validation import Interval, Options, validate

__all__ = ["LayerMatrix", "extract_layers", "load_matrices", "matrices_from_state_dict"]

_CHECKPOINT_KEYS = ("model", "state_dict", "model_state_dict", "model_state")


@dataclass(frozen=True)
class LayerMatrix:
    """One weight matrix to analyze.

    Attributes
    ----------
    name : str
        Qualified name (``"encoder.fc1"``, ``"conv1[0,1]"``, ``"attn.q"``).
    kind : str
        ``"linear"``, ``"conv2d"``, ``"conv1d"``, ``"embedding"``, ``"attn_q"``, ``"attn_k"``,
        ``"attn_v"``, ``"attn_out"``, or ``"matrix"`` for a bare array from a file.
    matrix : torch.Tensor of shape (rows, cols)
        Detached copy of the weights, on the device they came from.
    n, m : int
        ``n = max(rows, cols)``, ``m = min(rows, cols)`` (N ≥ M).
    """

    name: str
    kind: str
    matrix: torch.Tensor = field(repr=False)
    n: int
    m: int

    @classmethod
    def from_tensor(cls, name: str, kind: str, matrix: torch.Tensor) -> LayerMatrix:
        """Build a record from a 2-D tensor, filling ``n`` and ``m``."""
        rows, cols = int(matrix.shape[0]), int(matrix.shape[1])
        return cls(name=name, kind=kind, matrix=matrix, n=max(rows, cols), m=min(rows, cols))

    @property
    def q(self) -> float:
        """Aspect ratio Q = N / M ≥ 1."""
        return self.n / self.m


def _conv_matrices(name: str, kind: str, weight: torch.Tensor, conv: str) -> list[tuple[str, str, torch.Tensor]]:
    """(out, in, *k) conv weight → one reshaped matrix, or one (out, in) slice per kernel position."""
    if conv == "reshape":
        return [(name, kind, weight.reshape(weight.shape[0], -1))]
    out = []
    for pos in np.ndindex(*weight.shape[2:]):
        label = ",".join(str(p) for p in pos)
        out.append((f"{name}[{label}]", kind, weight[(slice(None), slice(None), *pos)]))
    return out


def _attention_matrices(name: str, mha: nn.MultiheadAttention) -> list[tuple[str, str, torch.Tensor]]:
    prefix = f"{name}." if name else ""
    out = []
    if mha.in_proj_weight is not None:
        q, k, v = mha.in_proj_weight.chunk(3, dim=0)
    else:
        q, k, v = mha.q_proj_weight, mha.k_proj_weight, mha.v_proj_weight
    out += [(f"{prefix}q", "attn_q", q), (f"{prefix}k", "attn_k", k), (f"{prefix}v", "attn_v", v)]
    out.append((f"{prefix}out_proj", "attn_out", mha.out_proj.weight))
    return out


@validate({
    "model": [nn.Module],
    "conv": [Options({"reshape", "kernel"})],
    "min_dim": [Interval(int, 1, None, closed="left")],
})
def extract_layers(model: nn.Module, *, conv: str = "reshape", min_dim: int = 2) -> list[LayerMatrix]:
    """List the analyzable weight matrices of ``model`` in module order.

    Parameters
    ----------
    model : torch.nn.Module
    conv : {'reshape', 'kernel'}, default='reshape'
        ``'reshape'``: a Conv weight (out, in, *k) becomes (out, in·prod(k)). ``'kernel'``: one
        (out, in) matrix per kernel position, named ``"conv1[i,j]"`` (``"conv1[i]"`` for Conv1d).
    min_dim : int, default=2
        Matrices whose smaller side is below this are skipped.

    Returns
    -------
    list of LayerMatrix
        Detached copies of the weights (training may go on while they are analyzed).

    Examples
    --------
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Linear(8, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    >>> [(l.name, l.kind, l.n, l.m) for l in extract_layers(net)]
    [('0', 'linear', 8, 4), ('2', 'linear', 4, 2)]
    """
    found: list[tuple[str, str, torch.Tensor]] = []
    handled: set[int] = set()
    for name, module in model.named_modules():
        if id(module) in handled:
            continue
        label = name or type(module).__name__.lower()
        if isinstance(module, nn.MultiheadAttention):
            found += _attention_matrices(name, module)
            handled.add(id(module.out_proj))
        elif isinstance(module, nn.Linear):
            found.append((label, "linear", module.weight))
        elif isinstance(module, nn.Conv2d):
            found += _conv_matrices(label, "conv2d", module.weight, conv)
        elif isinstance(module, nn.Conv1d):
            found += _conv_matrices(label, "conv1d", module.weight, conv)
        elif isinstance(module, nn.Embedding):
            found.append((label, "embedding", module.weight))
    layers = []
    for name, kind, weight in found:
        if weight is None or weight.ndim != 2 or min(weight.shape) < min_dim:
            continue
        layers.append(LayerMatrix.from_tensor(name, kind, weight.detach().clone()))
    return layers


def matrices_from_state_dict(state: dict[str, Any], *, conv: str = "reshape", min_dim: int = 2) -> list[LayerMatrix]:
    """Weight matrices of a state dict; the kind is inferred from key names and tensor rank.

    Parameters
    ----------
    state : dict of str to torch.Tensor
        Entries that are not tensors, or have fewer than 2 dimensions, are skipped.
    conv : {'reshape', 'kernel'}, default='reshape'
    min_dim : int, default=2

    Returns
    -------
    list of LayerMatrix
        ``name`` is the key without its ``.weight`` suffix.
    """
    found: list[tuple[str, str, torch.Tensor]] = []
    for key, value in state.items():
        if not isinstance(value, torch.Tensor) or value.ndim < 2 or not value.is_floating_point():
            continue
        base = key[: -len(".weight")] if key.endswith(".weight") else key
        if key.endswith("in_proj_weight") and value.ndim == 2 and value.shape[0] % 3 == 0:
            prefix = key[: -len("in_proj_weight")]
            q, k, v = value.chunk(3, dim=0)
            found += [(f"{prefix}q", "attn_q", q), (f"{prefix}k", "attn_k", k), (f"{prefix}v", "attn_v", v)]
        elif value.ndim == 2:
            parent = base.rsplit(".", 1)[0] if "." in base else ""
            if base.endswith("out_proj") and f"{parent}.in_proj_weight" in state:
                kind = "attn_out"
            elif "emb" in base.rsplit(".", 1)[-1].lower():
                kind = "embedding"
            else:
                kind = "linear"
            found.append((base, kind, value))
        elif value.ndim in (3, 4):
            kind = "conv1d" if value.ndim == 3 else "conv2d"
            found += _conv_matrices(base, kind, value, conv)
    return [
        LayerMatrix.from_tensor(name, kind, w.detach())
        for name, kind, w in found
        if w.ndim == 2 and min(w.shape) >= min_dim
    ]


def _torch_load(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        # Checkpoints holding non-tensor objects (configs, RNG states) need full unpickling;
        # like torch.load itself, this trusts the file the user pointed at.
        return torch.load(path, map_location="cpu", weights_only=False)


@validate({"conv": [Options({"reshape", "kernel"})], "min_dim": [Interval(int, 1, None, closed="left")]})
def load_matrices(path: str | Path, *, conv: str = "reshape", min_dim: int = 2) -> list[LayerMatrix]:
    """Read the weight matrices stored in a file.

    Parameters
    ----------
    path : str or Path
        ``.pt``/``.pth``/``.ckpt``: a state dict, a checkpoint dict with the state dict under
        ``"model"``, ``"state_dict"``, ``"model_state_dict"`` or ``"model_state"``, or a pickled
        ``nn.Module``. ``.npy``: one 2-D matrix (named after the file). ``.npz``: every array must
        be 2-D (named by its key).
    conv : {'reshape', 'kernel'}, default='reshape'
    min_dim : int, default=2

    Returns
    -------
    list of LayerMatrix

    Raises
    ------
    ValueError
        One line naming the file: missing, unreadable, unknown suffix, non-2-D array, no matrices.
    """
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"{p}: no such file")
    suffix = p.suffix.lower()
    try:
        if suffix == ".npy":
            arr = np.load(p, allow_pickle=False)
            arrays = {p.stem: arr}
        elif suffix == ".npz":
            with np.load(p, allow_pickle=False) as data:
                arrays = {k: data[k] for k in data.files}
        elif suffix in (".pt", ".pth", ".ckpt", ".bin"):
            obj = _torch_load(p)
            arrays = None
        else:
            raise ValueError(f"{p}: unsupported file type {suffix!r} (expected .pt, .npy or .npz)")
    except ValueError as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ValueError(msg if msg.startswith(str(p)) else f"{p}: cannot read file ({msg})") from None
    except (OSError, EOFError, RuntimeError, pickle.UnpicklingError, zipfile.BadZipFile, AttributeError,
            ModuleNotFoundError, ImportError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ValueError(f"{p}: cannot read file ({first})") from None

    if arrays is not None:
        layers = []
        for key, arr in arrays.items():
            if arr.ndim != 2:
                raise ValueError(f"{p}: array {key!r} is not a 2-D matrix (shape {arr.shape})")
            if not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
                raise ValueError(f"{p}: array {key!r} is not a real numeric matrix (dtype {arr.dtype})")
            if min(arr.shape) >= min_dim:
                layers.append(LayerMatrix.from_tensor(key, "matrix", torch.from_numpy(np.asarray(arr, dtype=np.float64))))
    else:
        layers = _layers_from_object(obj, p, conv=conv, min_dim=min_dim)
    if not layers:
        raise ValueError(f"{p}: no weight matrices found")
    return layers


def _layers_from_object(obj: Any, p: Path, *, conv: str, min_dim: int) -> list[LayerMatrix]:
    if isinstance(obj, nn.Module):
        return extract_layers(obj, conv=conv, min_dim=min_dim)
    if isinstance(obj, torch.Tensor):
        if obj.ndim != 2:
            raise ValueError(f"{p}: tensor is not a 2-D matrix (shape {tuple(obj.shape)})")
        return [LayerMatrix.from_tensor(p.stem, "matrix", obj.detach())]
    if isinstance(obj, dict):
        for key in _CHECKPOINT_KEYS:
            inner = obj.get(key)
            if isinstance(inner, nn.Module):
                return extract_layers(inner, conv=conv, min_dim=min_dim)
            if isinstance(inner, dict):
                return matrices_from_state_dict(inner, conv=conv, min_dim=min_dim)
        return matrices_from_state_dict(obj, conv=conv, min_dim=min_dim)
    raise ValueError(f"{p}: expected a state dict, checkpoint or module, got {type(obj).__name__}")
