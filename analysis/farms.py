"""FARMS: the power-law α of a layer measured on square windows, free of the aspect-ratio bias.

The ESD of an N×M matrix with no learned structure is a Marchenko–Pastur bulk whose shape depends
on Q = N / M, so any α fitted to it does too (PL_Alpha_Hill of a Gaussian matrix is about 2.1, 2.7,
3.5, 4.9 at Q = 1, 2, 4, 10). FARMS (Hu et al., ICML 2025, "Eigenspectrum analysis of neural
networks without aspect ratio bias") measures every layer at one aspect ratio instead: it cuts the
(oriented, N ≥ M) matrix into windows of ``round(q · s) × s`` entries, ``s = min(max_rows, M)``
(``max_rows = 2000``, ``q = 1``: square windows, the long side along N when ``q > 1``), placed at
``n_windows`` evenly spaced offsets along each dimension (offsets that coincide, because a
dimension is barely longer than the window, are taken once), computes the ESD of each window with
the same normalisation as the layer's ESD (``wᵀw / rows``, :mod:`analysis.spectrum`), pools the
eigenvalues and fits α on the pooled ESD: ``alpha_farms`` with the CSN fitter
(:func:`~analysis.powerlaw_fit.fit_power_law`) and ``alpha_hill_farms`` with PL_Alpha_Hill
(:func:`~analysis.powerlaw_fit.pl_alpha_hill`).

All windows of all the layers given are diagonalized together: windows of one size go through one
batched ``eigvalsh`` (:func:`analysis.spectrum.esd_layers`, on CUDA when available, float32 by
default with the same float64 redo rule as the layer ESDs). The windows are views; no copy of a
layer is made.

Conv layers are windowed per kernel slice, as the paper does, and all their windows pooled: the
slices of a pooled conv layer (``conv='pooled'``), and the ``(out, in)`` slices of a layer reshaped
to ``(out, in·k)`` (``conv='reshape'``, the default; ``LayerMatrix.kernel`` says how many); with
``conv='kernel'`` each slice is its own layer anyway.

Cost. With the defaults a layer with ``M ≤ 2000`` and ``N ≥ M + 9`` has 10 windows of M×M, i.e. ten
M×M eigensolves where the layer's own ESD needs one (plus the N·M² Gram): several times the ESD's
cost, which is why the metrics are opt-in (``farms=True``). Layers larger than the window in both
dimensions have up to 100 windows of 2000×2000. Measured (``benchmarks/bench_farms.py``, CPU, one
thread): the window eigensolves are 85 % of the cost (8000×1000: 1.2 s of 1.4 s; the fit of the
pooled ESD 0.04 s), so with the paper's 10 offsets FARMS costs 4–6.5× the layer's analysis and
≈ 12× on a 4096² layer — the issue's "within 2×" is out of reach on the CPU with these defaults
(batching the windows only pays on a GPU). ``n_windows=2`` costs 0.8–1.1× the analysis (4096²:
4 windows, ≈ 0.5×) and moved alpha_hill_farms by at most 0.01 on Gaussian and Student-t layers, so
choose it where FARMS runs often (a monitor every few steps, a whole LLM): every path that computes
FARMS takes it as ``farms_windows`` (``analyze_matrix`` / ``analyze_layers`` / ``analyze_model``,
``SpectralMonitor``, the sweep spec's ``monitor.farms_windows``, ``htsweep analyze --farms
--farms-windows 2``); the default stays the paper's 10. A square layer with ``M ≤ 2000`` is its
own only window: ``analyze_layers`` and ``SpectralMonitor`` hand its spectrum over (``spectra=``),
so FARMS adds only the
pooled fits there (≤ 0.07× the analysis, measured on 512²…2000², instead of 0.9–1.0× for a second
eigensolve of the same Gram).

Examples
--------
>>> import numpy as np
>>> W = np.random.default_rng(0).standard_normal((1000, 200))
>>> (res,) = farms([W], device="cpu")
>>> res.n_windows, res.window, res.eigs.shape
(10, (200, 200), (2000,))
>>> 1.9 < res.alpha_hill < 2.4  # a square window's MP bulk, whatever the layer's Q
True
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from htsweep.analysis._validation import Interval, Options, validate
from htsweep.analysis.powerlaw_fit import fit_power_law, pl_alpha_hill
from htsweep.analysis.spectrum import PRECISIONS, as_matrix, esd_layers, round_off_floor

__all__ = ["FARMS_MAX_ROWS", "FARMS_Q", "FARMS_WINDOWS", "FarmsResult", "farms", "window_offsets", "windows"]

#: Largest window side (the paper's default).
FARMS_MAX_ROWS = 2000
#: Aspect ratio of a window (long side / short side).
FARMS_Q = 1.0
#: Evenly spaced window offsets per dimension.
FARMS_WINDOWS = 10


@dataclass(frozen=True)
class FarmsResult:
    """The FARMS α of one layer.

    Attributes
    ----------
    alpha : float
        CSN power-law α of the pooled window ESD (NaN when the fit fails or too few eigenvalues).
    alpha_hill : float
        PL_Alpha_Hill of the pooled window ESD.
    n_windows : int
        Windows pooled (over all slices of a pooled conv layer).
    window : tuple of (int, int)
        ``(rows, cols)`` of a window, rows ≥ cols.
    precision : str
        ``"float64"`` if any window's ESD was computed (or redone) in float64, else ``"float32"``.
    eigs : ndarray
        The pooled eigenvalues, ascending (not compared).
    """

    alpha: float
    alpha_hill: float
    n_windows: int
    window: tuple[int, int]
    precision: str
    eigs: np.ndarray = field(compare=False, repr=False)


def window_offsets(length: int, size: int, count: int) -> np.ndarray:
    """``count`` evenly spaced start offsets of a ``size`` window in ``length``, rounded, distinct.

    Examples
    --------
    >>> window_offsets(1000, 200, 5).tolist()
    [0, 200, 400, 600, 800]
    >>> window_offsets(203, 200, 10).tolist()
    [0, 1, 2, 3]
    """
    return np.unique(np.rint(np.linspace(0, length - size, count)).astype(np.int64))


def windows(t: torch.Tensor, *, max_rows: int = FARMS_MAX_ROWS, q: float = FARMS_Q,
            n_windows: int = FARMS_WINDOWS) -> list[torch.Tensor]:
    """The FARMS windows (views) of one 2-D matrix, oriented so that rows ≥ cols.

    The short side is ``s = min(max_rows, M)``, the long one ``min(N, round(q · s))``; offsets
    from :func:`window_offsets` along each dimension, every combination once.
    """
    x = t.T if t.shape[0] < t.shape[1] else t
    n, m = int(x.shape[0]), int(x.shape[1])
    cols = min(max_rows, m)
    rows = min(n, max(cols, round(q * cols)))
    return [x[r : r + rows, c : c + cols] for r in window_offsets(n, rows, n_windows)
            for c in window_offsets(m, cols, n_windows)]


def _alphas(eigs: np.ndarray, m: int, min_eigs: int) -> tuple[float, float]:
    """CSN α and PL_Alpha_Hill of a pooled ESD; round-off zeros of ``m``-sized windows left out by
    the layer fits' rule (``round_off_floor(m, λmax, "float64")``: a float32 window spectrum's
    unresolved eigenvalues were raised to ``eps32 · λmax`` by ``esd_layers`` and count as live, as
    they do in the layer's own fits, so one window covering the whole layer gives its α exactly)."""
    if m < min_eigs or eigs.size == 0 or not eigs[-1] > 0:
        return math.nan, math.nan
    above = eigs[eigs > round_off_floor(m, float(eigs[-1]), "float64")]
    fit = fit_power_law(above) if above.size >= 10 else None
    alpha = float(fit.alpha) if fit is not None and fit.success else math.nan
    return alpha, float(pl_alpha_hill(above))


