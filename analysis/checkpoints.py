"""Read the tensors of a checkpoint one at a time, whatever its format, without running its code.

:func:`open_checkpoint` turns a path into a :class:`Checkpoint`: the list of tensors it holds
(key, shape, dtype: metadata only) and a :meth:`Checkpoint.read` that loads one tensor. Nothing
holds the whole model in memory:

- ``.safetensors`` (one file, or shards listed by ``model.safetensors.index.json``): read with the
  ``safetensors`` package, memory-mapped; the file is opened for each tensor and closed again, so
  the pages read are unmapped at once (one handle kept open would keep the whole file resident).
- ``.pt`` / ``.pth`` / ``.bin`` / ``.ckpt`` (a state dict, a checkpoint dict holding one under
  ``"model"`` / ``"state_dict"`` / ``"model_state_dict"`` / ``"model_state"``, shards listed by
  ``pytorch_model.bin.index.json``): ``torch.load(weights_only=True, mmap=True)``; each read
  copies one tensor out of the mapping and drops the mapping. A file that needs full unpickling
  (it stores Python objects, for instance a pickled ``nn.Module``) is refused with a one-line
  error naming the opt-in, ``trust_pickle=True`` (``--trust-pickle`` on the command line);
  nothing in the file runs unless the user opted in.
- ``.npy`` (memory-mapped) and ``.npz`` (one member at a time).
- A directory: a Hugging Face model folder (``config.json`` plus ``model.safetensors``, its
  sharded index, ``pytorch_model.bin`` or its sharded index; a PEFT folder with
  ``adapter_model.safetensors`` / ``adapter_model.bin``), or any folder holding ``*.safetensors``
  files. Safetensors win over pickles, as in ``transformers``; ``transformers`` itself is not
  needed. ``config.json`` (or ``adapter_config.json``) is kept in :attr:`Checkpoint.config`.

Tensors that share storage in a torch file (tied weights saved together) are reported through
:attr:`TensorInfo.alias_of`; :mod:`analysis.layers` also detects ties by equal data.
"""

from __future__ import annotations

import json
import pickle
import re
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["CHECKPOINT_KEYS", "TORCH_SUFFIXES", "Checkpoint", "TensorInfo", "open_checkpoint"]

#: Keys under which a training checkpoint dict holds the model's state dict (first match wins).
CHECKPOINT_KEYS = ("model", "state_dict", "model_state_dict", "model_state")
#: File suffixes read with ``torch.load``.
TORCH_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")
_NUMPY_SUFFIXES = (".npy", ".npz")
_SAFE_INDEX = ("model.safetensors.index.json", "adapter_model.safetensors.index.json")
_SAFE_SINGLE = ("model.safetensors", "adapter_model.safetensors")
_TORCH_INDEX = ("pytorch_model.bin.index.json",)
_TORCH_SINGLE = ("pytorch_model.bin", "adapter_model.bin")
_CONFIGS = ("config.json", "adapter_config.json")
_TRUST_HINT = "pass --trust-pickle (trust_pickle=True) only if you trust its source"

_SAFE_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool,
}


@dataclass(frozen=True)
class TensorInfo:
    """Metadata of one stored tensor (nothing is read to build it).

    Attributes
    ----------
    key : str
        Its name in the file (``"model.layers.0.self_attn.q_proj.weight"``).
    shape : tuple of int
    dtype : torch.dtype
        As stored (``torch.bfloat16`` for most LLM checkpoints); an unknown safetensors dtype
        (FP8 ...) is ``torch.uint8``-like and never analysed.
    file : Path
        The file (shard) that holds it.
    alias_of : str or None
        Key of an earlier tensor that shares its storage (a tied weight saved once), else None.
    """

    key: str
    shape: tuple[int, ...]
    dtype: torch.dtype
    file: Path
    alias_of: str | None = None

    @property
    def numel(self) -> int:
        """Number of elements."""
        return int(np.prod(self.shape, dtype=np.int64)) if self.shape else 1


