"""What the trials of a sweep left in MLflow, read back for ``htsweep report`` and ``htsweep best``.

* :func:`final_layers` — each trial's last per-layer metrics rows (``spectral_summary.json``);
* :func:`generalization` — which model-level spectral metric ranks the trials by test accuracy
  (test loss for regression): :func:`analysis.generalization.rank_correlations` over the sweep,
  overall and within each value of the categorical hyperparameters;
* :func:`trial_history` — per-layer α and phase at every monitored step (the logged metric
  histories ``alpha/<layer>`` and ``phase_code/<layer>``);
* :func:`esd_series` — one layer's eigenvalues at the monitored steps (``esd/step_<k>.npz``).
"""

from __future__ import annotations

import json
import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from htsweep.analysis.generalization import (
    MODEL_METRICS,
    RankCorrelation,
    model_aggregates,
    rank_correlations,
)
from htsweep.analysis.metric_names import ReportKey, RowKey, per_layer_key
from htsweep.sweeps.spec import Choice, Grid, SweepSpec
from htsweep.sweeps.status import TrialRow, is_regression
from htsweep.sweeps.warm_start import FROM
from htsweep.sweeps.workdir import SweepMeta

__all__ = ["GeneralizationTable", "TrialHistory", "categorical_params", "esd_series", "final_layers",
           "generalization", "grouping_params", "run_client", "trial_history"]


def _client(meta: SweepMeta) -> Any:
    import os

    import mlflow

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    return mlflow.MlflowClient(meta.tracking_uri)


def run_client(meta: SweepMeta, row: TrialRow, cache: dict[str, Any] | None = None) -> Any:
    """The MLflow client of the store that holds ``row``'s run: its sweep's, or for a warm-started
    trial the earlier sweep's (``sweeps.warm_start``); ``cache`` reuses clients across rows."""
    source = row.attrs.get(FROM)
    key = str(source or meta.workdir)
    if cache is not None and key in cache:
        return cache[key]
    client = _client(SweepMeta.load(source) if source else meta)
    if cache is not None:
        cache[key] = client
    return client


#: A grid or choice with more values than this is a scan (a 16-point lr grid), not a grouping.
MAX_GROUP_LEVELS = 8


def categorical_params(spec: SweepSpec) -> list[str]:
    """Searched hyperparameters to group trials by: a ``choice`` / ``grid`` of non-numeric values
    (e.g. optimizer), or of at most :data:`MAX_GROUP_LEVELS` numeric ones (e.g. batch size)."""
    def groups(dom: Choice | Grid) -> bool:
        numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in dom.values)
        return not numeric or len(dom.values) <= MAX_GROUP_LEVELS

    return [name for name, dom in spec.search.items() if isinstance(dom, Choice | Grid) and groups(dom)]


#: Groups with fewer trials than this get no within-group correlation (none exists below 3).
MIN_GROUP_TRIALS = 3


def grouping_params(spec: SweepSpec, rows: list[TrialRow]) -> list[str]:
    """The :func:`categorical_params` worth correlating within: with several values among ``rows``
    and another searched hyperparameter that varies. Grouping by the only swept hyperparameter
    leaves one trial per group and nothing varying inside it."""
    def values(name: str) -> set[str]:
        return {str(r.params.get(name)) for r in rows}

    varying = [name for name in spec.search if len(values(name)) > 1]
    return [name for name in categorical_params(spec) if name in varying and len(varying) > 1]


def final_layers(meta: SweepMeta, rows: list[TrialRow]) -> dict[int, list[dict[str, Any]]]:
    """The last metrics row of every layer of each trial, from its ``spectral_summary.json``.

    Returns
    -------
    dict of int to list of dict
        Trial number → layer rows; trials without a run or a summary are left out.
    """
    clients: dict[str, Any] = {}
    out: dict[int, list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="htsweep-summary-") as tmp:
        for r in rows:
            if not r.mlflow_run_id:
                continue
            try:
                path = run_client(meta, r, clients).download_artifacts(r.mlflow_run_id, "spectral_summary.json", f"{tmp}/{r.number}")
                out[r.number] = list(json.loads(Path(path).read_text()).get("layers", []))
            except Exception:  # noqa: BLE001 - a trial that never analyzed a spectrum has none
                continue
    return out


