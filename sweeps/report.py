"""``htsweep report WORKDIR``: a static HTML page with PNG figures summarizing a sweep.

What it answers, top to bottom:

* **which spectral metric tracks generalization** — Spearman and Kendall rank correlation of each
  model-level metric (mean α, α-weighted, log α-norm, Hill α, stable rank, MP soft rank, spikes,
  norm baselines) with test accuracy (test loss for regression) over the finished trials, overall
  and within each value of the categorical hyperparameters, with bootstrap CIs and the number of
  trials (:func:`sweeps.trial_data.generalization`); ``best_metric_vs_target.png`` plots the
  best-correlated metric against the target;
* ``esd_grid.png`` — final ESDs of the best and worst trials (rows) per layer (columns), log–log,
  with the fitted Marchenko–Pastur bulk (edge λ+) and the power-law tail;
* ``trajectories.png`` — α of each layer against the step, and the phase timeline (layers ×
  steps), for the best and the worst trial, from the logged metric histories;
* ``esd_evolution.png`` — one layer's ESD at several monitored steps, overlaid, λ+ marked;
* ``alpha_phase_vs_<param>.png`` — α and model phase against each searched hyperparameter,
  coloured by the categorical hyperparameters (e.g. optimizer), infeasible trials ringed;
* ``alpha_vs_accuracy.png``; ``optimization_history.png`` and ``param_importances.png`` (Optuna).

Everything is read from the sweep directory (``sweep.json``, Optuna, MLflow). Figures are drawn
by :mod:`analysis.plots` on matplotlib ``Figure`` objects (no pyplot state, no backend switch).
The trials and correlation tables and the report itself are also put on the sweep's MLflow parent
run (:func:`services.tracking.log_sweep_summary`), so the MLflow UI shows them.
"""

from __future__ import annotations

import html
import json
import logging
import math
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from htsweep.analysis.metric_names import ReportKey, RowKey
from htsweep.sweeps.spec import SweepSpec
from htsweep.sweeps.status import (
    TrialRow,
    best_trial,
    format_params,
    is_regression,
    load_trials,
    pareto_front,
)
from htsweep.sweeps.workdir import SweepMeta, load_optuna_study

__all__ = ["make_report", "TrialSpectra", "fetch_spectra"]

log = logging.getLogger(__name__)


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
    from htsweep.sweeps.trial_data import run_client

    client = run_client(meta, row)
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
        layers = {str(r[RowKey.NAME]): r for r in json.loads(summary.read_text()).get("layers", [])}
    except Exception:  # noqa: BLE001 - fits are optional overlays
        pass
    return TrialSpectra(row=row, eigs=eigs, layers=layers)