@dataclass(frozen=True)
class Checkpoint:
    """The tensors of a checkpoint and a way to read each one.

    Attributes
    ----------
    path : Path
        What the user pointed at (file or directory).
    format : str
        ``"safetensors"``, ``"torch"``, ``"numpy"`` or ``"module"`` (a trusted pickled
        ``nn.Module``, in :attr:`module`).
    tensors : dict of str to TensorInfo
        In file order (safetensors files list their keys sorted by name).
    config : dict
        ``config.json`` / ``adapter_config.json`` of a model folder, else ``{}``.
    module : torch.nn.Module or None
        Only for ``format="module"``.
    """

    path: Path
    format: str
    tensors: dict[str, TensorInfo]
    config: dict[str, Any] = field(default_factory=dict)
    module: torch.nn.Module | None = field(default=None, repr=False)
    _reader: Callable[[TensorInfo], torch.Tensor] | None = field(default=None, repr=False, compare=False)

    def read(self, key: str) -> torch.Tensor:
        """Load one tensor (CPU, stored dtype) into memory of its own, not tied to any mapping.

        Raises
        ------
        ValueError
            One line naming the file when the tensor cannot be read.
        """
        info = self.tensors[key]
        try:
            return self._reader(info)  # type: ignore[misc]
        except (OSError, RuntimeError, ValueError, pickle.UnpicklingError, zipfile.BadZipFile) as exc:
            raise ValueError(f"{info.file}: cannot read tensor {key!r} ({_first_line(exc)})") from None

    def read_rows(self, key: str, rows: list[int]) -> torch.Tensor:
        """A few rows (first-axis indices) of one tensor, reading little more than those rows.

        Used to fingerprint tensors cheaply when looking for tied weights.
        """
        info = self.tensors[key]
        if info.file.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(info.file), framework="pt") as fh:
                sl = fh.get_slice(key)
                return torch.stack([sl[r : r + 1][0] for r in rows])
        if self.format == "torch" and info.file.is_file():  # memory-mapped: only these rows' pages are read
            try:
                state = _load_state(info.file, trust_pickle=False)
            except ValueError:  # a trusted pickle: take the slow way
                state = {}
            if isinstance(state, dict) and isinstance(state.get(key), torch.Tensor):
                return state[key][rows].clone()
        return self.read(key)[rows]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def open_checkpoint(path: str | Path, *, trust_pickle: bool = False) -> Checkpoint:
    """List the tensors of a checkpoint file or model folder (metadata only).

    Parameters
    ----------
    path : str or Path
        A file (``.safetensors``, ``.pt``/``.pth``/``.bin``/``.ckpt``, ``.npy``, ``.npz``, or a
        ``*.index.json`` of a sharded checkpoint) or a directory (see the module docstring).
    trust_pickle : bool, default=False
        Allow full unpickling of torch files that hold Python objects. Unpickling runs code from
        the file: only for files from a source you trust.

    Returns
    -------
    Checkpoint

    Raises
    ------
    ValueError
        One line naming the path: missing, unknown suffix, unreadable, a pickle that needs
        ``trust_pickle``, an empty folder.
    """
    p = Path(path)
    if p.is_dir():
        return _open_dir(p, trust_pickle=trust_pickle)
    if not p.is_file():
        raise ValueError(f"{p}: no such file or directory")
    name = p.name.lower()
    if name.endswith(".safetensors.index.json"):
        return _open_safetensors(p, _index_files(p), config=_dir_config(p.parent))
    if name.endswith(".bin.index.json"):
        return _open_torch(p, _index_files(p), trust_pickle=trust_pickle, config=_dir_config(p.parent))
    suffix = p.suffix.lower()
    # a weights file inside a model folder: its config.json (ties, head count) applies as for the folder
    if suffix == ".safetensors":
        return _open_safetensors(p, [p], config=_dir_config(p.parent))
    if suffix in TORCH_SUFFIXES:
        return _open_torch(p, [p], trust_pickle=trust_pickle, config=_dir_config(p.parent))
    if suffix in _NUMPY_SUFFIXES:
        return _open_numpy(p)
    raise ValueError(
        f"{p}: unsupported file type {suffix!r} (expected .safetensors, .pt/.pth/.bin/.ckpt, .npy/.npz, "
        "or a model folder)"
    )


# --------------------------------------------------------------------------- folders and indexes


def _dir_config(folder: Path) -> dict[str, Any]:
    """config.json merged with adapter_config.json (when present); ``{}`` if none is readable."""
    out: dict[str, Any] = {}
    for name in _CONFIGS:
        f = folder / name
        if f.is_file():
            try:
                data = json.loads(f.read_text())
            except (OSError, ValueError):
                continue
            if isinstance(data, dict):
                out.update(data)
    return out