@dataclass(frozen=True)
class GeneralizationTable:
    """Rank correlations of the model-level spectral metrics with generalization across a sweep.

    Attributes
    ----------
    target : str
        ``"test_acc"`` (higher is better) or, for regression sweeps, ``"test_loss"``.
    trials : list of int
        Trial numbers used (complete, with a spectral summary and a finite target).
    metrics : dict of str to ndarray of shape (n_trials,)
        Model-level metric of each trial (keys of :data:`analysis.generalization.MODEL_METRICS`).
    target_values : ndarray of shape (n_trials,)
    groups : dict of str to list of str
        Categorical hyperparameter → its value in each trial.
    correlations : list of RankCorrelation
        Overall first, then within each group value.
    """

    target: str
    trials: list[int]
    metrics: dict[str, np.ndarray]
    target_values: np.ndarray
    groups: dict[str, list[str]] = field(default_factory=dict)
    correlations: list[RankCorrelation] = field(default_factory=list)

    def overall(self) -> list[RankCorrelation]:
        """The correlations over all trials, one per metric."""
        return [c for c in self.correlations if not c.group]

    def best(self) -> RankCorrelation | None:
        """The overall correlation with the largest ``|Spearman ρ|`` (None if none is finite)."""
        ok = [c for c in self.overall() if math.isfinite(c.spearman)]
        return max(ok, key=lambda c: abs(c.spearman)) if ok else None

    def to_frame(self) -> Any:
        """A pandas DataFrame, one row per correlation (for MLflow tables and HTML)."""
        import pandas as pd

        return pd.DataFrame([{
            "metric": c.metric, "group": c.group or "all", "target": c.target, "n": c.n,
            "spearman": c.spearman, "spearman_lo": c.spearman_ci[0], "spearman_hi": c.spearman_ci[1],
            "spearman_p": c.spearman_p, "kendall": c.kendall, "kendall_lo": c.kendall_ci[0],
            "kendall_hi": c.kendall_ci[1], "kendall_p": c.kendall_p, "enough": c.enough, "note": c.message,
        } for c in self.correlations])


def generalization(meta: SweepMeta, spec: SweepSpec, rows: list[TrialRow], *, n_boot: int = 2000,
                   layers: dict[int, list[dict[str, Any]]] | None = None) -> GeneralizationTable:
    """Correlate each model-level spectral metric with test accuracy (test loss) over the trials.

    Parameters
    ----------
    meta, spec, rows
        From :func:`sweeps.status.load_trials`.
    n_boot : int, default=2000
        Bootstrap resamples per confidence interval.
    layers : dict, optional
        :func:`final_layers` output, if already fetched.

    Returns
    -------
    GeneralizationTable
    """
    # a report key and, by the same name, the TrialRow attribute holding its final value
    target = ReportKey.TEST_LOSS if is_regression(rows) else ReportKey.TEST_ACC
    layers = final_layers(meta, [r for r in rows if r.complete]) if layers is None else layers
    # trials an early-stopping scheduler cut short describe models that never finished training
    used = [r for r in rows if r.complete and r.fully_trained and r.number in layers
            and math.isfinite(getattr(r, target)) and layers[r.number]]
    aggs = [model_aggregates(layers[r.number]) for r in used]
    metrics = {name: np.array([a[name] for a in aggs], dtype=np.float64) for name in MODEL_METRICS}
    # metrics no trial computed (the FARMS ones unless the sweep monitored them) are left out
    metrics = {k: v for k, v in metrics.items() if np.isfinite(v).any()}
    y = np.array([getattr(r, target) for r in used], dtype=np.float64)
    groups = {name: [str(r.params.get(name)) for r in used] for name in grouping_params(spec, used)}
    corr = (rank_correlations(metrics, y, target_name=target, groups=groups, n_boot=n_boot,
                              min_group_size=MIN_GROUP_TRIALS) if used else [])
    return GeneralizationTable(target=target, trials=[r.number for r in used], metrics=metrics, target_values=y,
                               groups=groups, correlations=corr)