def _figure(figsize: tuple[float, float], nrows: int = 1, ncols: int = 1, **kw: Any) -> tuple[Any, Any]:
    """A pyplot-free figure and its axes (``squeeze=False``: always a 2-D array)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    return fig, fig.subplots(nrows, ncols, squeeze=False, **kw)


def _save(fig: Any, path: Path) -> Path:
    """Lay out and write the PNG."""
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def _target(rows: list[TrialRow]) -> tuple[str, str]:
    """(TrialRow attribute, axis label) of what generalization is measured by."""
    # the report keys are also the TrialRow attributes of their final values
    return (ReportKey.TEST_LOSS, "test loss (MSE)") if is_regression(rows) else (ReportKey.TEST_ACC, "test accuracy")


def _colour_by(spec: SweepSpec, exclude: str = "") -> str | None:
    """The categorical hyperparameter that colours the scatter plots (the first one searched)."""
    from htsweep.sweeps.trial_data import categorical_params

    cats = [c for c in categorical_params(spec) if c != exclude]
    return cats[0] if cats else None


def _groups(spec: SweepSpec, rows: list[TrialRow], by: str | None) -> dict[str, Any]:
    """``plot_scatter_groups`` keywords colouring ``rows`` by the hyperparameter ``by``."""
    if by is None:
        return {}
    return {"groups": [str(r.params.get(by)) for r in rows], "group_name": by,
            "order": [str(v) for v in getattr(spec.search[by], "values", ())]}


def plot_esd_grid(spectra: list[tuple[str, TrialSpectra]], path: Path) -> Path | None:
    """ESD grid: one row per (label, trial), one column per layer."""
    from htsweep.analysis.plots import plot_esd_loglog

    if not spectra:
        return None
    layer_names: list[str] = []
    for _, s in spectra:
        for name in s.eigs:
            if name not in layer_names:
                layer_names.append(name)
    nrow, ncol = len(spectra), max(1, len(layer_names))
    fig, axes = _figure((2.6 * ncol + 0.8, 2.2 * nrow + 0.4), nrow, ncol)
    for i, (label, s) in enumerate(spectra):
        for j, name in enumerate(layer_names):
            ax = axes[i][j]
            if name in s.eigs:
                layer = s.layers.get(name, {})
                plot_esd_loglog(s.eigs[name], layer, ax=ax, title=f"{name}  {layer.get(RowKey.PHASE, '')}")
            else:
                ax.axis("off")
            if j == 0:
                r = s.row
                gen = f"acc={r.test_acc:.2f}" if math.isfinite(r.test_acc) else f"R²={r.test_r2:.2f}"
                ax.set_ylabel(f"{label} #{r.number}\nα={r.alpha:.2f} {gen}", fontsize=7)
    fig.suptitle("Final ESDs (log–log) with MP bulk fit and power-law tail: best and worst trials", fontsize=9)
    return _save(fig, path)


def _phase_axis(ax: Any) -> dict[str, int]:
    """Phases as y ticks (then "undetermined" for anything else); name → tick position."""
    from htsweep.analysis.phases import PHASES
    from htsweep.analysis.plots import UNDETERMINED

    names = [*PHASES, UNDETERMINED]
    ax.set_yticks(range(len(names)))
    ax.set_yticklabels(names, fontsize=6)
    ax.set_ylim(-0.5, len(names) - 0.5)
    return {p: i for i, p in enumerate(names)}


def _param_values(rows: list[TrialRow], name: str) -> tuple[np.ndarray, list[str] | None]:
    vals = [r.params.get(name) for r in rows]
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in vals):
        return np.asarray(vals, dtype=float), None
    cats = sorted({str(v) for v in vals}, key=lambda s: (len(s), s))
    idx = {c: i for i, c in enumerate(cats)}
    return np.asarray([idx[str(v)] for v in vals], dtype=float), cats


def _ring_infeasible(ax: Any, x: np.ndarray, y: np.ndarray, rows: list[TrialRow]) -> None:
    bad = np.array([not r.feasible for r in rows])
    if bad.any():
        ax.scatter(x[bad], y[bad], s=110, facecolors="none", edgecolors="#d62728", lw=1.2, label="infeasible")


def plot_vs_params(spec: SweepSpec, rows: list[TrialRow], outdir: Path) -> list[Path]:
    """For each searched parameter: alpha (top) and phase (bottom) against it, coloured by group."""
    from htsweep.analysis.plots import phase_name, plot_scatter_groups

    done = [r for r in rows if r.complete and math.isfinite(r.alpha)]
    paths: list[Path] = []
    if not done:
        return paths
    for name, dom in spec.search.items():
        x, cats = _param_values(done, name)
        by = _colour_by(spec, exclude=name)
        fig, axes = _figure((5.4, 5.4), 2, 1, sharex=True)
        a1, a2 = axes[0][0], axes[1][0]
        alpha = np.array([r.alpha for r in done])
        plot_scatter_groups(x, alpha, ax=a1, ylabel=f"alpha ({spec.objective.aggregate})", **_groups(spec, done, by))
        _ring_infeasible(a1, x, alpha, done)
        a1.axhline(spec.objective.target_alpha, color="gray", ls="--", lw=1, label="target")
        a1.legend(fontsize=7, title=by, title_fontsize=7, frameon=False)
        order = _phase_axis(a2)
        ph = np.array([order[phase_name(r.phase)] for r in done], dtype=float)
        plot_scatter_groups(x, ph, ax=a2, ylabel="model phase", **_groups(spec, done, by))
        _ring_infeasible(a2, x, ph, done)
        if a2.get_legend() is not None:
            a2.get_legend().remove()
        if cats is not None:
            a2.set_xticks(range(len(cats)))
            a2.set_xticklabels(cats)
        elif getattr(dom, "type", "") == "loguniform" or getattr(dom, "log", False) or \
                (x.min() > 0 and x.max() / max(x.min(), 1e-300) > 50):
            a2.set_xscale("log")
        a2.set_xlabel(name)
        fig.suptitle(f"alpha and phase vs {name}" + (f", coloured by {by}" if by else ""), fontsize=9)
        safe = name.replace(".", "_").replace("/", "_")
        paths.append(_save(fig, outdir / f"alpha_phase_vs_{safe}.png"))
    return paths


def plot_alpha_vs_accuracy(spec: SweepSpec, rows: list[TrialRow], best: TrialRow | None, path: Path) -> Path | None:
    """Alpha against test accuracy (test loss); target alpha, constraint and best trial marked."""
    from htsweep.analysis.plots import plot_scatter_groups

    attr, label = _target(rows)
    done = [r for r in rows if r.complete and math.isfinite(r.alpha) and math.isfinite(getattr(r, attr))]
    if not done:
        return None
    from htsweep.sweeps.trial_data import categorical_params

    facets = categorical_params(spec) or [None]  # one panel per grouping hyperparameter
    x = np.array([getattr(r, attr) for r in done])
    y = np.array([r.alpha for r in done])
    fig, axes = _figure((5.4 * len(facets), 4.2), 1, len(facets), sharey=True)
    for ax, by in zip(axes[0], facets, strict=True):
        plot_scatter_groups(x, y, labels=[r.number for r in done], ax=ax, xlabel=label,
                            ylabel=f"alpha ({spec.objective.aggregate})",
                            title=f"alpha vs {label}" + (f" by {by}" if by else ""), **_groups(spec, done, by))
        _ring_infeasible(ax, x, y, done)
        ax.axhline(spec.objective.target_alpha, color="gray", ls="--", lw=1, label="target alpha")
        if spec.objective.min_test_accuracy is not None and attr == ReportKey.TEST_ACC:
            ax.axvline(spec.objective.min_test_accuracy, color="#d62728", ls=":", lw=1, label="min test acc")
        if best is not None and math.isfinite(getattr(best, attr)):
            ax.scatter([getattr(best, attr)], [best.alpha], marker="*", s=220, color="gold", edgecolor="k", zorder=5,
                       label=f"best #{best.number}")
        if spec.objective.multi_objective and attr == ReportKey.TEST_ACC:
            front = pareto_front(rows)
            ax.plot([r.test_acc for r in front], [r.alpha for r in front], color="#555", lw=0.8, label="Pareto front")
        ax.legend(fontsize=7, frameon=False, title=by, title_fontsize=7)
    return _save(fig, path)


def plot_best_metric(spec: SweepSpec, rows: list[TrialRow], table: Any, path: Path) -> Path | None:
    """The model-level metric with the largest |Spearman ρ| against the target, one point per trial."""
    from htsweep.analysis.generalization import MODEL_METRICS
    from htsweep.analysis.plots import plot_scatter_groups

    best = table.best() if table is not None else None
    if best is None:
        return None
    by = _colour_by(spec)
    number = {r.number: r for r in rows}
    _, label = _target(rows)
    lo, hi = best.spearman_ci
    fig, axes = _figure((5.4, 4.2))
    plot_scatter_groups(table.metrics[best.metric], table.target_values, labels=table.trials, ax=axes[0][0],
                        xlabel=f"{best.metric}: {MODEL_METRICS[best.metric][2]}", ylabel=label,
                        title=f"best-correlated metric: Spearman ρ = {best.spearman:+.2f} [{lo:+.2f}, {hi:+.2f}], "
                        f"τ = {best.kendall:+.2f}, n = {best.n}", **_groups(spec, [number[n] for n in table.trials], by))
    return _save(fig, path)


def _history_rows(meta: SweepMeta, picks: list[tuple[str, TrialRow]],
                  layers: dict[int, list[dict[str, Any]]]) -> list[tuple[str, TrialRow, Any]]:
    from htsweep.sweeps.trial_data import trial_history

    out = []
    for label, row in picks:
        order = [str(r.get(RowKey.NAME)) for r in layers.get(row.number, [])]
        hist = trial_history(meta, row, layer_order=order)
        if hist is not None and hist.steps.size:
            out.append((label, row, hist))
    return out


def plot_trajectories(spec: SweepSpec, histories: list[tuple[str, TrialRow, Any]], path: Path) -> Path | None:
    """α trajectories (left) and phase timeline (right) of each given trial, one row per trial."""
    from htsweep.analysis.plots import plot_alpha_trajectories, plot_phase_timeline

    if not histories:
        return None
    n_steps = max(h.steps.size for _, _, h in histories)
    n_layers = max(len(h.layers) for _, _, h in histories)
    fig, axes = _figure((max(11.0, 5.5 + 0.5 * n_steps), (0.4 * n_layers + 2.4) * len(histories)), len(histories), 2,
                        gridspec_kw={"width_ratios": [1, 1.25]})
    for i, (label, row, h) in enumerate(histories):
        who = f"{label} trial #{row.number}"
        plot_alpha_trajectories(h.steps, h.alpha, layers=h.layers, target=spec.objective.target_alpha, ax=axes[i][0],
                                title=f"{who}: α per layer\n{format_params(row.params)}")
        plot_phase_timeline(h.steps, h.layers, h.phase_code, ax=axes[i][1], title=f"{who}: phase per layer and step")
    return _save(fig, path)


def _evolution_layer(layers: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The layer to follow over training: among those with a power-law fit (else all), the one
    with the largest aspect ratio Q (its MP bulk stays clear of zero on log axes), then size."""
    def key(r: dict[str, Any]) -> tuple[float, float]:
        return float(r.get(RowKey.Q) or 0), float(r.get(RowKey.M) or 0) * float(r.get(RowKey.N) or 0)

    fitted = [r for r in layers if math.isfinite(float(r.get(RowKey.ALPHA, math.nan) or math.nan))]
    pool = fitted or layers
    return max(pool, key=key) if pool else None


