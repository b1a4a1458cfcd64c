"""The weight matrices of a model or a checkpoint, as named :class:`LayerMatrix` records.

One set of rules turns stored tensors into matrices, for a live ``nn.Module`` (its
``state_dict``, with the module types as hints) and for a file (key names and shapes only), so
both paths give the same layers, names and kinds for the same model. :func:`plan_layers` lists
the layers from metadata alone (:class:`LayerInfo`: what ``htsweep analyze --list`` prints) and
builds each matrix when it is needed, one at a time; :func:`extract_layers` and
:func:`load_matrices` return them all.

Rules, by tensor (biases, norms and every other 1-D or integer tensor are skipped)
    ``Linear``, ``transformers`` ``Conv1D`` and other 2-D weights: kind ``linear``, the matrix as
        stored. ``Conv1D`` stores ``(in, out)``; it is not transposed, since the ESD of ``W`` and
        ``Wᵀ`` is the same (every matrix is oriented N ≥ M before its Gram is formed).
    ``Embedding``, ``EmbeddingBag`` (or a 2-D key named like one: ``wte``, ``embed_tokens``,
        ``word_embeddings``, ``shared`` ...): kind ``embedding``.
    Packed Q/K/V: ``in_proj_weight`` (``nn.MultiheadAttention``), ``c_attn``, ``qkv``,
        ``qkv_proj``, ``Wqkv``: one dimension is 3× the other, and it is cut into three
        contiguous blocks ``.q``, ``.k``, ``.v`` (kinds ``attn_q``/``attn_k``/``attn_v``).
        ``query_key_value`` (GPT-NeoX, BLOOM) interleaves the blocks per head: split per head when
        the config gives ``num_attention_heads``, else kept whole (``attn_qkv``), as is any packed
        matrix whose blocks are not equal (grouped-query packing). The output projection of a
        ``MultiheadAttention`` is ``attn_out``.
    ``LSTM`` / ``GRU`` / ``RNN``: each ``weight_ih_l*`` / ``weight_hh_l*`` stacks the gate
        matrices (4 for an LSTM: i, f, g, o; 3 for a GRU: r, z, n). Each gate is its own matrix
        (``lstm.weight_ih_l0.f``, kinds ``rnn_ih`` / ``rnn_hh``): the gates have different roles
        and initial scales, and a stacked ``(4H, in)`` matrix mixes four ESDs into one. The LSTM
        projection ``weight_hr_l*`` is ``rnn_hr``. The gate count comes from the module type, or
        in a file from the shape of ``weight_hh`` (``(G·H, H)``).
    ``Conv1d/2d/3d`` and ``ConvTranspose*`` (3- to 5-D weights): kinds ``conv1d``/``conv2d``/
        ``conv3d``, by the ``conv`` option: ``'reshape'`` (default) → ``(d0, d1·prod(k))``;
        ``'kernel'`` → one ``(d0, d1)`` matrix per kernel position, named ``"conv1[i,j]"``;
        ``'pooled'`` → WeightWatcher's default (``pool=True``): the per-position ``(d0, d1)``
        slices of one layer pooled into a single ESD (``matrix`` is the stack, shape
        ``(prod(k), d0, d1)``; each slice keeps this package's ``WᵀW / N`` scale, WeightWatcher
        multiplies it by ``N / 2``, which moves λ-valued metrics but not α or the phase). A
        ``ConvTranspose`` weight ``(in, out, *k)`` is used as stored: it is the weight of the
        convolution it is the adjoint of, and has the same singular values.
    ``Bilinear`` ``(out, in1, in2)``: kind ``bilinear``, reshaped to ``(out, in1·in2)``: the layer
        is a linear map on ``vec(x1 x2ᵀ)``. A file cannot tell it from a ``Conv1d`` weight unless
        its key says ``bilinear`` (the matrix is the same either way, the kind then ``conv1d``).
    MoE expert stacks (a 3-D tensor whose key mentions ``expert``, e.g. ``experts.gate_up_proj``
        of shape ``(E, d, f)``): one matrix per expert, ``name[e]``, kind ``expert``.
    LoRA pairs (``lora_A`` / ``lora_B``, PEFT naming, in a full model or an adapter file): merged
        into ``ΔW = B·A`` (the adapter's ``α/r`` factor is not applied: it scales λ, not α),
        named ``<module>.lora_BA``, kind ``lora``. ΔW has rank ≤ r by construction.

Tied or shared parameters are analysed once: by storage identity for a module and for tensors
saved together in a torch file; by equal data (or ``tie_word_embeddings`` in the config) across a
file's tensors. When one of the tied tensors is an embedding, that one is kept.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from htsweep.analysis._validation import Interval, Options, validate
from htsweep.analysis.checkpoints import Checkpoint, TensorInfo, open_checkpoint

__all__ = [
    "CONV_MODES", "KINDS", "LayerFilter", "LayerInfo", "LayerMatrix", "LayerPlan", "extract_layers",
    "load_matrices", "plan_layers",
]

#: The ``conv`` options (see the module docstring).
CONV_MODES = ("reshape", "kernel", "pooled")
#: Every layer kind.
KINDS = (
    "linear", "embedding", "attn_q", "attn_k", "attn_v", "attn_out", "attn_qkv", "conv1d", "conv2d", "conv3d",
    "rnn_ih", "rnn_hh", "rnn_hr", "bilinear", "expert", "lora", "matrix",
)

_GATES = {4: "ifgo", 3: "rzn"}
_PACKED = {"c_attn", "qkv", "qkv_proj", "wqkv", "in_proj"}
_EMB_RE = re.compile(r"(^|_)(emb|embed|embeds|embedding|embeddings|wte|wpe)(_|$)")
_RNN_RE = re.compile(r"^(?P<prefix>(?:.*\.)?)weight_(?P<which>ih|hh|hr)_l(?P<layer>\d+)(?P<rev>_reverse)?$")
_LORA_RE = re.compile(r"^(?P<prefix>.*?)\.lora_(?P<emb>embedding_)?(?P<ab>[AB])(?P<adapter>\.[^.]+)?(?:\.weight)?$")
_MHA_SEPARATE = {"q_proj_weight": "q", "k_proj_weight": "k", "v_proj_weight": "v"}

Getter = Callable[[str], torch.Tensor]
Builder = Callable[[Getter], torch.Tensor]


@dataclass(frozen=True)
class LayerMatrix:
    """One weight matrix to analyze.

    Attributes
    ----------
    name : str
        Qualified name (``"encoder.fc1"``, ``"conv1[0,1]"``, ``"attn.q"``).
    kind : str
        One of :data:`KINDS` (``"matrix"`` for a bare array from a ``.npy``/``.npz`` file).
    matrix : torch.Tensor of shape (rows, cols), or (slices, rows, cols) for a pooled conv
        The weights, detached, in their stored dtype (bfloat16 stays bfloat16); a pooled conv
        layer holds its kernel-position slices, whose eigenvalues are pooled into one ESD.
    n, m : int
        ``n = max(rows, cols)``, ``m = min(rows, cols)`` (N ≥ M) of one matrix (one slice).
    kernel : int
        Kernel positions of a conv layer reshaped to ``(out, in·k)`` (``conv='reshape'``; column
        ``i·k + p`` is input channel ``i`` at position ``p``), 1 otherwise: FARMS windows such a
        layer per kernel slice (:mod:`analysis.farms`).
    """

    name: str
    kind: str
    matrix: torch.Tensor = field(repr=False)
    n: int
    m: int
    kernel: int = 1

    @classmethod
    def from_tensor(cls, name: str, kind: str, matrix: torch.Tensor) -> LayerMatrix:
        """Build a record from a 2-D tensor (or a 3-D stack of slices), filling ``n`` and ``m``."""
        rows, cols = int(matrix.shape[-2]), int(matrix.shape[-1])
        return cls(name=name, kind=kind, matrix=matrix, n=max(rows, cols), m=min(rows, cols))

    @property
    def q(self) -> float:
        """Aspect ratio Q = N / M ≥ 1."""
        return self.n / self.m


@dataclass(frozen=True)
class LayerInfo:
    """What a layer will be, known from metadata alone (nothing is read to build it).

    Attributes
    ----------
    name, kind : str
        As in :class:`LayerMatrix`.
    shape : tuple of int
        ``(rows, cols)``, or ``(slices, rows, cols)`` for a pooled conv layer.
    n, m : int
        N ≥ M of one matrix (slice).
    dtype : torch.dtype
        Stored dtype of the source tensor.
    sources : tuple of str
        Keys of the tensors the matrix is built from.
    tied : tuple of str
        Keys of other tensors tied to the source (same storage or equal data), not analysed again.
    kernel : int
        As in :class:`LayerMatrix`.
    """

    name: str
    kind: str
    shape: tuple[int, ...]
    n: int
    m: int
    dtype: torch.dtype
    sources: tuple[str, ...]
    tied: tuple[str, ...] = ()
    kernel: int = 1

    @property
    def n_eigs(self) -> int:
        """Number of eigenvalues of the layer's ESD (M times the slices of a pooled conv)."""
        return self.m * (self.shape[0] if len(self.shape) == 3 else 1)

    @property
    def numel(self) -> int:
        """Number of weights in the matrix (or stack)."""
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def flops(self) -> float:
        """Rough cost of the ESD: Gram ``N·M²`` (symmetric rank-k update) plus eigensolve ``4·M³``, per slice."""
        slices = self.shape[0] if len(self.shape) == 3 else 1
        return float(slices) * (self.n * self.m**2 + 4.0 * self.m**3)


