"""Empirical spectral densities: eigenvalues of the correlation matrix X = WᵀW / N.

The weight matrix W is transposed if needed so that N ≥ M (N rows, M columns); the M×M Gram
matrix WᵀW / N is accumulated over chunks of rows, each converted to the working precision
(``float64`` or ``float32``) on its own, so no full-size copy of W is ever made (a 128k×4096
bfloat16 embedding costs one 4096² Gram and one 32 MiB chunk, not a 4 GB float64 copy), and
diagonalized with ``torch.linalg.eigvalsh`` (never an SVD). On the CPU each chunk goes through the
BLAS symmetric rank-k update (``?syrk``, half the flops of a general product); on a GPU through
``torch.addmm``. Grams of equal size are diagonalized in one batched call. Round-off can make the
smallest eigenvalues slightly negative; they are clipped to 0 (float32: to its error scale, below).

Precision. ``float64`` is the reference. ``float32`` halves the cost. Its eigenvalues carry an
absolute error of a few ``eps32 · λmax`` (eps32 ≈ 1.2e-7) near zero (measured: the zero
eigenvalues of rank-deficient 11008×4096 and 4096² matrices come out below 4.4 eps32·λmax; the
large eigenvalues of an iid matrix carry a *relative* error of about 2e-5), harmless for the tail
fit, the MP bulk and every metric, but it blurs eigenvalues at the round-off floor
:func:`round_off_floor` (``F32_FLOOR · √M · eps32 · λmax``, 150× the measured error at M = 4096):
below it float32 cannot tell a small eigenvalue from a zero one, the evidence of rank collapse.
So a float32 spectrum with eigenvalues below that floor set apart from the rest
(:func:`needs_float64`) is recomputed in float64 (:func:`esd_layers` reports which precision each
spectrum came from). A large λmax/λmin alone never triggers it: the eigenvalues of a heavy-tailed
layer above the floor are resolved to better than 1 %.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

# imported here, not on first use: a thread limit (threadpoolctl) only reaches BLAS libraries
# already loaded, and a Gram summed by 2 threads rounds differently from one summed by 1
from scipy.linalg import blas

from htsweep.analysis._validation import Options, validate

__all__ = [
    "F32_FLOOR", "F32_MIN_CLUSTER", "PRECISIONS", "as_matrix", "default_device", "esd", "esd_batch", "esd_layers", "gram_eigh",
    "needs_float64", "round_off_floor",
]

#: Working precisions of the Gram matrix and the eigensolver.
PRECISIONS = ("float32", "float64")
#: float32 round-off floor of the eigenvalues, in units of ``√M · eps32 · λmax``.
F32_FLOOR = 10.0
#: Fewest eigenvalues under that floor, set apart from the rest, that send a spectrum to float64.
F32_MIN_CLUSTER = 3

# Upper bound on the bytes of the Grams diagonalized in one batched call; larger groups are split.
_BATCH_BYTES = 1 << 29
# Rows of W converted to the working precision at a time: about this many bytes per chunk.
_CHUNK_BYTES = 1 << 25
_DTYPES = {"float32": torch.float32, "float64": torch.float64}
# smallest M whose CPU eigensolve may use more than one thread
_THREADED_MIN_M = 1024
_PRECISION = [Options(set(PRECISIONS))]


def default_device(device: str | torch.device | None = None) -> torch.device:
    """Return ``device`` as a :class:`torch.device`; ``None`` picks CUDA when available, else CPU."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def as_matrix(W: Any, *, name: str = "", check_finite: bool = True) -> torch.Tensor:
    """Convert ``W`` (ndarray, tensor or nested list) to a 2-D tensor, checking shape and finiteness.

    Parameters
    ----------
    W : array-like or torch.Tensor of shape (n_rows, n_cols)
    name : str, default=''
        Layer name used in error messages.
    check_finite : bool, default=True
        Scan for NaN/Inf (the ESD functions skip the scan and check the Gram diagonal instead,
        which is non-finite exactly when a column of W is).

    Returns
    -------
    torch.Tensor of shape (n_rows, n_cols)
        Detached; the original dtype and device are kept.

    Raises
    ------
    ValueError
        If ``W`` is not 2-D, is empty, or holds NaN/Inf values.
    """
    label = f"layer {name!r}" if name else "matrix"
    if isinstance(W, torch.Tensor):
        t = W.detach()
    else:
        try:
            with warnings.catch_warnings():
                # read-only arrays (e.g. from Ray's object store) are fine: they are never written
                warnings.filterwarnings("ignore", message=".*not writable.*", category=UserWarning)
                t = torch.as_tensor(np.asarray(W))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{label}: cannot convert to a numeric matrix ({exc})") from None
    if t.ndim != 2:
        raise ValueError(f"{label}: expected a 2-D matrix, got shape {tuple(t.shape)}")
    if t.shape[0] == 0 or t.shape[1] == 0:
        raise ValueError(f"{label}: empty matrix of shape {tuple(t.shape)}")
    if t.is_complex() or t.dtype == torch.bool:
        raise ValueError(f"{label}: expected a real matrix, got dtype {t.dtype}")
    if check_finite and t.is_floating_point() and not bool(torch.isfinite(t).all()):
        n_bad = int((~torch.isfinite(t)).sum())
        raise ValueError(f"{label}: weights contain {n_bad} NaN/Inf value(s)")
    return t