def plot_evolution(meta: SweepMeta, picks: list[tuple[str, TrialRow]], layers: dict[int, list[dict[str, Any]]],
                   path: Path) -> Path | None:
    """ESD evolution of one layer, one panel per given trial, λ+ of each step marked."""
    from htsweep.analysis.marchenko_pastur import fit_marchenko_pastur
    from htsweep.analysis.plots import plot_esd_evolution
    from htsweep.sweeps.trial_data import esd_series

    panels = []
    for label, row in picks:
        layer = _evolution_layer(layers.get(row.number, []))
        if layer is None:
            continue
        steps, spectra = esd_series(meta, row, str(layer[RowKey.NAME]))
        if not steps:
            continue
        q = float(layer.get(RowKey.Q) or 1.0)
        lam_plus = [fit_marchenko_pastur(e, q).lambda_plus if e.size >= 4 else math.nan for e in spectra]
        panels.append((label, row, layer, steps, spectra, lam_plus))
    if not panels:
        return None
    fig, axes = _figure((5.6 * len(panels), 4.2), 1, len(panels))
    for j, (label, row, layer, steps, spectra, lam_plus) in enumerate(panels):
        plot_esd_evolution(spectra, steps, lambda_plus=lam_plus, ax=axes[0][j],
                           title=f"ESD of {layer[RowKey.NAME]} during training — {label} #{row.number}")
    return _save(fig, path)