@dataclass(frozen=True)
class LayerFilter:
    """Which layers to keep: name globs, kinds and size bounds (all must pass).

    Attributes
    ----------
    include : tuple of str
        ``fnmatch`` globs on the layer name; when given, a layer must match one.
    exclude : tuple of str
        Globs; a layer matching any is dropped.
    kinds : tuple of str
        When given, the layer kind must match one (globs allowed: ``"attn_*"``).
    exclude_kinds : tuple of str
        Kinds (globs) to drop.
    min_dim : int
        Smallest allowed M (the smaller side; the number of eigenvalues of one matrix).
    max_dim : int or None
        Largest allowed M.
    """

    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    kinds: tuple[str, ...] = ()
    exclude_kinds: tuple[str, ...] = ()
    min_dim: int = 2
    max_dim: int | None = None

    def keep(self, name: str, kind: str, m: int) -> bool:
        """True when a layer of this name, kind and smaller side passes every test."""
        if m < self.min_dim or (self.max_dim is not None and m > self.max_dim):
            return False
        if self.include and not any(fnmatch.fnmatchcase(name, g) for g in self.include):
            return False
        if any(fnmatch.fnmatchcase(name, g) for g in self.exclude):
            return False
        if self.kinds and not any(fnmatch.fnmatchcase(kind, g) for g in self.kinds):
            return False
        return not any(fnmatch.fnmatchcase(kind, g) for g in self.exclude_kinds)


