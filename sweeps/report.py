"""``htsweep report WORKDIR``: a static HTML page with PNG figures summarizing a sweep.

Figures (matplotlib, Agg backend):

* ``esd_grid.png`` — final ESDs of the best and worst trials (rows) per layer (columns) on log–log
  axes, with the fitted Marchenko–Pastur density (bulk, edge λ+) and the power-law tail fit
  (from ``xmin``, slope ``-alpha``). Eigenvalues and fits come from each trial's MLflow run
  (``esd/step_<k>.npz`` and ``spectral_summary.json``).
* ``alpha_phase_vs_<param>.png`` — alpha and model phase against each searched hyperparameter.
* ``alpha_vs_accuracy.png`` — alpha against test accuracy, target and constraint marked.
* ``optimization_history.png`` and ``param_importances.png`` — from the Optuna study.

Everything is read from the sweep directory (``sweep.json``, Optuna, MLflow); no plotting
library beyond matplotlib is needed.
"""

from __future__ import annotations

import html
import json
import math
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sweeps.spec import SweepSpec
from sweeps.status import TrialRow, best_trial, format_params, load_trials, pareto_front
from sweeps.workdir import SweepMeta, load_optuna_study

__all__ = ["make_report", "TrialSpectra", "fetch_spectra"]


@dataclass(frozen=True)
class TrialSpectra:
    """Final eigenvalues and fits of one trial's layers.

    Attributes
    ----------
    row : TrialRow
    eigs : dict of str to ndarray of shape (m,)
        Layer name → ascending eigenvalues.
    layers : dict of str to dict
        Layer name → its metrics row (``alpha``, ``xmin``, ``sigma2``, ``q``, ``lambda_plus``,
        ``phase`` ...) from ``spectral_summary.json``.
    """

    row: TrialRow
    eigs: dict[str, np.ndarray]
    layers: dict[str, dict[str, Any]]


def fetch_spectra(meta: SweepMeta, row: TrialRow, dst: Path) -> TrialSpectra | None:
    """Download a trial's last ``esd/step_<k>.npz`` and ``spectral_summary.json`` from MLflow.

    Returns ``None`` when the trial has no run or no ESD artifacts.
    """
    if not row.mlflow_run_id:
        return None
    import mlflow

    client = mlflow.MlflowClient(meta.tracking_uri)
    try:
        files = [f.path for f in client.list_artifacts(row.mlflow_run_id, "esd") if f.path.endswith(".npz")]
    except Exception:  # noqa: BLE001 - a missing run must not break the report
        return None
    if not files:
        return None
    last = max(files, key=lambda p: int(Path(p).stem.split("_")[-1]) if Path(p).stem.split("_")[-1].isdigit() else -1)
    out = dst / f"trial_{row.number}"
    out.mkdir(parents=True, exist_ok=True)
    npz = Path(client.download_artifacts(row.mlflow_run_id, last, str(out)))
    with np.load(npz) as data:
        eigs = {k.replace("|", "/"): np.asarray(data[k], dtype=np.float64) for k in data.files}
    layers: dict[str, dict[str, Any]] = {}
    try:
        summary = Path(client.download_artifacts(row.mlflow_run_id, "spectral_summary.json", str(out)))
        layers = {str(r["name"]): r for r in json.loads(summary.read_text()).get("layers", [])}
    except Exception:  # noqa: BLE001 - fits are optional overlays
        pass
    return TrialSpectra(row=row, eigs=eigs, layers=layers)


def _num(v: Any) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return math.nan
    return f