def plot_history(rows: list[TrialRow], spec: SweepSpec, path: Path) -> Path | None:
    """Optuna optimization history: objective per trial and the best value so far."""
    done = [r for r in rows if r.complete and r.values]
    if not done:
        return None
    fig, axes = _figure((5.6, 3.6))
    ax = axes[0][0]
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
    return _save(fig, path)


def plot_importances(meta: SweepMeta, spec: SweepSpec, path: Path) -> tuple[Path | None, str]:
    """Optuna's parameter importances (its default evaluator) for the (first) objective; (path, note)."""
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
    fig, axes = _figure((5, 0.5 * len(names) + 1.2))
    ax = axes[0][0]
    ax.barh(names, [imp[n] for n in names], color="#1f77b4")
    ax.set_xlabel("importance for the objective")
    ax.set_title("Optuna parameter importances", fontsize=9)
    return _save(fig, path), ""


def _pick_extremes(spec: SweepSpec, rows: list[TrialRow], k: int) -> list[tuple[str, TrialRow]]:
    done = [r for r in rows if r.complete and r.mlflow_run_id and r.values]
    key = (lambda r: r.alpha_error if math.isfinite(r.alpha_error) else math.inf) if spec.objective.multi_objective \
        else (lambda r: r.values[0])
    ranked = sorted(done, key=key)
    k = min(k, max(1, len(ranked) // 2)) if ranked else 0
    best, worst = ranked[:k], [r for r in ranked[::-1][:k] if r not in ranked[:k]]
    return [("best", r) for r in best] + [("worst", r) for r in worst]


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "-" if not math.isfinite(v) else f"{v:.4g}"
    return html.escape("-" if v is None else str(v))


def _table_html(spec: SweepSpec, rows: list[TrialRow], best: TrialRow | None) -> str:
    regression = is_regression(rows)
    gen = ["test loss", "R²"] if regression else ["test acc"]
    warm = any(r.warm_from for r in rows)
    head = "".join(f"<th>{html.escape(n)}</th>" for n in
                   ["#", *spec.search, "alpha", "|α−target|", "phase", *gen, "objective", "state",
                    *(["warm start from"] if warm else [])])
    body = []
    for r in rows:
        cls = ' class="best"' if best is not None and r.number == best.number else (
            ' class="infeasible"' if r.complete and not r.feasible else "")
        cells = [str(r.number), *[_fmt(r.params.get(n)) for n in spec.search], _fmt(r.alpha), _fmt(r.alpha_error),
                 html.escape(r.phase or "-"), *([_fmt(r.test_loss), _fmt(r.test_r2)] if regression else [_fmt(r.test_acc)]),
                 " / ".join(_fmt(v) for v in r.values) or "-", r.state,
                 *([html.escape(r.warm_from or str(r.attrs.get("skipped", "")))] if warm else [])]
        body.append(f"<tr{cls}>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _warm_html(meta: SweepMeta, rows: list[TrialRow]) -> str:
    """Which trials came from which earlier sweep ('' without a warm start)."""
    by_source: dict[str, list[int]] = {}
    for r in rows:
        if r.warm_from:
            by_source.setdefault(str(r.attrs.get("warm_start_from")), []).append(r.number)
    if not by_source:
        return ""
    skipped = sum(r.state == "SKIPPED" for r in rows)
    items = "".join(f"<li><code>{html.escape(src)}</code>: trials {', '.join(f'#{n}' for n in nums)}</li>"
                    for src, nums in by_source.items())
    return (f"<p>Warm start: {sum(map(len, by_source.values()))} finished trial(s) of earlier sweeps began the "
            f"search, their objective recomputed for this target from what they logged; none was trained again"
            f"{f' ({skipped} proposal(s) they had measured were skipped)' if skipped else ''}:</p><ul>{items}</ul>")


def _rho_cell(c: Any) -> str:
    if not math.isfinite(c.spearman):
        return f"<td class='few'>– <small>({html.escape(c.message)})</small></td>"
    lo, hi = c.spearman_ci
    few = "" if c.enough else " class='few'"
    return f"<td{few}>{c.spearman:+.2f} <small>[{lo:+.2f}, {hi:+.2f}]</small></td>"


def _correlation_html(table: Any) -> str:
    """Overall ρ and τ with CIs and p-values, then ρ within each categorical value, per metric."""
    from htsweep.analysis.generalization import MIN_MODELS, MODEL_METRICS

    if table is None or not table.correlations:
        return "<p><i>No finished trial with spectra in MLflow yet.</i></p>"
    best = table.best()
    groups = list(dict.fromkeys(c.group for c in table.correlations if c.group))
    sizes = {g: next(c.n for c in table.correlations if c.group == g) for g in groups}
    by = {(c.group, c.metric): c for c in table.correlations}
    head = ["metric", f"Spearman ρ [95% CI] (n={len(table.trials)})", "p", "Kendall τ [95% CI]", "p",
            *[f"ρ within {g} (n={sizes[g]})" for g in groups]]
    body = []
    for c in table.overall():
        name = MODEL_METRICS.get(c.metric, (None, None, ""))[2]
        cls = " class='best'" if best is not None and c.metric == best.metric else ""
        lo, hi = c.kendall_ci
        tau = (f"<td>{c.kendall:+.2f} <small>[{lo:+.2f}, {hi:+.2f}]</small></td>" if math.isfinite(c.kendall)
               else "<td>–</td>")
        cells = [f"<td><b>{html.escape(c.metric)}</b><br><small>{html.escape(name)}</small></td>", _rho_cell(c),
                 f"<td>{_fmt(c.spearman_p)}</td>", tau, f"<td>{_fmt(c.kendall_p)}</td>",
                 *[_rho_cell(by[g, c.metric]) for g in groups]]
        body.append(f"<tr{cls}>{''.join(cells)}</tr>")
    what = "test accuracy" if table.target == ReportKey.TEST_ACC else "test loss"
    return (f"<table class='corr'><tr>{''.join(f'<th>{html.escape(h)}</th>' for h in head)}</tr>{''.join(body)}</table>"
            f"<p class='note'>Rank correlation of each model-level spectral metric with {what} across the finished "
            f"trials; 95% percentile-bootstrap intervals (2000 resamples of the trials). Highlighted: the "
            f"largest |ρ|. Grey: fewer than {MIN_MODELS} trials — too few for a meaningful estimate. The HT-SR "
            f"papers expect α to fall as accuracy rises (ρ &lt; 0 against accuracy); alpha_weighted and "
            f"log_alpha_norm multiply by log10 λmax, which is negative when the weights are small, so "
            f"their sign can flip.</p>")


def _publish(meta: SweepMeta, spec: SweepSpec, rows: list[TrialRow], best: TrialRow | None, table: Any,
             out: Path) -> str:
    """Put the tables, a description and the report on the sweep's MLflow parent run; '' or why not."""
    if not meta.parent_run_id:
        return "the sweep has no MLflow parent run"
    import pandas as pd

    from htsweep.services.tracking import TrackingConfig, log_sweep_summary

    trials = pd.DataFrame([{
        "trial": r.number, **{k: r.params.get(k) for k in spec.search}, "alpha": r.alpha, "alpha_error": r.alpha_error,
        "phase": r.phase, "test_acc": r.test_acc, "test_loss": r.test_loss, "test_r2": r.test_r2,
        "objective": r.values[0] if r.values else math.nan, "state": r.state, "mlflow_run_id": r.mlflow_run_id or "",
        "warm_start_from": r.warm_from or "",
    } for r in rows])
    tables = {"trials": trials}
    n_done = sum(r.complete and not r.warm_from for r in rows)
    lines = [f"**htsweep sweep `{meta.name}`**: {n_done}/{spec.num_samples} trials complete."]
    if best is not None:
        lines.append(f"Best trial #{best.number} ({format_params(best.params)}): α {best.alpha:.3g}, "
                     f"phase {best.phase or '-'}, test acc {best.test_acc:.3g}.")
    if table is not None and table.correlations:
        tables["metric_vs_generalization"] = table.to_frame()
        top = table.best()
        if top is not None:
            lo, hi = top.spearman_ci
            lines.append(f"Best-correlated spectral metric with {top.target}: `{top.metric}`, Spearman ρ "
                         f"{top.spearman:+.2f} [{lo:+.2f}, {hi:+.2f}] over {top.n} trials.")
    lines.append("Tables: `trials.json`, `metric_vs_generalization.json`; figures under `report/`.")
    try:
        cfg = TrackingConfig.for_workdir(meta.workdir, experiment=meta.experiment, tracking_uri=meta.tracking_uri)
        log_sweep_summary(cfg, meta.parent_run_id, tables=tables, description="  \n".join(lines), artifacts=out)
    except Exception as exc:  # noqa: BLE001 - the files on disk are the report
        log.warning("report not published to MLflow: %s", exc)
        return str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
    return ""


def make_report(workdir: str | Path, *, outdir: str | Path | None = None, k: int = 3, publish: bool = True) -> Path:
    """Write ``<workdir>/report/index.html`` and its PNG figures.

    Parameters
    ----------
    workdir : str or Path
        The sweep directory.
    outdir : str or Path, optional
        Where to write; default ``<workdir>/report``.
    k : int, default=3
        Number of best and of worst trials in the ESD grid.
    publish : bool, default=True
        Also log the trials and correlation tables, a description and the report's files to the
        sweep's MLflow parent run (a failure there is logged, not raised).

    Returns
    -------
    Path
        The HTML file.
    """
    from htsweep.sweeps.trial_data import final_layers, generalization

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    meta, spec, rows = load_trials(workdir)
    out = Path(outdir) if outdir is not None else Path(workdir) / "report"
    out.mkdir(parents=True, exist_ok=True)
    best = best_trial(rows)
    figures: list[tuple[str, Path | None, str]] = []

    extremes = _pick_extremes(spec, rows, k)
    with tempfile.TemporaryDirectory(prefix="htsweep-report-") as tmp:
        spectra = []
        for label, row in extremes:
            s = fetch_spectra(meta, row, Path(tmp))
            if s is not None:
                spectra.append((label, s))
    layers = final_layers(meta, [r for r in rows if r.complete])
    try:
        table = generalization(meta, spec, rows, layers=layers)
    except Exception as exc:  # noqa: BLE001 - the rest of the report stands on its own
        log.warning("metric/generalization table failed: %s", exc)
        table = None
    figures.append(("Best-correlated spectral metric vs generalization",
                    plot_best_metric(spec, rows, table, out / "best_metric_vs_target.png"),
                    "needs at least 3 finished trials with spectra"))
    first_last = [p for p in extremes if p[0] == "best"][:1] + [p for p in extremes if p[0] == "worst"][:1]
    figures.append(("α trajectories and phase timeline (layers × steps): best and worst trial",
                    plot_trajectories(spec, _history_rows(meta, first_last, layers), out / "trajectories.png"),
                    "no per-layer metric history in MLflow"))
    figures.append(("ESD evolution during training (λ+ dotted)",
                    plot_evolution(meta, first_last, layers, out / "esd_evolution.png"), "no ESD artifacts per step"))
    figures.append(("ESD of the best and worst trials", plot_esd_grid(spectra, out / "esd_grid.png"),
                    "" if spectra else "no ESD artifacts found in MLflow for completed trials"))
    for p in plot_vs_params(spec, rows, out):
        figures.append((f"alpha and phase vs {p.stem.removeprefix('alpha_phase_vs_')}", p, ""))
    figures.append(("alpha vs generalization", plot_alpha_vs_accuracy(spec, rows, best, out / "alpha_vs_accuracy.png"),
                    "no completed trials yet"))
    figures.append(("Optuna optimization history", plot_history(rows, spec, out / "optimization_history.png"),
                    "no completed trials yet"))
    imp_path, note = plot_importances(meta, spec, out / "param_importances.png")
    figures.append(("Optuna parameter importances", imp_path, note))

    n_done = sum(r.complete and not r.warm_from for r in rows)
    if best is not None:
        gen = (f"test loss {best.test_loss:.3g}, R² {best.test_r2:.3f}" if is_regression(rows)
               else f"test accuracy {best.test_acc:.3f}")
        best_html = (f"<p><b>Best trial #{best.number}</b> (alpha closest to {spec.objective.target_alpha:g} among "
                     f"feasible trials): {html.escape(format_params(best.params))} — alpha {best.alpha:.3f}, "
                     f"phase <b>{html.escape(best.phase or '-')}</b>, {gen}; "
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
        "tr.best{background:#fff3b0}tr.infeasible td{color:#b22}td.few{color:#999}img{max-width:100%;"
        "border:1px solid #eee}figure{margin:1.5em 0}figcaption{font-weight:bold;margin-bottom:.4em}"
        ".note{font-size:12px;color:#555}</style></head><body>",
        f"<h1>Sweep <code>{html.escape(meta.name)}</code></h1>",
        f"<p>{html.escape(spec.description)}</p>",
        f"<p>Training <b>{html.escape(spec.subject)}</b>; "
        f"{n_done}/{spec.num_samples} trials complete (status: {html.escape(meta.status)}); target alpha "
        f"{spec.objective.target_alpha:g} ({spec.objective.aggregate} over layers){constraint}{mo}; "
        f"sampler {spec.sampler_type}.</p>",
        _warm_html(meta, rows),
        best_html,
        "<h2>Which spectral metric tracks generalization?</h2>", _correlation_html(table),
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
    if publish:
        _publish(meta, spec, rows, best, table, out)
    return index