def _patterns(value: str | Sequence[str] | None) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    return tuple(str(v) for v in value)


_GLOBS = [None, str, list, tuple]
_SELECT_TABLE: dict[str, list[Any]] = {
    "conv": [Options(set(CONV_MODES))],
    "include": _GLOBS,
    "exclude": _GLOBS,
    "kinds": _GLOBS,
    "exclude_kinds": _GLOBS,
    "min_dim": [Interval(int, 1, None, closed="left")],
    "max_dim": [None, Interval(int, 1, None, closed="left")],
}


def _filter(include: Any, exclude: Any, kinds: Any, exclude_kinds: Any, min_dim: int, max_dim: int | None) -> LayerFilter:
    return LayerFilter(_patterns(include), _patterns(exclude), _patterns(kinds), _patterns(exclude_kinds),
                       int(min_dim), None if max_dim is None else int(max_dim))


# --------------------------------------------------------------------------- the plan


class LayerPlan:
    """The layers of one model or checkpoint: :class:`LayerInfo` records, matrices built on demand.

    Iterating yields :class:`LayerMatrix` records one at a time, in plan order; the tensors behind
    a layer are read when it is reached (the last ones are cached, for the pieces of one split
    tensor), so a checkpoint is never held in memory as a whole.

    Attributes
    ----------
    layers : tuple of LayerInfo
    tied : tuple of (str, str)
        ``(dropped key, kept key)`` for each tensor not analysed because it is tied to another.
    source : str
        The model class or the checkpoint path, for messages.
    checkpoint : Checkpoint or None
        The files the matrices are read from; None when they come from a module or state dict
        in memory. A plan of files pickles small (metadata and recipes, never cached tensors), so
        another process can read just the layers it is given.
    """

    def __init__(self, layers: list[LayerInfo], builders: dict[str, Builder], getter: Getter, *,
                 tied: list[tuple[str, str]], source: str, copy: bool, checkpoint: Checkpoint | None = None) -> None:
        self.layers = tuple(layers)
        self.tied = tuple(tied)
        self.source = source
        self.checkpoint = checkpoint
        self._builders = builders
        self._getter = getter
        self._copy = copy
        self._cache: dict[str, torch.Tensor] = {}

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_cache": {}}

    def __len__(self) -> int:
        return len(self.layers)

    def __iter__(self) -> Iterator[LayerMatrix]:
        for info in self.layers:
            yield self.matrix(info)
        self._cache.clear()

    def _get(self, key: str) -> torch.Tensor:
        if key not in self._cache:
            if len(self._cache) >= 2:  # a LoRA pair is the most a matrix needs at once
                self._cache.pop(next(iter(self._cache)))
            self._cache[key] = self._getter(key)
        return self._cache[key]

    def matrix(self, info: LayerInfo) -> LayerMatrix:
        """Build the matrix of one planned layer."""
        t = self._builders[info.name](self._get)
        t = t.detach()
        if self._copy:
            t = t.clone()
        return LayerMatrix(info.name, info.kind, t, info.n, info.m, info.kernel)