def _oriented(t: torch.Tensor) -> torch.Tensor:
    """Transpose so that rows ≥ columns (N ≥ M)."""
    return t.T if t.shape[0] < t.shape[1] else t


def _gram(t: torch.Tensor, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """X = tᵀt / N of an oriented (N ≥ M) matrix, accumulated over row chunks in ``dtype``.

    Returns a (M, M) tensor on ``device`` whose lower triangle holds X (the CPU path fills only
    that triangle; pass ``UPLO="L"`` to the eigensolver).
    """
    n, m = int(t.shape[0]), int(t.shape[1])
    step = max(1, _CHUNK_BYTES // (m * dtype.itemsize))
    if device.type == "cpu":
        syrk = blas.dsyrk if dtype == torch.float64 else blas.ssyrk
        acc = None
        for r0 in range(0, n, step):
            chunk = t[r0 : r0 + step].to(device="cpu", dtype=dtype).contiguous()
            # a C-ordered (rows, M) chunk is the Fortran-ordered (M, rows) matrix A: syrk adds A·Aᵀ
            a = chunk.numpy().T
            if acc is None:
                acc = syrk(1.0, a, trans=0, lower=0)
            else:
                acc = syrk(1.0, a, beta=1.0, c=acc, trans=0, lower=0, overwrite_c=1)
        # Fortran upper triangle = C-order lower triangle
        gram = torch.from_numpy(acc.T)  # type: ignore[union-attr]
    else:
        gram = torch.zeros((m, m), dtype=dtype, device=device)
        for r0 in range(0, n, step):
            chunk = t[r0 : r0 + step].to(device=device, dtype=dtype)
            gram.addmm_(chunk.T, chunk)
    gram /= n
    return gram


def _check_gram(gram: torch.Tensor, t: torch.Tensor, label: str) -> bool:
    """False if the Gram overflowed; ValueError naming the layer if W holds NaN/Inf."""
    if bool(torch.isfinite(torch.diagonal(gram)).all()):
        return True
    n_bad = 0
    step = max(1, _CHUNK_BYTES // (int(t.shape[1]) * t.element_size()))
    for r0 in range(0, int(t.shape[0]), step):
        chunk = t[r0 : r0 + step]
        if chunk.is_floating_point():
            n_bad += int((~torch.isfinite(chunk)).sum())
    if n_bad:
        raise ValueError(f"{label}: weights contain {n_bad} NaN/Inf value(s)")
    return False


def round_off_floor(m: int, lmax: float, precision: str) -> float:
    """Eigenvalues of an M×M Gram computed in ``precision`` below this are not told apart from 0.

    ``M · eps64 · λmax`` in float64 (the eigvalsh bound); ``F32_FLOOR · √M · eps32 · λmax`` in
    float32 (module docstring: the measured round-off of zero eigenvalues grows slower than √M).

    Examples
    --------
    >>> round_off_floor(4096, 1.0, "float32") < 1e-4 < 4096 * 1.2e-7
    True
    """
    if precision == "float64":
        return m * float(np.finfo(np.float64).eps) * lmax
    return F32_FLOOR * math.sqrt(m) * float(np.finfo(np.float32).eps) * lmax


def needs_float64(evals: np.ndarray) -> bool:
    """Whether a float32 spectrum must be redone in float64: a cluster at the round-off floor, set apart.

    True when at least ``F32_MIN_CLUSTER`` eigenvalues lie below :func:`round_off_floor` and the
    decade above the floor holds fewer than a third as many: (near-)zero eigenvalues separated
    from the live ones — rank collapse, dead units — whose number and gap float32 cannot resolve.
    One or two isolated ones are not enough: the smallest eigenvalues of a square random matrix
    fall that far apart by chance (λ_k ∝ k²) and would send many square layers (and FARMS
    windows) to float64 for nothing; the price is that one or two exact zeros count as live in
    ``numerical_rank`` (the phase needs 10 % of the spectrum at zero). A continuous density
    reaching down to zero (a square matrix: MP with Q = 1 has density ∝ λ^(-1/2) near 0, so the
    decade above a small floor holds about twice the eigenvalues below it) is left in float32:
    those eigenvalues are live, only their values are unresolved. A heavy-tailed spectrum whose
    bulk lies far below λmax but above the floor has nothing below it and stays in float32 too.
    """
    m = evals.size
    top = float(evals[-1]) if m else 0.0
    if not top > 0:
        return m > 0
    floor = round_off_floor(m, top, "float32")
    below = int(np.searchsorted(evals, floor))
    decade = int(np.searchsorted(evals, 10.0 * floor)) - below
    return below >= F32_MIN_CLUSTER and below > 3 * decade


def _lift_unresolved(evals: np.ndarray) -> np.ndarray:
    """A kept float32 spectrum with its eigenvalues below ``eps32 · λmax`` raised to that value.

    :func:`needs_float64` kept it, so what lies at the round-off floor is live, of unresolved
    value: at its error scale these eigenvalues count as live, as in float64 (the median of
    PL_Alpha_Hill, ``numerical_rank``), and round-off zeros open no spurious log-gap for the
    rank-collapse test; values above the scale are untouched.
    """
    return np.maximum(evals, float(np.finfo(np.float32).eps) * float(evals[-1]))


def _slices(t: torch.Tensor) -> list[torch.Tensor]:
    """The oriented (N ≥ M) matrices of one layer: itself, or each slice of a pooled stack."""
    mats = list(t) if t.ndim == 3 else [t]
    return [_oriented(x) for x in mats]


@contextmanager
def _small_single_threaded(m: int, device: torch.device) -> Iterator[None]:
    """One thread (torch and the BLAS) for the CPU Grams and eigensolves of M < ``_THREADED_MIN_M``.

    A multi-threaded BLAS/LAPACK call on a small matrix costs more in thread hand-offs than it saves,
    and on a busy machine each hand-off waits for the other thread to be scheduled (measured: a
    200×200 ``eigvalsh`` took 0.6 s with 2 threads under load, 5 ms with one).
    """
    threads = torch.get_num_threads()
    if device.type != "cpu" or m >= _THREADED_MIN_M or threads == 1:
        yield
        return
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(1)
    try:
        with threadpool_limits(1, user_api="blas"):
            yield
    finally:
        torch.set_num_threads(threads)


def _eig_groups(items: list[tuple[int, torch.Tensor]], dtype: torch.dtype, device: torch.device,
                labels: list[str]) -> dict[int, list[np.ndarray | None]]:
    """Eigenvalues of every slice of every item; Grams of one size are diagonalized together.

    Returns item index → list of ascending eigenvalue arrays (one per slice), ``None`` for a slice
    whose Gram overflowed. At most ``_BATCH_BYTES`` of Grams are alive at a time.
    """
    by_m: dict[int, list[tuple[int, int, torch.Tensor]]] = {}
    out: dict[int, list[np.ndarray | None]] = {}
    for i, t in items:
        mats = _slices(t)
        out[i] = [None] * len(mats)
        for j, x in enumerate(mats):
            by_m.setdefault(int(x.shape[1]), []).append((i, j, x))
    for m, entries in by_m.items():
        with _small_single_threaded(m, device):
            _eig_batches(m, entries, dtype, device, labels, out)
    return out


def _eig_batches(m: int, entries: list[tuple[int, int, torch.Tensor]], dtype: torch.dtype, device: torch.device,
                 labels: list[str], out: dict[int, list[np.ndarray | None]]) -> None:
    """Grams and batched eigensolves of the slices of one size M, written into ``out``."""
    step = max(1, _BATCH_BYTES // (m * m * dtype.itemsize))
    for start in range(0, len(entries), step):
        batch = entries[start : start + step]
        stack = torch.empty((len(batch), m, m), dtype=dtype, device=device)
        ok = []
        for b, (i, _, x) in enumerate(batch):
            stack[b].copy_(_gram(x, dtype, device))
            ok.append(_check_gram(stack[b], x, labels[i]))
            if not ok[b]:
                stack[b].zero_()  # overflowed: redone in float64 by the caller
        try:
            evals = torch.linalg.eigvalsh(stack, UPLO="L").clamp_(min=0.0).to(torch.float64).cpu().numpy()
        except torch.linalg.LinAlgError as exc:  # no convergence: float32 retries in float64
            if dtype == torch.float64:
                names = ", ".join(sorted({labels[i] for i, *_ in batch}))
                raise ValueError(f"{names}: eigensolver failed ({str(exc).splitlines()[0]})") from None
            ok = [False] * len(batch)
        for b, (i, j, _) in enumerate(batch):
            if ok[b]:
                out[i][j] = evals[b]


def _merge(parts: list[np.ndarray | None]) -> np.ndarray | None:
    if any(p is None for p in parts):
        return None
    return parts[0] if len(parts) == 1 else np.sort(np.concatenate(parts))  # type: ignore[arg-type]


@validate({"device": [None, str, torch.device], "precision": _PRECISION})
def esd_layers(
    mats: Sequence[Any], *, device: str | torch.device | None = None, precision: str = "float64"
) -> list[tuple[np.ndarray, str]]:
    """Eigenvalues of each matrix (or pooled stack) and the precision they were computed in.

    Parameters
    ----------
    mats : sequence of array-like, torch.Tensor or LayerMatrix
        2-D matrices; a :class:`~analysis.layers.LayerMatrix` may also hold a 3-D stack of slices
        (a pooled conv layer), whose eigenvalues are pooled.
    device : str or torch.device, optional
    precision : {'float64', 'float32'}, default='float64'
        ``'float32'`` spectra with rank-collapse evidence are redone in float64.

    Returns
    -------
    list of (ndarray, str)
        Ascending float64 eigenvalues and ``'float32'`` or ``'float64'``, in the order of ``mats``.
        A float32 spectrum's eigenvalues below ``eps32 · λmax`` (its error scale) are raised to it.
    """
    dev = default_device(device)
    tensors: list[torch.Tensor] = []
    labels: list[str] = []
    for i, item in enumerate(mats):
        matrix = getattr(item, "matrix", item)
        name = getattr(item, "name", None) or f"mats[{i}]"
        pooled = getattr(item, "kind", "").startswith("conv") and isinstance(matrix, torch.Tensor) and matrix.ndim == 3
        if pooled:
            t = matrix.detach()
            for x in t:
                as_matrix(x, name=name, check_finite=False)  # shape and dtype checks
        else:
            t = as_matrix(matrix, name=name, check_finite=False)
        tensors.append(t)
        labels.append(f"layer {name!r}")
    todo = list(enumerate(tensors))
    out: list[tuple[np.ndarray, str] | None] = [None] * len(tensors)
    if precision == "float32":
        first = _eig_groups(todo, torch.float32, dev, labels)
        todo = []
        for i, parts in first.items():
            merged = _merge(parts)
            if merged is None or needs_float64(merged):
                todo.append((i, tensors[i]))
            else:
                out[i] = (_lift_unresolved(merged), "float32")
    if todo:
        for i, parts in _eig_groups(todo, torch.float64, dev, labels).items():
            merged = _merge(parts)
            if merged is None:  # float64 overflow needs |w| > 1e154: treat like NaN/Inf
                raise ValueError(f"{labels[i]}: the Gram matrix overflows float64")
            out[i] = (merged, "float64")
    return out  # type: ignore[return-value]


@validate({"device": [None, str, torch.device], "precision": _PRECISION})
def esd(W: Any, *, device: str | torch.device | None = None, name: str = "", precision: str = "float64") -> np.ndarray:
    """Eigenvalues of X = WᵀW / N, ascending, as float64.

    Parameters
    ----------
    W : array-like or torch.Tensor of shape (n_rows, n_cols)
        Any real dtype (bfloat16 included). Transposed internally when n_rows < n_cols so that
        N = max, M = min of the two.
    device : str or torch.device, optional
        Where to diagonalize; ``None`` means CUDA if available, else CPU.
    name : str, default=''
        Layer name, used in error messages.
    precision : {'float64', 'float32'}, default='float64'
        Working precision of the Gram matrix and the eigensolver (module docstring).

    Returns
    -------
    eigs : ndarray of shape (M,)
        Ascending, non-negative eigenvalues (``sum(eigs) == ||W||_F² / N``).

    Raises
    ------
    ValueError
        Non-2-D input or NaN/Inf entries; the message names the layer.

    Examples
    --------
    >>> import numpy as np
    >>> W = np.diag([3.0, 2.0, 1.0])
    >>> esd(W, device="cpu")
    array([0.33333333, 1.33333333, 3.        ])
    """
    return esd_layers([_Named(name, as_matrix(W, name=name, check_finite=False))], device=device,
                      precision=precision)[0][0]


class _Named:
    """A matrix with a name for error messages (what esd_layers reads from a LayerMatrix)."""

    def __init__(self, name: str, matrix: torch.Tensor) -> None:
        self.name = name
        self.matrix = matrix


@validate({"device": [None, str, torch.device], "precision": _PRECISION})
def esd_batch(
    mats: Sequence[Any], *, device: str | torch.device | None = None, precision: str = "float64"
) -> list[np.ndarray]:
    """Eigenvalues of WᵀW / N for many matrices, one batched ``eigvalsh`` per Gram size.

    Parameters
    ----------
    mats : sequence of array-like, torch.Tensor or LayerMatrix
        Each of shape (n_rows, n_cols). A :class:`~analysis.layers.LayerMatrix` contributes its
        ``matrix`` (a 3-D stack for a pooled conv layer: its slices' eigenvalues are pooled) and
        its ``name`` (used in error messages); other items are named ``mats[i]``.
    device : str or torch.device, optional
        ``None`` means CUDA if available, else CPU.
    precision : {'float64', 'float32'}, default='float64'

    Returns
    -------
    list of ndarray
        ``out[i]`` has shape (M_i,) (pooled: M_i times the slices), ascending, in the order of
        ``mats``.

    Raises
    ------
    ValueError
        Non-2-D input or NaN/Inf entries, naming the offending layer.
    """
    return [e for e, _ in esd_layers(mats, device=device, precision=precision)]


@validate({"device": [None, str, torch.device], "precision": _PRECISION})
def gram_eigh(
    W: Any, *, device: str | torch.device | None = None, name: str = "", precision: str = "float64"
) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues and eigenvectors of X = WᵀW / N (for eigenvector localization).

    Parameters
    ----------
    W : array-like or torch.Tensor of shape (n_rows, n_cols)
    device : str or torch.device, optional
    name : str, default=''
    precision : {'float64', 'float32'}, default='float64'

    Returns
    -------
    eigs : ndarray of shape (M,)
        Ascending, clipped at 0, float64.
    vecs : ndarray of shape (M, M)
        Column ``j`` is the unit eigenvector of ``eigs[j]``.
    """
    t = _oriented(as_matrix(W, name=name, check_finite=False))
    dev = default_device(device)
    gram = _gram(t, _DTYPES[precision], dev)
    _check_gram(gram, t, f"layer {name!r}" if name else "matrix")
    evals, evecs = torch.linalg.eigh(gram, UPLO="L")
    return evals.clamp(min=0.0).to(torch.float64).cpu().numpy(), evecs.to(torch.float64).cpu().numpy()