def _reusable(spectrum: tuple[np.ndarray, str] | None, cut: list[torch.Tensor], whole: torch.Tensor) -> bool:
    """Whether a caller's spectrum of the matrix is the spectrum of its only window: one window
    covering the matrix, eigenvalues of its length, finite weights (else the eigensolve runs and
    reports NaN/Inf as for any window)."""
    if spectrum is None or spectrum[0] is None or len(cut) != 1 or cut[0].numel() != whole.numel():
        return False
    return np.shape(spectrum[0]) == (min(cut[0].shape),) and bool(torch.isfinite(cut[0]).all())


@validate({
    "mats": [list, tuple],
    "device": [None, str, torch.device],
    "precision": [Options(set(PRECISIONS))],
    "max_rows": [Interval(int, 1, None, closed="left")],
    "q": [Interval(float, 1.0, None, closed="left")],
    "n_windows": [Interval(int, 1, None, closed="left")],
    "min_eigs": [Interval(int, 1, None, closed="left")],
    "spectra": [None, list, tuple],
})
def farms(mats: Sequence[Any], *, device: str | torch.device | None = None, precision: str = "float32",
          max_rows: int = FARMS_MAX_ROWS, q: float = FARMS_Q, n_windows: int = FARMS_WINDOWS,
          min_eigs: int = 32, spectra: Sequence[tuple[np.ndarray, str] | None] | None = None) -> list[FarmsResult]:
    """FARMS α of each matrix (module docstring): windows, one batched ESD, pooled fits.

    Parameters
    ----------
    mats : sequence of array-like, torch.Tensor or LayerMatrix
        2-D matrices; a LayerMatrix of a pooled conv layer (3-D stack) is windowed per slice.
    device : str or torch.device, optional
        ``None``: CUDA if available.
    precision : {'float32', 'float64'}, default='float32'
        As for :func:`analysis.spectrum.esd_layers` (float32 window spectra with rank-collapse
        evidence are redone in float64).
    max_rows : int, default=FARMS_MAX_ROWS
    q : float, default=FARMS_Q
        Window aspect ratio (≥ 1).
    n_windows : int, default=FARMS_WINDOWS
        Offsets per dimension.
    min_eigs : int, default=32
        Layers whose window has fewer columns get NaN α (as the layer fits do below
        ``analysis.analyze.MIN_FIT_EIGS``).
    spectra : sequence of (ndarray, str) or None, optional
        Per matrix, its ESD and precision as :func:`analysis.spectrum.esd_layers` returns them,
        when the caller has them already (:func:`analysis.analyze.analyze_layers`, the monitor from
        its rows; ``None`` entries: not known): a matrix whose only window is the whole matrix (a
        square layer with ``M ≤ max_rows``) takes its spectrum from there instead of a second
        eigensolve of the same Gram (only a spectrum of the window's length, and only for finite
        weights: anything else is computed, so NaN/Inf weights still raise).

    Returns
    -------
    list of FarmsResult
        In the order of ``mats``.

    Raises
    ------
    ValueError
        Non-2-D input or NaN/Inf entries, naming the layer.
    """
    from htsweep.analysis.layers import LayerMatrix

    if spectra is not None and len(spectra) != len(mats):
        raise ValueError(f"farms: spectra must hold one spectrum per matrix; got {len(spectra)} for {len(mats)}")
    pieces: list[LayerMatrix] = []
    owner: list[int] = []
    shapes: list[tuple[int, int]] = []
    reused: dict[int, tuple[np.ndarray, str]] = {}
    for i, item in enumerate(mats):
        matrix = getattr(item, "matrix", item)
        name = getattr(item, "name", None) or f"mats[{i}]"
        conv = getattr(item, "kind", "").startswith("conv")
        kernel = int(getattr(item, "kernel", 1))
        if isinstance(matrix, torch.Tensor) and matrix.ndim == 3 and conv:
            slices = [as_matrix(s, name=name, check_finite=False) for s in matrix.detach()]
        else:
            slices = [as_matrix(matrix, name=name, check_finite=False)]
            if conv and kernel > 1 and slices[0].shape[1] % kernel == 0:  # (out, in·k): column i·k + p
                slices = [slices[0][:, p::kernel] for p in range(kernel)]
        cut = [w for t in slices for w in windows(t, max_rows=max_rows, q=q, n_windows=n_windows)]
        shapes.append((int(cut[0].shape[0]), int(cut[0].shape[1])))
        if _reusable(spectra[i] if spectra is not None else None, cut, slices[0]):
            reused[i] = spectra[i]
            continue
        pieces += [LayerMatrix.from_tensor(name, "matrix", w) for w in cut]
        owner += [i] * len(cut)
    windows_of: dict[int, list[tuple[np.ndarray, str]]] = {i: [spectrum] for i, spectrum in reused.items()}
    for i, spectrum in zip(owner, esd_layers(pieces, device=device, precision=precision), strict=True):
        windows_of.setdefault(i, []).append(spectrum)
    out = []
    for i, (rows, cols) in enumerate(shapes):
        parts = windows_of[i]
        eigs = np.sort(np.concatenate([e for e, _ in parts]))
        used = "float64" if any(u == "float64" for _, u in parts) else "float32"
        alpha, hill = _alphas(eigs, cols, min_eigs)
        out.append(FarmsResult(alpha=alpha, alpha_hill=hill, n_windows=len(parts), window=(rows, cols),
                               precision=used, eigs=eigs))
    return out