@dataclass(frozen=True)
class _Piece:
    name: str
    kind: str
    shape: tuple[int, ...]
    build: Builder
    sources: tuple[str, ...]
    kernel: int = 1


def _base(key: str) -> str:
    return key[: -len(".weight")] if key.endswith(".weight") else key


def _last(name: str) -> str:
    return name.rsplit(".", 1)[-1]


def _is_embedding_name(key: str) -> bool:
    low = _last(_base(key)).lower()
    if low == "shared":  # T5 / BART input embedding
        return True
    return bool(_EMB_RE.search(low)) and not any(w in low for w in ("out", "proj", "head"))


def _whole(key: str) -> Builder:
    return lambda get: get(key)


def _split(key: str, dim: int, parts: int, index: int) -> Builder:
    return lambda get: get(key).chunk(parts, dim=dim)[index]


def _heads_split(key: str, heads: int, index: int) -> Builder:
    """Rows ordered [head, (q|k|v), head_dim] (GPT-NeoX, BLOOM): the ``index``-th block of every head."""
    def build(get: Getter) -> torch.Tensor:
        w = get(key)
        hd = w.shape[0] // (3 * heads)
        return w.reshape(heads, 3, hd, w.shape[1])[:, index].reshape(heads * hd, w.shape[1])
    return build


def _conv_pieces(name: str, key: str, kind: str, shape: tuple[int, ...], conv: str) -> list[_Piece]:
    d0, d1, ks = shape[0], shape[1], shape[2:]
    n_pos = int(np.prod(ks))
    if conv == "reshape":
        return [_Piece(name, kind, (d0, d1 * n_pos), lambda get: get(key).reshape(d0, -1), (key,), n_pos)]
    if conv == "pooled":
        def pooled(get: Getter) -> torch.Tensor:
            w = get(key)
            return w.permute(*range(2, w.ndim), 0, 1).reshape(n_pos, d0, d1)
        return [_Piece(name, kind, (n_pos, d0, d1), pooled, (key,))]
    out = []
    for pos in np.ndindex(*ks):
        label = ",".join(str(p) for p in pos)
        out.append(_Piece(f"{name}[{label}]", kind, (d0, d1),
                          lambda get, pos=pos: get(key)[(slice(None), slice(None), *pos)], (key,)))
    return out


def _rnn_pieces(key: str, match: re.Match[str], shape: tuple[int, ...], table: Mapping[str, TensorInfo],
                gates: int | None) -> list[_Piece]:
    which = match["which"]
    kind = f"rnn_{which}"
    if which == "hr":
        return [_Piece(key, kind, shape, _whole(key), (key,))]
    if gates is None:  # infer from the recurrent matrix: (G·H, H), or (G·H, P) with a projection (P, H)
        sfx = f"_l{match['layer']}{match['rev'] or ''}"
        hh = table.get(f"{match['prefix']}weight_hh{sfx}")
        hr = table.get(f"{match['prefix']}weight_hr{sfx}")
        hidden = hr.shape[1] if hr is not None else (hh.shape[1] if hh is not None else 0)
        gates = shape[0] // hidden if hidden and shape[0] % hidden == 0 else 1
    letters = _GATES.get(gates)
    if letters is None:
        return [_Piece(key, kind, shape, _whole(key), (key,))]
    rows = shape[0] // gates
    return [_Piece(f"{key}.{g}", kind, (rows, shape[1]), _split(key, 0, gates, i), (key,))
            for i, g in enumerate(letters)]


def _packed_pieces(base: str, key: str, shape: tuple[int, ...], config: Mapping[str, Any]) -> list[_Piece]:
    last = _last(base).lower()
    names = (f"{base}.q", f"{base}.k", f"{base}.v")
    kinds = ("attn_q", "attn_k", "attn_v")
    if last == "query_key_value":
        heads = config.get("num_attention_heads") or config.get("n_head")
        if isinstance(heads, int) and heads > 0 and shape[0] == 3 * shape[1] and shape[0] % (3 * heads) == 0:
            return [_Piece(nm, kd, (shape[1], shape[1]), _heads_split(key, heads, i), (key,))
                    for i, (nm, kd) in enumerate(zip(names, kinds, strict=True))]
        return [_Piece(base, "attn_qkv", shape, _whole(key), (key,))]
    for dim in (0, 1):
        if shape[dim] == 3 * shape[1 - dim]:
            piece = list(shape)
            piece[dim] //= 3
            return [_Piece(nm, kd, tuple(piece), _split(key, dim, 3, i), (key,))
                    for i, (nm, kd) in enumerate(zip(names, kinds, strict=True))]
    return [_Piece(base, "attn_qkv", shape, _whole(key), (key,))]