@dataclass(frozen=True)
class TrialHistory:
    """Per-layer α and phase of one trial at every monitored step.

    Attributes
    ----------
    steps : ndarray of shape (n_steps,)
    layers : list of str
    alpha : ndarray of shape (n_layers, n_steps)
        NaN where a layer had no fit at a step.
    phase_code : ndarray of shape (n_layers, n_steps)
        ``analysis.phases.PHASE_CODES`` values; NaN where unknown.
    """

    steps: np.ndarray
    layers: list[str]
    alpha: np.ndarray
    phase_code: np.ndarray


def trial_history(meta: SweepMeta, row: TrialRow, *, layer_order: list[str] | None = None) -> TrialHistory | None:
    """Read ``alpha/<layer>`` and ``phase_code/<layer>`` histories of a trial's run (None if none).

    ``layer_order`` (e.g. the layer names of :func:`final_layers`) orders the rows; layers it
    does not name follow in the order MLflow lists them.
    """
    if not row.mlflow_run_id:
        return None
    client = run_client(meta, row)
    try:
        keys = list(client.get_run(row.mlflow_run_id).data.metrics)
    except Exception:  # noqa: BLE001 - a missing run must not break the report
        return None
    kinds = (RowKey.ALPHA, ReportKey.PHASE_CODE)  # the per-layer series a history is made of
    prefixes = tuple(per_layer_key(kind, "") for kind in kinds)
    logged = dict.fromkeys(k.split("/", 1)[1] for k in keys if k.startswith(prefixes))
    layers = [n for n in (layer_order or []) if n in logged] + [n for n in logged if n not in (layer_order or [])]
    if not layers:
        return None
    series: dict[tuple[str, str], dict[int, float]] = {}
    for name in layers:
        for kind in kinds:
            key = per_layer_key(kind, name)
            hist = client.get_metric_history(row.mlflow_run_id, key) if key in keys else []
            series[kind, name] = {int(m.step): float(m.value) for m in hist}
    steps = np.array(sorted({s for d in series.values() for s in d}), dtype=np.int64)

    def grid(kind: str) -> np.ndarray:
        return np.array([[series[kind, n].get(int(s), math.nan) for s in steps] for n in layers], dtype=np.float64)

    return TrialHistory(steps=steps, layers=layers, alpha=grid(RowKey.ALPHA), phase_code=grid(ReportKey.PHASE_CODE))


def esd_series(meta: SweepMeta, row: TrialRow, layer: str, *, max_steps: int = 6) -> tuple[list[int], list[np.ndarray]]:
    """One layer's eigenvalues at up to ``max_steps`` monitored steps (first and last included).

    Returns
    -------
    steps : list of int
    spectra : list of ndarray of shape (m,)
        Empty lists when the trial has no ``esd/step_<k>.npz`` with that layer.
    """
    if not row.mlflow_run_id:
        return [], []
    client = run_client(meta, row)
    try:
        files = [f.path for f in client.list_artifacts(row.mlflow_run_id, "esd") if f.path.endswith(".npz")]
    except Exception:  # noqa: BLE001
        return [], []
    by_step = {}
    for p in files:
        tail = Path(p).stem.rsplit("_", 1)[-1]
        if tail.isdigit():
            by_step[int(tail)] = p
    steps = sorted(by_step)
    if len(steps) > max_steps:
        steps = [steps[int(round(i))] for i in np.linspace(0, len(steps) - 1, max_steps)]
    key = layer.replace("/", "|")
    out_steps, spectra = [], []
    with tempfile.TemporaryDirectory(prefix="htsweep-esd-") as tmp:
        for s in steps:
            path = client.download_artifacts(row.mlflow_run_id, by_step[s], tmp)
            with np.load(path) as data:
                if key in data.files:
                    out_steps.append(s)
                    spectra.append(np.asarray(data[key], dtype=np.float64))
    return out_steps, spectra