def _plot_esd_cell(ax, eigs: np.ndarray, layer: dict[str, Any]) -> None:
    """Log–log ESD histogram with MP density (bulk) and power-law tail overlays."""
    # Show the informative range: drop (near-)zero eigenvalues of rank-deficient / Q≈1 layers.
    ev = eigs[eigs > max(eigs.max(), 1e-30) * 1e-4] if eigs.size else eigs
    if ev.size >= 20:
        ev = ev[ev >= np.quantile(ev, 0.01)]
    if ev.size < 2:
        ax.text(0.5, 0.5, "no spectrum", ha="center", va="center", transform=ax.transAxes)
        return
    bins = np.geomspace(ev.min(), ev.max() * 1.0001, min(60, max(10, ev.size // 3)))
    ax.hist(ev, bins=bins, density=True, color="#7a9cc6", alpha=0.75, label="ESD")
    sigma2, q, lam_plus = _num(layer.get("sigma2")), _num(layer.get("q")), _num(layer.get("lambda_plus"))
    if math.isfinite(sigma2) and math.isfinite(q) and sigma2 > 0 and q >= 1:
        try:
            from analysis.marchenko_pastur import mp_density

            x = np.geomspace(ev.min(), ev.max(), 400)
            dens = np.asarray(mp_density(x, sigma2, q), dtype=float)
            ax.plot(x[dens > 0], dens[dens > 0], color="#2c7a2c", lw=1.4, label="MP fit")
        except Exception:  # noqa: BLE001 - the overlay is optional
            pass
    if math.isfinite(lam_plus):
        ax.axvline(lam_plus, color="#2c7a2c", ls=":", lw=1)
    alpha, xmin = _num(layer.get("alpha")), _num(layer.get("xmin"))
    if math.isfinite(alpha) and math.isfinite(xmin) and xmin > 0 and alpha > 1:
        tail = ev[ev >= xmin]
        if tail.size >= 2:
            frac = tail.size / ev.size
            x = np.geomspace(xmin, ev.max(), 50)
            # Continuous PL density on [xmin, inf), scaled by the tail's share of all eigenvalues.
            ax.plot(x, frac * (alpha - 1) / xmin * (x / xmin) ** (-alpha), color="#c0392b", lw=1.6,
                    label=f"PL α={alpha:.2f}")
            ax.axvline(xmin, color="#c0392b", ls="--", lw=0.8)
    from matplotlib.ticker import NullFormatter

    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.tick_params(labelsize=6)
    ax.legend(fontsize=5.5, loc="lower left", frameon=False)


def _pyplot() -> Any:
    """``matplotlib.pyplot`` on the file-only Agg backend (reports run on headless nodes)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> None:
    """Lay out, write the PNG and free the figure."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_esd_grid(spectra: list[tuple[str, TrialSpectra]], path: Path) -> Path | None:
    """ESD grid: one row per (label, trial), one column per layer."""
    plt = _pyplot()

    if not spectra:
        return None
    layer_names: list[str] = []
    for _, s in spectra:
        for name in s.eigs:
            if name not in layer_names:
                layer_names.append(name)
    nrow, ncol = len(spectra), max(1, len(layer_names))
    fig, axes = plt.subplots(nrow, ncol, figsize=(2.6 * ncol + 0.8, 2.2 * nrow + 0.4), squeeze=False)
    for i, (label, s) in enumerate(spectra):
        for j, name in enumerate(layer_names):
            ax = axes[i][j]
            if name in s.eigs:
                layer = s.layers.get(name, {})
                _plot_esd_cell(ax, s.eigs[name], layer)
                phase = layer.get("phase", "")
                ax.set_title(f"{name}  {phase}", fontsize=7)
            else:
                ax.axis("off")
            if j == 0:
                r = s.row
                ax.set_ylabel(f"{label} #{r.number}\nα={r.alpha:.2f} acc={r.test_acc:.2f}", fontsize=7)
    fig.suptitle("Final ESDs (log–log) with MP bulk fit and power-law tail: best and worst trials", fontsize=9)
    _save(fig, path)
    return path


def _phase_axis(ax) -> dict[str, int]:
    from analysis.phases import PHASES

    order = {p: i for i, p in enumerate(PHASES)}
    ax.set_yticks(range(len(PHASES)))
    ax.set_yticklabels(PHASES, fontsize=6)
    ax.set_ylim(-0.5, len(PHASES) - 0.5)
    return order


def _param_values(rows: list[TrialRow], name: str) -> tuple[np.ndarray, list[str] | None]:
    vals = [r.params.get(name) for r in rows]
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in vals):
        return np.asarray(vals, dtype=float), None
    cats = sorted({str(v) for v in vals}, key=lambda s: (len(s), s))
    idx = {c: i for i, c in enumerate(cats)}
    return np.asarray([idx[str(v)] for v in vals], dtype=float), cats


def plot_vs_params(spec: SweepSpec, rows: list[TrialRow], outdir: Path) -> list[Path]:
    """For each searched parameter: alpha (top) and phase (bottom) against it."""
    plt = _pyplot()

    done = [r for r in rows if r.complete and math.isfinite(r.alpha)]
    paths = []
    if not done:
        return paths
    colors = ["#1f77b4" if r.feasible else "#d62728" for r in done]
    for name, dom in spec.search.items():
        x, cats = _param_values(done, name)
        fig, (a1, a2) = plt.subplots(2, 1, figsize=(5, 5.2), sharex=True)
        a1.scatter(x, [r.alpha for r in done], c=colors, s=28, edgecolor="k", lw=0.4)
        a1.axhline(spec.objective.target_alpha, color="gray", ls="--", lw=1, label="target")
        a1.set_ylabel(f"alpha ({spec.objective.aggregate})")
        a1.legend(fontsize=7)
        order = _phase_axis(a2)
        a2.scatter(x, [order.get(r.phase, -1) for r in done], c=colors, s=28, edgecolor="k", lw=0.4)
        a2.set_ylabel("model phase")
        if cats is not None:
            a2.set_xticks(range(len(cats)))
            a2.set_xticklabels(cats)
        elif getattr(dom, "type", "") == "loguniform" or (getattr(dom, "log", False)) or \
                (x.min() > 0 and x.max() / max(x.min(), 1e-300) > 50):
            a2.set_xscale("log")
        a2.set_xlabel(name)
        fig.suptitle(f"alpha and phase vs {name}  (red: infeasible)", fontsize=9)
        safe = name.replace(".", "_").replace("/", "_")
        path = outdir / f"alpha_phase_vs_{safe}.png"
        _save(fig, path)
        paths.append(path)
    return paths


def plot_alpha_vs_accuracy(spec: SweepSpec, rows: list[TrialRow], best: TrialRow | None, path: Path) -> Path | None:
    """Alpha against test accuracy; target alpha, accuracy constraint and best trial marked."""
    plt = _pyplot()

    done = [r for r in rows if r.complete and math.isfinite(r.alpha) and math.isfinite(r.test_acc)]
    if not done:
        return None
    fig, ax = plt.subplots(figsize=(5.2, 4))
    ax.scatter([r.test_acc for r in done], [r.alpha for r in done],
               c=["#1f77b4" if r.feasible else "#d62728" for r in done], s=30, edgecolor="k", lw=0.4)
    for r in done:
        ax.annotate(str(r.number), (r.test_acc, r.alpha), fontsize=6, xytext=(3, 2), textcoords="offset points")
    ax.axhline(spec.objective.target_alpha, color="gray", ls="--", lw=1, label="target alpha")
    if spec.objective.min_test_accuracy is not None:
        ax.axvline(spec.objective.min_test_accuracy, color="#d62728", ls=":", lw=1, label="min test acc")
    if best is not None:
        ax.scatter([best.test_acc], [best.alpha], marker="*", s=220, color="gold", edgecolor="k", zorder=5,
                   label=f"best #{best.number}")
    if spec.objective.multi_objective:
        front = pareto_front(rows)
        ax.plot([r.test_acc for r in front], [r.alpha for r in front], color="#555", lw=0.8, label="Pareto front")
    ax.set_xlabel("test accuracy")
    ax.set_ylabel(f"alpha ({spec.objective.aggregate})")
    ax.legend(fontsize=7)
    ax.set_title("alpha vs test accuracy", fontsize=9)
    _save(fig, path)
    return path


def plot_history(rows: list[TrialRow], spec: SweepSpec, path: Path) -> Path | None:
    """Optuna optimization history: objective per trial and the best value so far."""
    plt = _pyplot()

    done = [r for r in rows if r.complete and r.values]
    if not done:
        return None
    fig, ax = plt.subplots(figsize=(5.6, 3.6))
    x = [r.number for r in done]
    y = [r.values[0] for r in done]
    ax.scatter(x, y, s=22, color="#1f77b4", label="objective" if not spec.objective.multi_objective
               else "|alpha - target|")
    ax.plot(x, np.minimum.accumulate(y), color="#d62728", lw=1.4, drawstyle="steps-post", label="best so far")
    ax.set_xlabel("trial")
    ax.set_ylabel("objective (lower is better)")
    if max(y) > 0 and min(y) > 0 and max(y) / min(y) > 100:
        ax.set_yscale("log")
    ax.legend(fontsize=7)
    ax.set_title("Optuna optimization history", fontsize=9)
    _save(fig, path)
    return path


def plot_importances(meta: SweepMeta, spec: SweepSpec, path: Path) -> tuple[Path | None, str]:
    """Optuna's parameter importances (its default evaluator) for the (first) objective; (path, note)."""
    plt = _pyplot()
    import optuna

    if len(spec.search) < 2:
        return None, "parameter importances need at least two searched parameters"
    try:
        study = load_optuna_study(meta.study, meta.optuna_storage)
        target = (lambda t: t.values[0]) if spec.objective.multi_objective else None
        with warnings.catch_warnings():  # PED-ANOVA's reminder that lower targets are better
            warnings.simplefilter("ignore")
            imp = optuna.importance.get_param_importances(study, target=target)
    except Exception as exc:  # noqa: BLE001 - too few / constant trials
        return None, f"parameter importances unavailable: {exc}"
    names = list(imp)[::-1]
    fig, ax = plt.subplots(figsize=(5, 0.5 * len(names) + 1.2))
    ax.barh(names, [imp[n] for n in names], color="#1f77b4")
    ax.set_xlabel("importance for the objective")
    ax.set_title("Optuna parameter importances", fontsize=9)
    _save(fig, path)
    return path, ""


def _pick_extremes(spec: SweepSpec, rows: list[TrialRow], k: int) -> list[tuple[str, TrialRow]]:
    done = [r for r in rows if r.complete and r.mlflow_run_id and r.values]
    key = (lambda r: r.alpha_error if math.isfinite(r.alpha_error) else math.inf) if spec.objective.multi_objective \
        else (lambda r: r.values[0])
    ranked = sorted(done, key=key)
    k = min(k, max(1, len(ranked) // 2)) if ranked else 0
    best, worst = ranked[:k], [r for r in ranked[::-1][:k] if r not in ranked[:k]]
    return [("best", r) for r in best] + [("worst", r) for r in worst]


def _table_html(spec: SweepSpec, rows: list[TrialRow], best: TrialRow | None) -> str:
    def f(v: Any) -> str:
        if isinstance(v, float):
            return "-" if not math.isfinite(v) else f"{v:.4g}"
        return html.escape("-" if v is None else str(v))

    head = "".join(f"<th>{html.escape(n)}</th>" for n in
                   ["#", *spec.search, "alpha", "|α−target|", "phase", "test acc", "objective", "state"])
    body = []
    for r in rows:
        cls = ' class="best"' if best is not None and r.number == best.number else (
            ' class="infeasible"' if r.complete and not r.feasible else "")
        cells = [str(r.number), *[f(r.params.get(n)) for n in spec.search], f(r.alpha), f(r.alpha_error),
                 html.escape(r.phase or "-"), f(r.test_acc), " / ".join(f(v) for v in r.values) or "-", r.state]
        body.append(f"<tr{cls}>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def make_report(workdir: str | Path, *, outdir: str | Path | None = None, k: int = 3) -> Path:
    """Write ``<workdir>/report/index.html`` and its PNG figures.

    Parameters
    ----------
    workdir : str or Path
        The sweep directory.
    outdir : str or Path, optional
        Where to write; default ``<workdir>/report``.
    k : int, default=3
        Number of best and of worst trials in the ESD grid.

    Returns
    -------
    Path
        The HTML file.
    """
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    meta, spec, rows = load_trials(workdir)
    out = Path(outdir) if outdir is not None else Path(workdir) / "report"
    out.mkdir(parents=True, exist_ok=True)
    best = best_trial(rows)
    figures: list[tuple[str, Path | None, str]] = []

    with tempfile.TemporaryDirectory(prefix="htsweep-report-") as tmp:
        spectra = []
        for label, row in _pick_extremes(spec, rows, k):
            s = fetch_spectra(meta, row, Path(tmp))
            if s is not None:
                spectra.append((label, s))
        figures.append(("ESD of the best and worst trials", plot_esd_grid(spectra, out / "esd_grid.png"),
                        "" if spectra else "no ESD artifacts found in MLflow for completed trials"))
    for p in plot_vs_params(spec, rows, out):
        figures.append((f"alpha and phase vs {p.stem.removeprefix('alpha_phase_vs_')}", p, ""))
    figures.append(("alpha vs test accuracy", plot_alpha_vs_accuracy(spec, rows, best, out / "alpha_vs_accuracy.png"),
                    "no completed trials yet"))
    figures.append(("Optuna optimization history", plot_history(rows, spec, out / "optimization_history.png"),
                    "no completed trials yet"))
    imp_path, note = plot_importances(meta, spec, out / "param_importances.png")
    figures.append(("Optuna parameter importances", imp_path, note))

    n_done = sum(r.complete for r in rows)
    if best is not None:
        best_html = (f"<p><b>Best trial #{best.number}</b> (alpha closest to {spec.objective.target_alpha:g} among "
                     f"feasible trials): {html.escape(format_params(best.params))} — alpha {best.alpha:.3f}, "
                     f"phase <b>{html.escape(best.phase or '-')}</b>, test accuracy {best.test_acc:.3f}; "
                     f"MLflow run <code>{html.escape(best.mlflow_run_id or '-')}</code></p>")
    else:
        best_html = "<p>No feasible completed trial yet.</p>"
    constraint = (f", test accuracy ≥ {spec.objective.min_test_accuracy:g}"
                  if spec.objective.min_test_accuracy is not None else "")
    mo = " (multi-objective: |alpha − target| vs test error, NSGA-II)" if spec.objective.multi_objective else ""
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>htsweep report: {html.escape(meta.name)}</title>",
        "<style>body{font-family:sans-serif;max-width:1200px;margin:2em auto;color:#222}"
        "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 7px;text-align:right}"
        "tr.best{background:#fff3b0}tr.infeasible td{color:#b22}img{max-width:100%;border:1px solid #eee}"
        "figure{margin:1.5em 0}figcaption{font-weight:bold;margin-bottom:.4em}</style></head><body>",
        f"<h1>Sweep <code>{html.escape(meta.name)}</code></h1>",
        f"<p>{html.escape(spec.description)}</p>",
        f"<p>Model <b>{html.escape(spec.model)}</b> on <b>{html.escape(spec.dataset)}</b>; "
        f"{n_done}/{spec.num_samples} trials complete (status: {html.escape(meta.status)}); target alpha "
        f"{spec.objective.target_alpha:g} ({spec.objective.aggregate} over layers){constraint}{mo}; "
        f"sampler {spec.sampler_type}.</p>",
        best_html,
        "<h2>Trials</h2>", _table_html(spec, rows, best),
        "<h2>Figures</h2>",
    ]
    for title, path, note in figures:
        if path is not None:
            parts.append(f"<figure><figcaption>{html.escape(title)}</figcaption>"
                         f"<img src='{html.escape(path.name)}' alt='{html.escape(title)}'></figure>")
        elif note:
            parts.append(f"<p><i>{html.escape(title)}: {html.escape(note)}</i></p>")
    parts.append(f"<p>Browse every trial in MLflow: <code>htsweep ui {html.escape(str(workdir))}</code></p>")
    parts.append("</body></html>")
    index = out / "index.html"
    index.write_text("\n".join(parts))
    return index