def _lora_pieces(key: str, match: re.Match[str], table: Mapping[str, TensorInfo]) -> list[_Piece] | str:
    if match["ab"] == "B":
        return "second half of a LoRA pair"
    other = key.replace(f"lora_{match['emb'] or ''}A", f"lora_{match['emb'] or ''}B", 1)
    if other not in table:
        return "LoRA A without its B"
    a, b = table[key].shape, table[other].shape
    if len(a) != 2 or len(b) != 2:
        return "LoRA factors are not matrices"
    # linear: A (r, in), B (out, r) -> B A; embedding: A (r, vocab), B (d, r) -> (B A) of shape (d, vocab)
    shape = (b[0], a[1])

    def merged(get: Getter) -> torch.Tensor:
        return get(other).to(torch.float32) @ get(key).to(torch.float32)

    return [_Piece(f"{match['prefix']}.lora_BA", "lora", shape, merged, (key, other))]


def _pieces(key: str, info: TensorInfo, hint: str | None, table: Mapping[str, TensorInfo],
            config: Mapping[str, Any], conv: str, root: str) -> list[_Piece] | str:
    """The matrices one stored tensor contributes, or why it contributes none."""
    shape = info.shape
    last = _last(key)
    if len(shape) < 2:
        return "not a matrix"
    if not info.dtype.is_floating_point:
        return f"dtype {info.dtype}"
    if last == "bias" or last.endswith("_bias"):
        return "bias"
    lora = _LORA_RE.match(key)
    if lora is not None:
        return _lora_pieces(key, lora, table)
    rnn = _RNN_RE.match(key)
    if rnn is not None and len(shape) == 2:
        gates = {"lstm": 4, "gru": 3, "rnn": 1}.get(hint or "")
        return _rnn_pieces(key, rnn, shape, table, gates)
    base = _base(key)
    name = root if key == "weight" and root else base
    if len(shape) == 2:
        if last == "in_proj_weight" and shape[0] % 3 == 0:
            prefix = key[: -len("in_proj_weight")]
            d = shape[0] // 3
            return [_Piece(f"{prefix}{x}", f"attn_{x}", (d, shape[1]), _split(key, 0, 3, i), (key,))
                    for i, x in enumerate("qkv")]
        if last in _MHA_SEPARATE:
            prefix = key[: -len(last)]
            x = _MHA_SEPARATE[last]
            return [_Piece(f"{prefix}{x}", f"attn_{x}", shape, _whole(key), (key,))]
        if _last(base) == "out_proj":
            parent = base[: -len("out_proj")]
            if f"{parent}in_proj_weight" in table or f"{parent}q_proj_weight" in table:
                return [_Piece(name, "attn_out", shape, _whole(key), (key,))]
        if _last(base).lower() in _PACKED | {"query_key_value"} and hint != "embedding":
            return _packed_pieces(base, key, shape, config)
        if hint == "embedding" or (hint is None and _is_embedding_name(key)):
            return [_Piece(name, "embedding", shape, _whole(key), (key,))]
        return [_Piece(name, "linear", shape, _whole(key), (key,))]
    if len(shape) == 3 and (hint == "bilinear" or (hint is None and "bilinear" in key.lower())):
        return [_Piece(name, "bilinear", (shape[0], shape[1] * shape[2]), lambda get: get(key).reshape(shape[0], -1),
                       (key,))]
    if len(shape) == 3 and hint != "conv" and "expert" in key.lower():
        return [_Piece(f"{name}[{e}]", "expert", shape[1:], lambda get, e=e: get(key)[e], (key,))
                for e in range(shape[0])]
    if len(shape) <= 5:
        return _conv_pieces(name, key, f"conv{len(shape) - 2}d", shape, conv)
    return f"tensor of rank {len(shape)}"


def _fingerprint(rows: torch.Tensor) -> bytes | None:
    """Bytes of a few rows; None for a constant tensor (equal by value, not tied)."""
    flat = rows.reshape(-1)
    if flat.numel() == 0 or bool((flat == flat[0]).all()):
        return None
    return flat.contiguous().view(torch.uint8).numpy().tobytes()