def _index_files(index: Path) -> list[Path]:
    """Shard files named by a ``*.index.json`` (its ``weight_map`` values, in first-seen order)."""
    try:
        data = json.loads(index.read_text())
        weight_map = data["weight_map"]
        names = list(dict.fromkeys(weight_map.values()))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"{index}: not a checkpoint index with a 'weight_map' ({_first_line(exc)})") from None
    files = [index.parent / n for n in names]
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise ValueError(f"{index}: shard(s) listed in the index are missing: {', '.join(missing[:3])}")
    return files


def _open_dir(folder: Path, *, trust_pickle: bool) -> Checkpoint:
    config = _dir_config(folder)
    for name in _SAFE_INDEX:
        if (folder / name).is_file():
            return _open_safetensors(folder, _index_files(folder / name), config=config)
    for name in _SAFE_SINGLE:
        if (folder / name).is_file():
            return _open_safetensors(folder, [folder / name], config=config)
    loose = sorted(folder.glob("*.safetensors"))
    if loose:
        return _open_safetensors(folder, loose, config=config)
    for name in _TORCH_INDEX:
        if (folder / name).is_file():
            return _open_torch(folder, _index_files(folder / name), trust_pickle=trust_pickle, config=config)
    for name in _TORCH_SINGLE:
        if (folder / name).is_file():
            return _open_torch(folder, [folder / name], trust_pickle=trust_pickle, config=config)
    raise ValueError(
        f"{folder}: no checkpoint in this folder (looked for model.safetensors[.index.json], *.safetensors, "
        "pytorch_model.bin[.index.json], adapter_model.safetensors/.bin)"
    )


# --------------------------------------------------------------------------- safetensors


def _open_safetensors(path: Path, files: list[Path], *, config: dict[str, Any] | None = None) -> Checkpoint:
    from safetensors import safe_open

    tensors: dict[str, TensorInfo] = {}
    for f in files:
        try:
            with safe_open(str(f), framework="pt") as fh:
                for key in fh.keys():
                    sl = fh.get_slice(key)
                    dtype = _SAFE_DTYPES.get(str(sl.get_dtype()).upper(), torch.uint8)
                    tensors[key] = TensorInfo(key, tuple(int(s) for s in sl.get_shape()), dtype, f)
        except Exception as exc:  # noqa: BLE001 - safetensors raises its own error types (SafetensorError)
            raise ValueError(f"{f}: cannot read safetensors file ({_first_line(exc)})") from None
    return Checkpoint(path, "safetensors", tensors, config or {}, None, _read_safetensors)


def _read_safetensors(info: TensorInfo) -> torch.Tensor:
    from safetensors import safe_open

    # a fresh handle per tensor: closing it unmaps the pages just read (see the module docstring)
    try:
        with safe_open(str(info.file), framework="pt") as fh:
            return fh.get_tensor(info.key)
    except Exception as exc:  # noqa: BLE001 - SafetensorError is not an OSError
        raise ValueError(_first_line(exc)) from None


# --------------------------------------------------------------------------- torch pickles


def _unsafe_pickle_error(p: Path, exc: BaseException) -> ValueError:
    found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(exc))
    what = f" (it references {found.group(1)})" if found else ""
    return ValueError(
        f"{p}: refusing to unpickle: the file holds Python objects, not only tensors{what}; "
        f"loading it would run code from the file; {_TRUST_HINT}"
    )


def _is_pickle(p: Path, exc: BaseException) -> bool:
    """A real pickle that the weights-only unpickler refused (not garbage that fails to parse)."""
    if "Unsupported global" in str(exc) or zipfile.is_zipfile(p):
        return True
    with open(p, "rb") as fh:
        return fh.read(1) == b"\x80"  # the PROTO opcode that starts every pickle since protocol 2


def _torch_load(p: Path, *, trust_pickle: bool, mmap: bool) -> Any:
    """torch.load, weights only unless trusted; memory-mapped when the file format allows it."""
    try:
        return torch.load(p, map_location="cpu", weights_only=not trust_pickle, mmap=mmap)
    except RuntimeError as exc:
        if mmap and "mmap can only be used" in str(exc):  # legacy (pre-zip) format
            return torch.load(p, map_location="cpu", weights_only=not trust_pickle)
        raise


