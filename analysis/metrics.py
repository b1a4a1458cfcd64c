"""Spectral metrics of a layer from its ESD, and eigenvector localization.

The rank and entropy metrics take the eigenvalues λ of X = WᵀW / N (any order; λ = ν² / N for the
singular values ν of W); they are scale-free, so they are the same on any scale.

The norm metrics are on WeightWatcher's scale (and that of Martin, Peng & Mahoney 2021), the squared
singular values ν² = N·λ of W itself, not the normalized λ, so that they do not shift by a
layer-dependent log10 N and compare directly with WeightWatcher's columns:
``log_frobenius_norm = log10 Σν² = log10 ‖W‖²_F``, ``log_spectral_norm = log10 ν²max = log10 ‖W‖²_2``,
``alpha_weighted = alpha · log10 ν²max``, ``log_alpha_norm = log10 Σ (ν²)^alpha``. These functions take
``sv2`` (ν²); :func:`spectral_metrics` converts from λ with the layer's N.

Matrix entropy and stable rank follow Martin & Mahoney (implicit self-regularization, eqs. 6–7);
effective rank is Roy & Vetterli's exp of the Shannon entropy of the normalized singular values.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = [
    "alpha_weighted",
    "effective_rank",
    "localization_metrics",
    "log_alpha_norm",
    "log_frobenius_norm",
    "log_spectral_norm",
    "matrix_entropy",
    "numerical_rank",
    "spectral_metrics",
    "stable_rank",
]


def _eigs(eigs: Any) -> np.ndarray:
    x = np.asarray(eigs, dtype=np.float64).ravel()
    return np.clip(x, 0.0, None)


def _log10(value: float) -> float:
    return math.log10(value) if value > 0 else math.nan


def numerical_rank(eigs: Any, *, tol: float | None = None) -> int:
    """Number of eigenvalues above ``tol`` (default ``M · eps64 · λmax``, the eigvalsh noise floor).

    Parameters
    ----------
    eigs : array-like of shape (M,)
    tol : float, optional

    Returns
    -------
    int
    """
    x = _eigs(eigs)
    if x.size == 0:
        return 0
    lmax = float(x.max())
    if tol is None:
        tol = x.size * np.finfo(np.float64).eps * lmax
    return int(np.count_nonzero(x > tol))


def stable_rank(eigs: Any) -> float:
    """Σλ / λmax = ‖W‖²_F / ‖W‖²_2; NaN for an all-zero spectrum."""
    x = _eigs(eigs)
    lmax = float(x.max()) if x.size else 0.0
    return float(x.sum() / lmax) if lmax > 0 else math.nan


def matrix_entropy(eigs: Any) -> float:
    """Normalized spectral entropy -Σ p ln p / ln R with p = λ / Σλ and R the numerical rank.

    1 for a spectrum with all eigenvalues equal, lower for more structure; 0 when R = 1, NaN for
    an all-zero spectrum.
    """
    x = _eigs(eigs)
    total = float(x.sum())
    if not total > 0:
        return math.nan
    rank = numerical_rank(x)
    if rank <= 1:
        return 0.0
    p = x[x > 0] / total
    return float(-(p * np.log(p)).sum() / math.log(rank))


def effective_rank(eigs: Any) -> float:
    """exp(-Σ p ln p) with p = ν / Σν, ν = sqrt(λ) (Roy & Vetterli 2007); NaN for all zeros."""
    nu = np.sqrt(_eigs(eigs))
    total = float(nu.sum())
    if not total > 0:
        return math.nan
    p = nu[nu > 0] / total
    return float(math.exp(-(p * np.log(p)).sum()))


def log_frobenius_norm(sv2: Any) -> float:
    """log10 Σν² = log10 ‖W‖²_F, from the squared singular values ``sv2`` (WeightWatcher's ``log_norm``)."""
    return _log10(float(_eigs(sv2).sum()))


def log_spectral_norm(sv2: Any) -> float:
    """log10 ν²max = log10 ‖W‖²_2, from the squared singular values ``sv2``."""
    x = _eigs(sv2)
    return _log10(float(x.max())) if x.size else math.nan


def alpha_weighted(sv2: Any, alpha: float) -> float:
    """alpha · log10 ν²max (Martin & Mahoney's α̂; NaN when alpha is NaN)."""
    return float(alpha) * log_spectral_norm(sv2)


def log_alpha_norm(sv2: Any, alpha: float) -> float:
    """log10 Σ (ν²)^alpha, the log Schatten α-norm, computed stably in log space (NaN when alpha is NaN)."""
    x = _eigs(sv2)
    x = x[x > 0]
    if x.size == 0 or not np.isfinite(alpha):
        return math.nan
    logs = float(alpha) * np.log10(x)
    top = float(logs.max())
    return top + math.log10(float(np.sum(10.0 ** (logs - top))))


def spectral_metrics(eigs: Any, *, n: int, alpha: float = math.nan) -> dict[str, float]:
    """All eigenvalue-only metrics of the metrics row.

    Parameters
    ----------
    eigs : array-like of shape (M,)
        Eigenvalues λ of X = WᵀW / N.
    n : int
        N, the larger dimension of W: the norm metrics use ν² = N·λ (WeightWatcher's scale).
    alpha : float, default=nan
        Power-law exponent for ``alpha_weighted`` and ``log_alpha_norm``.

    Returns
    -------
    dict
        ``lambda_max`` (of X, the ESD's scale), ``stable_rank, matrix_entropy, effective_rank``
        (scale-free), ``log_frobenius_norm, log_spectral_norm, alpha_weighted, log_alpha_norm``
        (on the ν² scale) and ``numerical_rank`` (an int).

    Examples
    --------
    >>> import numpy as np
    >>> # W = diag(3, 1): ν = (3, 1), N = 2, so λ = ν² / 2 = (0.5, 4.5) and ‖W‖²_2 = 9
    >>> m = spectral_metrics(np.array([0.5, 4.5]), n=2, alpha=2.0)
    >>> round(10 ** m["log_spectral_norm"], 9), round(10 ** m["log_frobenius_norm"], 9)
    (9.0, 10.0)
    """
    x = _eigs(eigs)
    sv2 = x * float(n)
    return {
        "lambda_max": float(x.max()) if x.size else math.nan,
        "stable_rank": stable_rank(x),
        "matrix_entropy": matrix_entropy(x),
        "effective_rank": effective_rank(x),
        "log_frobenius_norm": log_frobenius_norm(sv2),
        "log_spectral_norm": log_spectral_norm(sv2),
        "alpha_weighted": alpha_weighted(sv2, alpha),
        "log_alpha_norm": log_alpha_norm(sv2, alpha),
        "numerical_rank": numerical_rank(x),
    }


def localization_metrics(vecs: Any, *, bins: int = 100) -> dict[str, np.ndarray]:
    """Eigenvector localization metrics (Martin & Mahoney, section 3.3), one value per vector.

    Each unit eigenvector v (length M) is rescaled so its components have unit mean square.

    Parameters
    ----------
    vecs : array-like of shape (M, n_vectors)
        Eigenvectors as columns.
    bins : int, default=100
        Histogram bins for the vector entropy.

    Returns
    -------
    dict of str to ndarray of shape (n_vectors,)
        ``vector_entropy``: Shannon entropy of the histogram of the components, divided by
        ln(bins) (in [0, 1]; lower = more localized); ``localization_ratio``: ‖v‖₁ / ‖v‖_∞
        (in [1, M]); ``participation_ratio``: ‖v‖₂ / ‖v‖₄ (in [1, M^(1/4)]).
    """
    V = np.asarray(vecs, dtype=np.float64)
    if V.ndim == 1:
        V = V[:, None]
    m = V.shape[0]
    norms = np.linalg.norm(V, axis=0)
    norms[norms == 0] = 1.0
    V = V / norms * math.sqrt(m)
    absV = np.abs(V)
    loc = absV.sum(axis=0) / np.maximum(absV.max(axis=0), 1e-300)
    part = np.sqrt((V**2).sum(axis=0)) / np.maximum((V**4).sum(axis=0) ** 0.25, 1e-300)
    ent = np.empty(V.shape[1])
    for j in range(V.shape[1]):
        counts, _ = np.histogram(V[:, j], bins=bins)
        p = counts[counts > 0] / m
        ent[j] = -(p * np.log(p)).sum() / math.log(bins)
    return {"vector_entropy": ent, "localization_ratio": loc, "participation_ratio": part}