def _equal_data_ties(keys: list[str], table: Mapping[str, TensorInfo], ckpt: Checkpoint) -> dict[str, str]:
    """Later key → earlier key, for tensors of one shape and dtype whose data are equal."""
    groups: dict[tuple[Any, ...], list[str]] = {}
    for k in keys:
        groups.setdefault((table[k].shape, table[k].dtype), []).append(k)
    ties: dict[str, str] = {}
    for members in groups.values():
        if len(members) < 2:
            continue
        rows = sorted({0, table[members[0]].shape[0] // 2, table[members[0]].shape[0] - 1})
        prints: dict[bytes, list[str]] = {}
        for k in members:
            fp = _fingerprint(ckpt.read_rows(k, rows))
            if fp is not None:
                prints.setdefault(fp, []).append(k)
        for same in prints.values():
            for i, k in enumerate(same[1:], start=1):
                data = ckpt.read(k)
                for earlier in same[:i]:
                    if earlier not in ties and torch.equal(ckpt.read(earlier), data):
                        ties[k] = earlier
                        break
    return ties


def _config_ties(keys: list[str], table: Mapping[str, TensorInfo], config: Mapping[str, Any]) -> dict[str, str]:
    """``tie_word_embeddings: true``: the output head is the input embedding (read nothing)."""
    if config.get("tie_word_embeddings") is not True:
        return {}
    embeddings = [k for k in keys if _is_embedding_name(k) and len(table[k].shape) == 2]
    ties = {}
    for k in keys:
        if _last(_base(k)) in ("lm_head", "embed_out", "output"):
            same = [e for e in embeddings if table[e].shape == table[k].shape]
            if same:
                ties[k] = same[0]
    return ties


def _natural_key(name: str) -> list[Any]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def _build_plan(table: dict[str, TensorInfo], getter: Getter, *, hints: Mapping[str, str], ties: dict[str, str],
                config: Mapping[str, Any], conv: str, select: LayerFilter, root: str, source: str, copy: bool,
                ckpt: Checkpoint | None = None, natural_order: bool = False) -> LayerPlan:
    pieces_of: dict[str, list[_Piece]] = {}
    for key, info in table.items():
        got = _pieces(key, info, hints.get(key), table, config, conv, root)
        if not isinstance(got, str):
            pieces_of[key] = got
    ties = {d: k for d, k in ties.items() if d in pieces_of and k in pieces_of}
    if ckpt is not None:
        candidates = [k for k in pieces_of if k not in ties]
        more = _config_ties(candidates, table, config)
        more.update(_equal_data_ties([k for k in candidates if k not in more], table, ckpt))
        ties.update(more)
    # a tie group keeps its embedding member (the input side) when it has one
    for dropped, kept in list(ties.items()):
        if pieces_of[dropped][0].kind == "embedding" and pieces_of[kept][0].kind != "embedding":
            ties = {d: (dropped if k == kept else k) for d, k in ties.items() if d != dropped}
            ties[kept] = dropped
    order = [k for k in pieces_of if k not in ties]
    if natural_order:
        order.sort(key=_natural_key)
    tied_to: dict[str, list[str]] = {}
    for dropped, kept in ties.items():
        tied_to.setdefault(kept, []).append(dropped)
    layers: list[LayerInfo] = []
    builders: dict[str, Builder] = {}
    for key in order:
        for p in pieces_of[key]:
            n, m = max(p.shape[-2:]), min(p.shape[-2:])
            if not select.keep(p.name, p.kind, m) or p.name in builders:
                continue
            tied = tuple(t for s in p.sources for t in tied_to.get(s, ()))
            layers.append(LayerInfo(p.name, p.kind, p.shape, n, m, table[key].dtype, p.sources, tied, p.kernel))
            builders[p.name] = p.build
    return LayerPlan(layers, builders, getter, tied=sorted(ties.items()), source=source, copy=copy, checkpoint=ckpt)


def _module_hints(model: nn.Module) -> dict[str, str]:
    """State-dict key → kind hint from the module type (what a file cannot know)."""
    hints: dict[str, str] = {}
    for mod_name, module in model.named_modules():
        prefix = f"{mod_name}." if mod_name else ""
        hint: str | None = None
        if isinstance(module, nn.Embedding | nn.EmbeddingBag):
            hint = "embedding"
        elif isinstance(module, nn.Bilinear):
            hint = "bilinear"
        elif isinstance(module, nn.modules.conv._ConvNd):
            hint = "conv"
        elif isinstance(module, nn.LSTM):
            hint = "lstm"
        elif isinstance(module, nn.GRU):
            hint = "gru"
        elif isinstance(module, nn.RNN):
            hint = "rnn"
        elif isinstance(module, nn.Linear) or _is_hf_conv1d(module):
            hint = "linear"
        if hint is None:
            continue
        for pname, _ in module.named_parameters(recurse=False):
            hints[prefix + pname] = hint
    return hints


def _is_hf_conv1d(module: nn.Module) -> bool:
    """``transformers.pytorch_utils.Conv1D``: a linear layer whose weight is stored (in, out)."""
    weight = getattr(module, "weight", None)
    return (type(module).__name__ == "Conv1D" and type(module).__module__.startswith("transformers")
            and isinstance(weight, torch.Tensor) and weight.ndim == 2 and weight.shape[1] == getattr(module, "nf", -1))


def _storage_key(t: torch.Tensor) -> tuple[Any, ...]:
    return (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape), tuple(t.stride()))


def _plan_module(model: nn.Module, *, conv: str, select: LayerFilter, copy: bool) -> LayerPlan:
    state = model.state_dict(keep_vars=True)
    table: dict[str, TensorInfo] = {}
    ties: dict[str, str] = {}
    seen: dict[tuple[Any, ...], str] = {}
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            continue
        table[key] = TensorInfo(key, tuple(value.shape), value.dtype, Path("."))
        sid = _storage_key(value)
        if sid in seen:
            ties[key] = seen[sid]
        else:
            seen[sid] = key
    config = getattr(model, "config", None)
    config_dict = config.to_dict() if hasattr(config, "to_dict") else {}
    return _build_plan(table, lambda k: state[k], hints=_module_hints(model), ties=ties, config=config_dict,
                       conv=conv, select=select, root=type(model).__name__.lower(), source=type(model).__name__,
                       copy=copy)


def _plan_checkpoint(ckpt: Checkpoint, *, conv: str, select: LayerFilter) -> LayerPlan:
    if ckpt.module is not None:
        return _plan_module(ckpt.module, conv=conv, select=select, copy=False)
    ties = {k: info.alias_of for k, info in ckpt.tensors.items() if info.alias_of}
    if ckpt.format == "numpy":
        return _plan_arrays(ckpt, select)
    return _build_plan(dict(ckpt.tensors), ckpt.read, hints={}, ties=ties, config=ckpt.config, conv=conv,
                       select=select, root="", source=str(ckpt.path), copy=False, ckpt=ckpt,
                       natural_order=ckpt.format == "safetensors")


def _plan_arrays(ckpt: Checkpoint, select: LayerFilter) -> LayerPlan:
    """Bare ``.npy``/``.npz`` arrays: each must be a 2-D matrix, kind ``matrix``."""
    layers, builders = [], {}
    for key, info in ckpt.tensors.items():
        if len(info.shape) != 2:
            raise ValueError(f"{ckpt.path}: array {key!r} is not a 2-D matrix (shape {info.shape})")
        n, m = max(info.shape), min(info.shape)
        if select.keep(key, "matrix", m):
            layers.append(LayerInfo(key, "matrix", info.shape, n, m, info.dtype, (key,)))
            builders[key] = _whole(key)
    return LayerPlan(layers, builders, ckpt.read, tied=[], source=str(ckpt.path), copy=False, checkpoint=ckpt)


@validate({"source": [nn.Module, str, Path, Checkpoint, dict], "trust_pickle": ["boolean"], **_SELECT_TABLE})
def plan_layers(
    source: nn.Module | str | Path | Checkpoint | dict[str, torch.Tensor],
    *,
    conv: str = "reshape",
    trust_pickle: bool = False,
    include: str | Sequence[str] | None = None,
    exclude: str | Sequence[str] | None = None,
    kinds: str | Sequence[str] | None = None,
    exclude_kinds: str | Sequence[str] | None = None,
    min_dim: int = 2,
    max_dim: int | None = None,
) -> LayerPlan:
    """Plan the layers of a model, a checkpoint (path or :class:`Checkpoint`) or a state dict.

    Parameters
    ----------
    source : torch.nn.Module, str, Path, Checkpoint or dict of str to torch.Tensor
        A path is opened with :func:`analysis.checkpoints.open_checkpoint`.
    conv : {'reshape', 'kernel', 'pooled'}, default='reshape'
        How conv weights become matrices (module docstring).
    trust_pickle : bool, default=False
        Passed to :func:`~analysis.checkpoints.open_checkpoint` for torch files.
    include, exclude : str or sequence of str, optional
        ``fnmatch`` globs on layer names (``"*.q_proj"``, ``"model.layers.1?.*"``).
    kinds, exclude_kinds : str or sequence of str, optional
        Kinds to keep / drop (globs allowed).
    min_dim, max_dim : int, optional
        Bounds on M, the smaller side of each matrix; the default ``min_dim=2`` drops vectors.

    Returns
    -------
    LayerPlan
        ``plan.layers`` lists the layers without reading any weights; iterate the plan for the
        matrices.

    Raises
    ------
    ValueError
        A file that cannot be read (one line naming it); see ``open_checkpoint``.

    Examples
    --------
    >>> import torch
    >>> lstm = torch.nn.LSTM(16, 32)
    >>> [(i.name, i.kind, i.shape) for i in plan_layers(lstm).layers][:2]
    [('weight_ih_l0.i', 'rnn_ih', (32, 16)), ('weight_ih_l0.f', 'rnn_ih', (32, 16))]
    """
    select = _filter(include, exclude, kinds, exclude_kinds, min_dim, max_dim)
    if isinstance(source, nn.Module):
        return _plan_module(source, conv=conv, select=select, copy=False)
    if isinstance(source, dict):
        tensors = {str(k): v for k, v in source.items() if isinstance(v, torch.Tensor)}
        ckpt = Checkpoint(Path("<state dict>"), "torch", {
            k: TensorInfo(k, tuple(v.shape), v.dtype, Path("<state dict>")) for k, v in tensors.items()
        }, {}, None, lambda info: tensors[info.key])
        return _plan_checkpoint(ckpt, conv=conv, select=select)
    ckpt = source if isinstance(source, Checkpoint) else open_checkpoint(source, trust_pickle=trust_pickle)
    return _plan_checkpoint(ckpt, conv=conv, select=select)


@validate({"model": [nn.Module], **_SELECT_TABLE})
def extract_layers(
    model: nn.Module,
    *,
    conv: str = "reshape",
    include: str | Sequence[str] | None = None,
    exclude: str | Sequence[str] | None = None,
    kinds: str | Sequence[str] | None = None,
    exclude_kinds: str | Sequence[str] | None = None,
    min_dim: int = 2,
    max_dim: int | None = None,
) -> list[LayerMatrix]:
    """List the analyzable weight matrices of ``model`` in state-dict (module) order.

    Parameters
    ----------
    model : torch.nn.Module
    conv : {'reshape', 'kernel', 'pooled'}, default='reshape'
        ``'reshape'``: a conv weight (out, in, *k) becomes (out, in·prod(k)). ``'kernel'``: one
        (out, in) matrix per kernel position, named ``"conv1[i,j]"`` (``"conv1[i]"`` for Conv1d).
        ``'pooled'``: one layer whose ESD pools those slices (WeightWatcher's default).
    include, exclude, kinds, exclude_kinds, min_dim, max_dim
        Layer selection, see :func:`plan_layers`. Matrices whose smaller side is below
        ``min_dim`` (default 2) are skipped.

    Returns
    -------
    list of LayerMatrix
        Detached copies of the weights (training may go on while they are analyzed); tied
        parameters appear once.

    Examples
    --------
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Linear(8, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    >>> [(l.name, l.kind, l.n, l.m) for l in extract_layers(net)]
    [('0', 'linear', 8, 4), ('2', 'linear', 4, 2)]
    """
    select = _filter(include, exclude, kinds, exclude_kinds, min_dim, max_dim)
    return list(_plan_module(model, conv=conv, select=select, copy=True))


@validate({"trust_pickle": ["boolean"], **_SELECT_TABLE})
def load_matrices(
    path: str | Path,
    *,
    conv: str = "reshape",
    trust_pickle: bool = False,
    include: str | Sequence[str] | None = None,
    exclude: str | Sequence[str] | None = None,
    kinds: str | Sequence[str] | None = None,
    exclude_kinds: str | Sequence[str] | None = None,
    min_dim: int = 2,
    max_dim: int | None = None,
) -> list[LayerMatrix]:
    """Read every weight matrix of a checkpoint file or model folder into memory.

    For large checkpoints iterate :func:`plan_layers` instead (one matrix in memory at a time).

    Parameters
    ----------
    path : str or Path
        See :func:`analysis.checkpoints.open_checkpoint` for the formats. ``.npy``: one 2-D
        matrix named after the file; ``.npz``: every array must be 2-D (named by its key).
    conv, trust_pickle, include, exclude, kinds, exclude_kinds, min_dim, max_dim
        See :func:`plan_layers`.

    Returns
    -------
    list of LayerMatrix

    Raises
    ------
    ValueError
        One line naming the file: missing, unreadable, unknown suffix, a pickle that needs
        ``trust_pickle``, a non-2-D array, no matrices.
    """
    plan = plan_layers(path, conv=conv, trust_pickle=trust_pickle, include=include, exclude=exclude, kinds=kinds,
                       exclude_kinds=exclude_kinds, min_dim=min_dim, max_dim=max_dim)
    if not plan.layers:
        raise ValueError(f"{path}: no weight matrices found")
    return list(plan)