def _state_dict_of(obj: Any, p: Path) -> dict[str, Any] | torch.nn.Module:
    """The state dict inside a loaded torch file, or a module (trusted pickles only)."""
    if isinstance(obj, torch.nn.Module):
        return obj
    if isinstance(obj, torch.Tensor):
        return {p.stem: obj}
    if isinstance(obj, dict):
        for key in CHECKPOINT_KEYS:
            inner = obj.get(key)
            if isinstance(inner, torch.nn.Module | dict):
                return inner
        return obj
    raise ValueError(f"{p}: expected a state dict, checkpoint or module, got {type(obj).__name__}")


def _load_state(f: Path, *, trust_pickle: bool, mmap: bool = True) -> dict[str, Any] | torch.nn.Module:
    try:
        obj = _torch_load(f, trust_pickle=trust_pickle, mmap=mmap)
    except pickle.UnpicklingError as exc:
        if not trust_pickle and "weights only load failed" in str(exc).lower() and _is_pickle(f, exc):
            raise _unsafe_pickle_error(f, exc) from None
        raise ValueError(f"{f}: cannot read file ({_first_line(exc)})") from None
    except (OSError, EOFError, RuntimeError, zipfile.BadZipFile, AttributeError, ModuleNotFoundError,
            ImportError, TypeError, ValueError) as exc:
        raise ValueError(f"{f}: cannot read file ({_first_line(exc)})") from None
    return _state_dict_of(obj, f)


def _storage_id(t: torch.Tensor) -> tuple[Any, ...]:
    return (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), tuple(t.stride()))


def _open_torch(path: Path, files: list[Path], *, trust_pickle: bool, config: dict[str, Any] | None = None) -> Checkpoint:
    tensors: dict[str, TensorInfo] = {}
    for f in files:
        state = _load_state(f, trust_pickle=trust_pickle)
        if isinstance(state, torch.nn.Module):
            if len(files) > 1:
                raise ValueError(f"{f}: a pickled module inside a sharded checkpoint is not supported")
            return Checkpoint(path, "module", {}, config or {}, state, None)
        seen: dict[tuple[Any, ...], str] = {}
        for key, value in state.items():
            if not isinstance(value, torch.Tensor):
                continue
            sid = _storage_id(value)
            tensors[str(key)] = TensorInfo(str(key), tuple(value.shape), value.dtype, f, seen.get(sid))
            seen.setdefault(sid, str(key))
        del state  # drops the mapping; reads map the file again, one tensor at a time
    return Checkpoint(path, "torch", tensors, config or {}, None,
                      lambda info: _read_torch(info, trust_pickle=trust_pickle))


def _read_torch(info: TensorInfo, *, trust_pickle: bool) -> torch.Tensor:
    state = _load_state(info.file, trust_pickle=trust_pickle)
    assert isinstance(state, dict)
    # clone: the copy owns its memory and the mapping goes away with `state`
    return state[info.key].detach().clone()


# --------------------------------------------------------------------------- numpy


def _open_numpy(p: Path) -> Checkpoint:
    try:
        if p.suffix.lower() == ".npy":
            arr = np.load(p, mmap_mode="r", allow_pickle=False)
            arrays = {p.stem: (arr.shape, arr.dtype)}
        else:
            with np.load(p, allow_pickle=False) as data:
                arrays = {}
                for k in data.files:
                    member = data[k]
                    arrays[k] = (member.shape, member.dtype)
                    del member
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{p}: cannot read file ({_first_line(exc)})") from None
    tensors = {}
    for key, (shape, dtype) in arrays.items():
        if not np.issubdtype(dtype, np.number) or np.issubdtype(dtype, np.complexfloating):
            raise ValueError(f"{p}: array {key!r} is not a real numeric matrix (dtype {dtype})")
        tdtype = torch.from_numpy(np.zeros(0, dtype=dtype)).dtype
        tensors[key] = TensorInfo(key, tuple(int(s) for s in shape), tdtype, p)
    return Checkpoint(p, "numpy", tensors, {}, None, _read_numpy)


def _read_numpy(info: TensorInfo) -> torch.Tensor:
    if info.file.suffix.lower() == ".npy":
        arr = np.load(info.file, mmap_mode="r", allow_pickle=False)
        return torch.from_numpy(np.array(arr))
    with np.load(info.file, allow_pickle=False) as data:
        return torch.from_numpy(np.array(data[info.key]))
