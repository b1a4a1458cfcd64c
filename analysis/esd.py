"""Empirical spectral densities: eigenvalues of the correlation matrix X = WᵀW / N.

The weight matrix W is transposed if needed so that N ≥ M (N rows, M columns); the M×M Gram
matrix WᵀW / N is formed in float64 with torch and diagonalized with ``torch.linalg.eigvalsh``
(never an SVD). Matrices of equal shape are stacked and diagonalized in one batched call, on CUDA
when it is available. Round-off can make the smallest eigenvalues slightly negative; they are
clipped to 0.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from analysis._validation import validate

__all__ = ["as_matrix", "default_device", "esd", "esd_batch", "gram_eigh"]

# Upper bound on the bytes of one stacked float64 batch (inputs + Gram); larger groups are split.
_BATCH_BYTES = 1 << 29


def default_device(device: str | torch.device | None = None) -> torch.device:
    """Return ``device`` as a :class:`torch.device`; ``None`` picks CUDA when available, else CPU."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def as_matrix(W: Any, *, name: str = "") -> torch.Tensor:
    """Convert ``W`` (ndarray, tensor or nested list) to a 2-D tensor, checking shape and finiteness.

    Parameters
    ----------
    W : array-like or torch.Tensor of shape (n_rows, n_cols)
    name : str, default=''
        Layer name used in error messages.

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
    if t.is_floating_point() and not bool(torch.isfinite(t).all()):
        n_bad = int((~torch.isfinite(t)).sum())
        raise ValueError(f"{label}: weights contain {n_bad} NaN/Inf value(s)")
    return t


def _oriented(t: torch.Tensor) -> torch.Tensor:
    """Transpose so that rows ≥ columns (N ≥ M)."""
    return t.T if t.shape[0] < t.shape[1] else t


def _eigvals_stack(mats: list[torch.Tensor], device: torch.device) -> np.ndarray:
    """Eigenvalues of WᵀW/N for a list of equally shaped (N, M) matrices, N ≥ M: shape (B, M)."""
    n, m = mats[0].shape
    if len(mats) == 1:
        W = mats[0].to(device=device, dtype=torch.float64).unsqueeze(0)
    else:  # one float64 buffer, filled in place (a single copy per matrix, dtype cast included)
        W = torch.empty((len(mats), n, m), dtype=torch.float64, device=device)
        for i, mat in enumerate(mats):
            W[i].copy_(mat)
    gram = torch.matmul(W.transpose(-1, -2), W)
    gram /= n
    evals = torch.linalg.eigvalsh(gram)
    evals.clamp_(min=0.0)
    return evals.cpu().numpy()


@validate({"device": [None, str, torch.device]})
def esd(W: Any, *, device: str | torch.device | None = None, name: str = "") -> np.ndarray:
    """Eigenvalues of X = WᵀW / N, ascending, in float64.

    Parameters
    ----------
    W : array-like or torch.Tensor of shape (n_rows, n_cols)
        Transposed internally when n_rows < n_cols so that N = max, M = min of the two.
    device : str or torch.device, optional
        Where to diagonalize; ``None`` means CUDA if available, else CPU.
    name : str, default=''
        Layer name, used in error messages.

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
    t = _oriented(as_matrix(W, name=name))
    return _eigvals_stack([t], default_device(device))[0]


@validate({"device": [None, str, torch.device]})
def esd_batch(mats: Sequence[Any], *, device: str | torch.device | None = None) -> list[np.ndarray]:
    """Eigenvalues of WᵀW / N for many matrices, one batched ``eigvalsh`` per distinct shape.

    Parameters
    ----------
    mats : sequence of array-like, torch.Tensor or LayerMatrix
        Each of shape (n_rows, n_cols). A :class:`~analysis.layers.LayerMatrix` contributes its
        ``matrix`` and its ``name`` (used in error messages); other items are named ``mats[i]``.
    device : str or torch.device, optional
        ``None`` means CUDA if available, else CPU.

    Returns
    -------
    list of ndarray
        ``out[i]`` has shape (M_i,), ascending, in the order of ``mats``.

    Raises
    ------
    ValueError
        Non-2-D input or NaN/Inf entries, naming the offending layer.
    """
    dev = default_device(device)
    tensors: list[torch.Tensor] = []
    for i, item in enumerate(mats):
        matrix = getattr(item, "matrix", item)
        name = getattr(item, "name", None) or f"mats[{i}]"
        tensors.append(_oriented(as_matrix(matrix, name=name)))

    groups: dict[tuple[int, int], list[int]] = {}
    for i, t in enumerate(tensors):
        groups.setdefault((int(t.shape[0]), int(t.shape[1])), []).append(i)

    out: list[np.ndarray | None] = [None] * len(tensors)
    for (n, m), idx in groups.items():
        per_item = 8 * (n * m + 2 * m * m)
        step = max(1, _BATCH_BYTES // per_item)
        for start in range(0, len(idx), step):
            chunk = idx[start : start + step]
            evals = _eigvals_stack([tensors[i] for i in chunk], dev)
            for row, i in enumerate(chunk):
                out[i] = evals[row]
    return out  # type: ignore[return-value]


def gram_eigh(W: Any, *, device: str | torch.device | None = None, name: str = "") -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues and eigenvectors of X = WᵀW / N (for eigenvector localization).

    Parameters
    ----------
    W : array-like or torch.Tensor of shape (n_rows, n_cols)
    device : str or torch.device, optional
    name : str, default=''

    Returns
    -------
    eigs : ndarray of shape (M,)
        Ascending, clipped at 0.
    vecs : ndarray of shape (M, M)
        Column ``j`` is the unit eigenvector of ``eigs[j]``.
    """
    t = _oriented(as_matrix(W, name=name)).to(device=default_device(device), dtype=torch.float64)
    gram = t.T @ t / t.shape[0]
    evals, evecs = torch.linalg.eigh(gram)
    return evals.clamp(min=0.0).cpu().numpy(), evecs.cpu().numpy()
