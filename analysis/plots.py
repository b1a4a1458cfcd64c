"""ESD figures: linear histogram with the fitted MP density and λ+, log–log tail with the PL fit.

matplotlib is imported inside each function (never at module import), and figures saved to files
use the non-interactive Agg canvas, so this works headless and in worker processes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["plot_esd", "plot_layer", "plot_tail"]


def _get(obj: Any, key: str, default: Any = math.nan) -> Any:
    """Read ``key`` from a fit result (attribute) or a metrics row (mapping)."""
    if obj is None:
        return default
    if isinstance(obj, Mapping):
        return obj.get(key, default)
    return getattr(obj, key, default)


def _finite(value: Any) -> bool:
    try:
        return bool(np.isfinite(float(value)))
    except (TypeError, ValueError):
        return False


def _new_axes(ax: Any) -> Any:
    if ax is not None:
        return ax
    from matplotlib.figure import Figure

    return Figure(figsize=(5, 4)).subplots()


def plot_esd(eigs: Any, *, mp: Any = None, pl: Any = None, title: str = "", ax: Any = None) -> Any:
    """Linear-scale histogram of the ESD with the fitted MP density and the λ+ edge.

    Parameters
    ----------
    eigs : array-like of shape (M,)
    mp : MPFit or mapping, optional
        Anything with ``sigma2``, ``q`` and ``lambda_plus`` (an ``MPFit`` or a metrics row).
    pl : PowerLawFit or mapping, optional
        If given, ``xmin`` is marked.
    title : str, default=''
    ax : matplotlib.axes.Axes, optional
        Drawn into when given; otherwise a new figure (not attached to pyplot) is made.

    Returns
    -------
    matplotlib.axes.Axes
    """
    from analysis.marchenko_pastur import mp_density

    x = np.asarray(eigs, dtype=np.float64).ravel()
    ax = _new_axes(ax)
    ax.hist(x, bins=min(100, max(10, x.size // 4)), density=True, color="tab:blue", alpha=0.6, label="ESD")
    sigma2, q, lp = _get(mp, "sigma2"), _get(mp, "q"), _get(mp, "lambda_plus")
    if _finite(sigma2) and _finite(q) and float(sigma2) > 0 and float(q) >= 1:
        grid = np.linspace(0.0, max(float(x.max()), float(lp) if _finite(lp) else 0.0) * 1.02, 512)
        ax.plot(grid, mp_density(grid, float(sigma2), float(q)), color="tab:red", lw=1.5,
                label=f"MP σ²={float(sigma2):.3g}")
    if _finite(lp):
        ax.axvline(float(lp), color="tab:red", ls="--", lw=1, label=f"λ+={float(lp):.3g}")
    xmin = _get(pl, "xmin")
    if _finite(xmin):
        ax.axvline(float(xmin), color="tab:green", ls=":", lw=1, label=f"xmin={float(xmin):.3g}")
    ax.set_xlabel("eigenvalue λ")
    ax.set_ylabel("density")
    if title:
        ax.set_title(title)
    ax.legend(fontsize="small")
    return ax


def plot_tail(eigs: Any, pl: Any, ax: Any = None) -> Any:
    """Log–log density of the ESD (log-spaced bins) with the fitted power-law line and xmin.

    Parameters
    ----------
    eigs : array-like of shape (M,)
    pl : PowerLawFit or mapping
        Anything with ``alpha``, ``xmin`` and ``n_tail`` (a ``PowerLawFit`` or a metrics row).
    ax : matplotlib.axes.Axes, optional

    Returns
    -------
    matplotlib.axes.Axes
    """
    x = np.asarray(eigs, dtype=np.float64).ravel()
    x = x[x > 0]
    ax = _new_axes(ax)
    if x.size >= 2 and x.max() > x.min():
        edges = np.geomspace(x.min(), x.max(), min(60, max(8, x.size // 5)) + 1)
        dens, _ = np.histogram(x, bins=edges, density=True)
        centers = np.sqrt(edges[:-1] * edges[1:])
        keep = dens > 0
        ax.loglog(centers[keep], dens[keep], "o", ms=3, color="tab:blue", label="ESD")
    alpha, xmin, n_tail = _get(pl, "alpha"), _get(pl, "xmin"), _get(pl, "n_tail", 0)
    if _finite(alpha) and _finite(xmin) and x.size:
        a, lo = float(alpha), float(xmin)
        hi = float(x.max())
        grid = np.geomspace(lo, max(hi, lo * 1.01), 64)
        frac = float(n_tail) / x.size if n_tail else 1.0
        ax.loglog(grid, frac * (a - 1.0) / lo * (grid / lo) ** (-a), color="tab:red", lw=1.5,
                  label=f"PL α={a:.2f}")
        ax.axvline(lo, color="tab:green", ls=":", lw=1, label=f"xmin={lo:.3g}")
    ax.set_xlabel("eigenvalue λ")
    ax.set_ylabel("density")
    ax.legend(fontsize="small")
    return ax


def plot_layer(row_or_eigs: Any, path: str | Path, *, q: float = 1.0, title: str | None = None) -> Path:
    """Two-panel figure (linear ESD + MP, log–log tail + PL) saved to a PNG.

    Parameters
    ----------
    row_or_eigs : dict or array-like of shape (M,)
        A metrics row carrying ``"eigs"`` (from :func:`~analysis.analyze.analyze_layers`), or bare
        eigenvalues (then the fits are computed here).
    path : str or Path
        Output file; parent folders are created.
    q : float, default=1.0
        Aspect ratio N / M for the MP fit when bare eigenvalues are given (a row has its own).
    title : str, optional
        Defaults to the row's name and phase.

    Returns
    -------
    Path
        The written file.
    """
    from matplotlib.figure import Figure

    if isinstance(row_or_eigs, Mapping):
        row = row_or_eigs
        if "eigs" not in row:
            raise ValueError("plot_layer: the row has no 'eigs' (use analyze_layers rows)")
        eigs = np.asarray(row["eigs"], dtype=np.float64)
        mp: Any = row
        pl: Any = row
        if title is None:
            title = f"{row.get('name', '')}  [{row.get('phase', '')}]"
    else:
        from analysis.marchenko_pastur import fit_marchenko_pastur
        from analysis.powerlaw_fit import fit_power_law

        eigs = np.sort(np.asarray(row_or_eigs, dtype=np.float64).ravel())
        mp = fit_marchenko_pastur(eigs, float(q)) if eigs.size >= 4 else None
        pl = fit_power_law(eigs)
    fig = Figure(figsize=(10, 4), layout="constrained")
    ax1, ax2 = fig.subplots(1, 2)
    plot_esd(eigs, mp=mp, pl=pl, title=title or "", ax=ax1)
    plot_tail(eigs, pl, ax=ax2)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    return out
