"""Figures of spectra and of their evolution during training.

* one layer: :func:`plot_esd` (linear histogram, fitted MP density, λ+), :func:`plot_tail`
  (log–log tail with the PL fit), :func:`plot_esd_loglog` (log–log histogram with both fits),
  :func:`plot_layer` (two panels saved to a PNG);
* over training: :func:`plot_esd_evolution` (a layer's ESD at several steps, λ+ marked),
  :func:`plot_alpha_trajectories` (α per layer against step), :func:`plot_phase_timeline`
  (phase of every layer at every step, layers × steps);
* across trials: :func:`plot_scatter_groups` (a scatter coloured by a categorical variable).

The functions take plain data (arrays, lists of names), draw into a given ``ax`` or a new
:class:`matplotlib.figure.Figure` that is not attached to pyplot, and return the axes; nothing
switches matplotlib's process-wide backend. matplotlib is imported inside each function (never at
module import), so this works headless and in worker processes. Phase names outside
:data:`analysis.phases.PHASES` (e.g. ``"undetermined"``) are drawn in grey as undetermined.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "PHASE_COLORS",
    "UNDETERMINED",
    "phase_color",
    "phase_name",
    "plot_alpha_trajectories",
    "plot_esd",
    "plot_esd_evolution",
    "plot_esd_loglog",
    "plot_layer",
    "plot_phase_timeline",
    "plot_scatter_groups",
    "plot_tail",
]

#: Colour of each phase, light to dark along the self-regularization order; rank collapse apart.
PHASE_COLORS: dict[str, str] = {
    "random_like": "#c6dbef",
    "bleeding_out": "#6baed6",
    "bulk_plus_spikes": "#31a354",
    "bulk_decay": "#fd8d3c",
    "heavy_tailed": "#d62728",
    "rank_collapse": "#6a3d9a",
}
#: Label (and grey colour) for a layer without a known phase: degenerate layers, unknown codes.
UNDETERMINED = "undetermined"
_UNDETERMINED_COLOR = "#bdbdbd"
#: Colours of the groups of :func:`plot_scatter_groups` (matplotlib's tab10, in order).
_GROUP_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22",
                 "#7f7f7f", "#d62728")


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


def _new_axes(ax: Any, figsize: tuple[float, float] = (5, 4)) -> Any:
    if ax is not None:
        return ax
    from matplotlib.figure import Figure

    return Figure(figsize=figsize).subplots()


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
    from htsweep.analysis.marchenko_pastur import mp_density

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
        from htsweep.analysis.marchenko_pastur import fit_marchenko_pastur
        from htsweep.analysis.powerlaw_fit import fit_power_law

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


def phase_name(value: Any) -> str:
    """The phase name of a name or an integer code; :data:`UNDETERMINED` for anything else.

    Parameters
    ----------
    value : str, int or float
        A name from :data:`analysis.phases.PHASES`, or its code (``PHASE_CODES``); NaN, unknown
        codes and unknown names (``"undetermined"``, ``"(diverged)"``) map to ``"undetermined"``.

    Returns
    -------
    str

    Examples
    --------
    >>> phase_name(4), phase_name("bulk_decay"), phase_name(float("nan")), phase_name("?")
    ('heavy_tailed', 'bulk_decay', 'undetermined', 'undetermined')
    """
    from htsweep.analysis.phases import PHASES

    if isinstance(value, str):
        return value if value in PHASES else UNDETERMINED
    try:
        code = float(value)
    except (TypeError, ValueError):
        return UNDETERMINED
    if math.isfinite(code) and code == int(code) and 0 <= int(code) < len(PHASES):
        return PHASES[int(code)]
    return UNDETERMINED


def phase_color(value: Any) -> str:
    """Hex colour of a phase name or code (:data:`PHASE_COLORS`); grey when undetermined."""
    return PHASE_COLORS.get(phase_name(value), _UNDETERMINED_COLOR)


def _phase_legend(ax: Any, names: list[str], **kwargs: Any) -> None:
    from matplotlib.patches import Patch

    handles = [Patch(facecolor=phase_color(n), edgecolor="k", lw=0.4, label=n) for n in names]
    ax.legend(handles=handles, **kwargs)


def _edges(centers: np.ndarray) -> np.ndarray:
    """Cell edges around sorted centres (midpoints; the end cells as wide as their neighbours)."""
    c = np.asarray(centers, dtype=np.float64)
    if c.size == 1:
        return np.array([c[0] - 0.5, c[0] + 0.5])
    mid = (c[:-1] + c[1:]) / 2
    return np.concatenate([[c[0] - (mid[0] - c[0])], mid, [c[-1] + (c[-1] - mid[-1])]])


def plot_phase_timeline(steps: Any, layers: Any, phases: Any, *, ax: Any = None, title: str = "") -> Any:
    """The phase of every layer at every monitored step, as a layers × steps grid of colours.

    Parameters
    ----------
    steps : array-like of shape (n_steps,)
        Training steps of the columns, increasing.
    layers : sequence of str of length n_layers
        Layer names of the rows (drawn top to bottom in this order).
    phases : array-like of shape (n_layers, n_steps)
        Phase names or integer codes (``analysis.phases.PHASE_CODES``); NaN, ``None`` or unknown
        values are drawn grey as "undetermined" (e.g. a layer not analyzed at that step).
    ax : matplotlib.axes.Axes, optional
        Drawn into when given; otherwise a new figure (not attached to pyplot) is made.
    title : str, default=''

    Returns
    -------
    matplotlib.axes.Axes
        The grid is ``ax.collections[0]`` (a ``QuadMesh``); the legend lists the phases present,
        in :data:`~analysis.phases.PHASES` order.

    Examples
    --------
    >>> ax = plot_phase_timeline([0, 100, 200], ["fc1", "fc2"],
    ...                          [["random_like", "bulk_decay", "heavy_tailed"], [0, 0, float("nan")]])
    >>> [t.get_text() for t in ax.get_legend().get_texts()]
    ['random_like', 'bulk_decay', 'heavy_tailed', 'undetermined']
    """
    from matplotlib.colors import ListedColormap

    from htsweep.analysis.phases import PHASES

    x = np.asarray(steps, dtype=np.float64).ravel()
    names = [str(n) for n in layers]
    grid = np.asarray(phases, dtype=object)
    if grid.ndim != 2 or grid.shape != (len(names), x.size):
        raise ValueError(f"phases must have shape (n_layers, n_steps) = ({len(names)}, {x.size}), "
                         f"got {grid.shape}")
    categories = [*PHASES, UNDETERMINED]
    index = np.array([[categories.index(phase_name(v)) for v in row] for row in grid], dtype=float)
    ax = _new_axes(ax, (max(4.0, 0.5 * x.size + 2.5), 0.45 * len(names) + 1.6))
    cmap = ListedColormap([phase_color(c) for c in categories])
    ax.pcolormesh(_edges(x), np.arange(len(names) + 1) - 0.5, index, cmap=cmap, vmin=-0.5,
                  vmax=len(categories) - 0.5, edgecolors="white", linewidth=0.5)
    ax.set_yticks(range(len(names)))
    ax.set_yticklabels(names, fontsize=7)
    ax.set_ylim(len(names) - 0.5, -0.5)
    if x.size <= 12:
        ax.set_xticks(x)
    ax.set_xlabel("step")
    present = [c for i, c in enumerate(categories) if np.any(index == i)]
    _phase_legend(ax, present, fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    if title:
        ax.set_title(title, fontsize=9)
    return ax


def plot_alpha_trajectories(steps: Any, alphas: Any, *, layers: Any = None, target: float | None = None,
                            ax: Any = None, title: str = "") -> Any:
    """α of each layer against the training step, one line per layer.

    Parameters
    ----------
    steps : array-like of shape (n_steps,)
    alphas : array-like of shape (n_layers, n_steps)
        Power-law exponents; NaN where a layer has no fit at a step (the line breaks there).
    layers : sequence of str of length n_layers, optional
        Legend labels; default ``layer 0``, ``layer 1``, ...
    target : float, optional
        A target α drawn as a dashed horizontal line.
    ax : matplotlib.axes.Axes, optional
    title : str, default=''

    Returns
    -------
    matplotlib.axes.Axes
        One ``Line2D`` per layer labelled with its name (then the target line, if any).

    Examples
    --------
    >>> ax = plot_alpha_trajectories([0, 100, 200], [[5.1, 3.2, 2.4], [6.0, 4.4, float("nan")]],
    ...                              layers=["fc1", "fc2"], target=2.0)
    >>> [ln.get_label() for ln in ax.get_lines()]
    ['fc1', 'fc2', 'target α=2']
    """
    x = np.asarray(steps, dtype=np.float64).ravel()
    a = np.atleast_2d(np.asarray(alphas, dtype=np.float64))
    if a.shape[1] != x.size:
        raise ValueError(f"alphas must have shape (n_layers, n_steps) with n_steps={x.size}, got {a.shape}")
    names = [str(n) for n in layers] if layers is not None else [f"layer {i}" for i in range(a.shape[0])]
    if len(names) != a.shape[0]:
        raise ValueError(f"{len(names)} layer names for {a.shape[0]} rows of alphas")
    ax = _new_axes(ax)
    for name, row in zip(names, a, strict=True):
        ax.plot(x, row, marker="o", ms=3, lw=1.3, label=name if np.isfinite(row).any() else f"{name} (no fit)")
    if target is not None:
        ax.axhline(float(target), color="gray", ls="--", lw=1, label=f"target α={float(target):g}")
    ax.set_xlabel("step")
    ax.set_ylabel("α (power-law exponent)")
    ax.legend(fontsize=6, frameon=False)
    if title:
        ax.set_title(title, fontsize=9)
    return ax


def _loglog_bins(values: np.ndarray, n_max: int = 60, n_per_spectrum: int | None = None) -> np.ndarray:
    """Log-spaced bin edges over ``values``: about one bin per 3 eigenvalues, 10 to ``n_max``."""
    lo, hi = float(values.min()), float(values.max())
    n = values.size if n_per_spectrum is None else n_per_spectrum
    return np.geomspace(lo, hi * 1.0001 if hi > lo else lo * 2, min(n_max, max(10, n // 3)) + 1)


def _informative(eigs: Any) -> np.ndarray:
    """Eigenvalues worth a log axis: drop (near-)zeros of rank-deficient or Q≈1 layers."""
    ev = np.asarray(eigs, dtype=np.float64).ravel()
    ev = ev[np.isfinite(ev)]
    if ev.size:
        ev = ev[ev > max(float(ev.max()), 1e-30) * 1e-4]
    if ev.size >= 20:
        ev = ev[ev >= np.quantile(ev, 0.01)]
    return ev


def plot_esd_loglog(eigs: Any, fit: Any = None, *, ax: Any = None, title: str = "") -> Any:
    """Log–log histogram of an ESD with the fitted MP density (bulk), λ+ and the power-law tail.

    Parameters
    ----------
    eigs : array-like of shape (M,)
    fit : mapping or fit result, optional
        Anything with ``sigma2``, ``q``, ``lambda_plus`` (MP) and ``alpha``, ``xmin`` (power law),
        e.g. a metrics row of :func:`~analysis.analyze.analyze_eigs`; missing or NaN parts are
        not drawn.
    ax : matplotlib.axes.Axes, optional
    title : str, default=''

    Returns
    -------
    matplotlib.axes.Axes
        Lines labelled ``MP fit`` and ``PL α=<alpha>`` when those fits are drawn.
    """
    from matplotlib.ticker import NullFormatter

    from htsweep.analysis.marchenko_pastur import mp_density

    ax = _new_axes(ax)
    ev = _informative(eigs)
    if title:
        ax.set_title(title, fontsize=7)
    if ev.size < 2:
        ax.text(0.5, 0.5, "no spectrum", ha="center", va="center", transform=ax.transAxes)
        return ax
    ax.hist(ev, bins=_loglog_bins(ev), density=True, color="#7a9cc6", alpha=0.75, label="ESD")
    sigma2, q, lam_plus = _get(fit, "sigma2"), _get(fit, "q"), _get(fit, "lambda_plus")
    if _finite(sigma2) and _finite(q) and float(sigma2) > 0 and float(q) >= 1:
        x = np.geomspace(ev.min(), ev.max(), 400)
        dens = np.asarray(mp_density(x, float(sigma2), float(q)), dtype=float)
        ax.plot(x[dens > 0], dens[dens > 0], color="#2c7a2c", lw=1.4, label="MP fit")
    if _finite(lam_plus):
        ax.axvline(float(lam_plus), color="#2c7a2c", ls=":", lw=1)
    alpha, xmin = _get(fit, "alpha"), _get(fit, "xmin")
    if _finite(alpha) and _finite(xmin) and float(xmin) > 0 and float(alpha) > 1:
        a, lo = float(alpha), float(xmin)
        tail = ev[ev >= lo]
        if tail.size >= 2:
            x = np.geomspace(lo, ev.max(), 50)
            # Continuous PL density on [xmin, inf), scaled by the tail's share of all eigenvalues.
            ax.plot(x, tail.size / ev.size * (a - 1) / lo * (x / lo) ** (-a), color="#c0392b", lw=1.6,
                    label=f"PL α={a:.2f}")
            ax.axvline(lo, color="#c0392b", ls="--", lw=0.8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.tick_params(labelsize=6)
    ax.legend(fontsize=5.5, loc="lower left", frameon=False)
    return ax


def plot_esd_evolution(spectra: Any, steps: Any, *, lambda_plus: Any = None, ax: Any = None,
                       title: str = "") -> Any:
    """One layer's ESD at several training steps, overlaid on log–log axes, λ+ of each marked.

    Parameters
    ----------
    spectra : sequence of array-like, each of shape (M,)
        The layer's eigenvalues at each step (same layer, so the same M).
    steps : sequence of int
        The step of each spectrum; colours run from early (dark) to late (yellow).
    lambda_plus : sequence of float, optional
        MP bulk edge λ+ at each step, drawn as a dotted vertical line in the step's colour.
    ax : matplotlib.axes.Axes, optional
    title : str, default=''

    Returns
    -------
    matplotlib.axes.Axes
        One step-line histogram (``Line2D`` labelled ``step <k>``) per spectrum, in order.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> ax = plot_esd_evolution([rng.chisquare(1, 200), rng.pareto(2, 200) + 1], [0, 300],
    ...                         lambda_plus=[3.0, 3.5])
    >>> [ln.get_label() for ln in ax.get_lines() if ln.get_label().startswith("step")]
    ['step 0', 'step 300']
    """
    from matplotlib import colormaps

    evs = [_informative(e) for e in spectra]
    k = [int(s) for s in steps]
    if len(evs) != len(k):
        raise ValueError(f"{len(evs)} spectra for {len(k)} steps")
    edges_src = np.concatenate([e for e in evs if e.size] or [np.ones(2)])
    if lambda_plus is not None and len(lambda_plus) != len(evs):
        raise ValueError(f"{len(lambda_plus)} lambda_plus values for {len(evs)} spectra")
    ax = _new_axes(ax, (5.5, 4))
    edges = _loglog_bins(edges_src, n_max=40, n_per_spectrum=int(np.median([e.size for e in evs])) if evs else None)
    centers = np.sqrt(edges[:-1] * edges[1:])
    cmap = colormaps["viridis"]
    for i, (ev, step) in enumerate(zip(evs, k, strict=True)):
        color = cmap(i / max(1, len(evs) - 1) * 0.9)
        if ev.size >= 2:
            dens, _ = np.histogram(ev, bins=edges, density=True)
            keep = dens > 0
            ax.plot(centers[keep], dens[keep], drawstyle="steps-mid", color=color, lw=1.4, label=f"step {step}")
        if lambda_plus is not None and _finite(lambda_plus[i]):
            ax.axvline(float(lambda_plus[i]), color=color, ls=":", lw=1.2)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("eigenvalue λ   (dotted: MP edge λ+ at each step)")
    ax.set_ylabel("density")
    ax.legend(fontsize=7, frameon=False)
    if title:
        ax.set_title(title, fontsize=9)
    return ax


def plot_scatter_groups(x: Any, y: Any, *, groups: Any = None, labels: Any = None, ax: Any = None,
                        xlabel: str = "", ylabel: str = "", title: str = "", group_name: str = "",
                        order: Any = None, **scatter_kw: Any) -> Any:
    """Scatter ``y`` against ``x`` with one colour (and legend entry) per value of ``groups``.

    Parameters
    ----------
    x, y : array-like of shape (n,)
    groups : sequence of length n, optional
        A categorical variable (e.g. the optimizer of each trial); one colour per distinct value.
        None: a single colour, no legend.
    labels : sequence of str of length n, optional
        Text drawn next to each point (e.g. trial numbers).
    ax : matplotlib.axes.Axes, optional
    xlabel, ylabel, title : str, default=''
    group_name : str, default=''
        Legend title (the variable's name).
    order : sequence, optional
        The group values in colour and legend order (e.g. the values a sweep searched); values
        it does not list follow. Default: order of first appearance.
    **scatter_kw
        Passed on to ``Axes.scatter`` (``s``, ``marker``, ``edgecolor``, ...).

    Returns
    -------
    matplotlib.axes.Axes
        One ``PathCollection`` per group, labelled with the group value, in order of appearance.

    Examples
    --------
    >>> ax = plot_scatter_groups([1, 2, 3, 4], [2.0, 2.5, 4.0, 5.0], groups=["adam", "sgd", "adam", "sgd"])
    >>> [c.get_label() for c in ax.collections]
    ['adam', 'sgd']
    """
    xs = np.asarray(x, dtype=np.float64).ravel()
    ys = np.asarray(y, dtype=np.float64).ravel()
    if xs.shape != ys.shape:
        raise ValueError(f"x and y must have the same length, got {xs.size} and {ys.size}")
    g = ["" for _ in xs] if groups is None else [str(v) for v in groups]
    if len(g) != xs.size:
        raise ValueError(f"groups has {len(g)} values for {xs.size} points")
    ax = _new_axes(ax)
    kw = {"s": 30, "edgecolor": "k", "lw": 0.4, **scatter_kw}
    seen = dict.fromkeys(g)
    first = [str(v) for v in order or () if str(v) in seen]
    for i, value in enumerate([*first, *(v for v in seen if v not in first)]):
        sel = np.array([v == value for v in g])
        ax.scatter(xs[sel], ys[sel], color=_GROUP_COLORS[i % len(_GROUP_COLORS)], label=value, **kw)
    if labels is not None:
        for xi, yi, text in zip(xs, ys, labels, strict=True):
            ax.annotate(str(text), (xi, yi), fontsize=6, xytext=(3, 2), textcoords="offset points")
    if groups is not None:
        ax.legend(title=group_name or None, fontsize=7, title_fontsize=7, frameon=False)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=9)
    return ax
