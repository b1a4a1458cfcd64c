"""Trial records for the reproductions: one run's metric history and ESDs, from this process or a sweep.

A :class:`TrialRecord` holds what MLflow holds for a trial: the searched hyperparameters, every
metric with the step it was measured at (train/test metrics at evaluation steps; spectral
aggregates and per-layer ``alpha/<layer>``, ``mp_soft_rank/<layer>``, ... at monitoring steps) and
every layer's eigenvalues at every monitoring step (the ``esd/step_<k>.npz`` artifacts).

* :func:`run_grid` trains the points of a grid here, single-threaded, without Ray (the reduced
  trend tests);
* :func:`records_from_sweep` reads a finished sweep back from its MLflow store (the full-size
  runs, the figures).

``benchmarks/repro_measures.py`` turns records into the numbers each reproduction reports, so the
same measures check a reduced in-process run and a full sweep.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from htsweep.analysis.aggregate import is_spectral_key
from htsweep.trainers.callbacks import Callback
from htsweep.trainers.monitor import SpectralMonitor

__all__ = ["TrialRecord", "grid_points", "records_from_sweep", "run_grid", "run_trial", "spec_setup"]

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "sweeps" / "examples"


@dataclass(frozen=True)
class TrialRecord:
    """The metrics and spectra of one training run.

    Attributes
    ----------
    params : dict
        The trial's searched hyperparameters (``lr``, ``optimizer``, ``batch_size`` ...).
    history : pandas.DataFrame
        Index: step (int, ascending); one column per metric key as logged to MLflow; NaN where a
        metric was not measured at that step.
    esds : dict of int to dict of str to ndarray
        Monitoring step → layer name → ascending eigenvalues of ``WᵀW / N``, shape ``(M,)``.
    layers : dict of str to dict
        Layer name → its metrics row at the last monitoring step (``n``, ``q``, ``sigma2``,
        ``lambda_plus``, ``alpha``, ``xmin``, ``phase`` ...; no eigenvalues).
    """

    params: dict[str, Any]
    history: pd.DataFrame
    esds: dict[int, dict[str, np.ndarray]] = field(default_factory=dict)
    layers: dict[str, dict[str, Any]] = field(default_factory=dict)

    def series(self, key: str) -> pd.Series:
        """The values of ``key`` at the steps where it was measured (``KeyError`` lists the keys)."""
        if key not in self.history.columns:
            raise KeyError(f"metric {key!r} was not recorded; recorded: {', '.join(sorted(self.history.columns))}")
        return self.history[key].dropna()

    def at(self, key: str, step: int) -> float:
        """``key`` at ``step`` (NaN if it was not measured there)."""
        s = self.series(key)
        return float(s.loc[step]) if step in s.index else math.nan

    def first(self, key: str) -> float:
        """``key`` at the first step it was measured."""
        s = self.series(key)
        return float(s.iloc[0]) if len(s) else math.nan

    def last(self, key: str) -> float:
        """``key`` at the last step it was measured."""
        s = self.series(key)
        return float(s.iloc[-1]) if len(s) else math.nan

    @property
    def steps(self) -> list[int]:
        """Monitoring steps with ESDs, ascending."""
        return sorted(self.esds)

    def esd(self, layer: str, step: int | None = None) -> np.ndarray:
        """Eigenvalues ``(M,)`` of ``layer`` at ``step`` (default: the last monitoring step)."""
        step = self.steps[-1] if step is None else int(step)
        if step not in self.esds:
            raise KeyError(f"no ESD at step {step}; monitoring steps: {self.steps}")
        return self.esds[step][layer]

    def singular_values(self, layer: str, step: int | None = None) -> np.ndarray:
        """Singular values of ``layer``'s weight matrix, descending: ``ν = sqrt(N λ)``."""
        lam = np.clip(self.esd(layer, step), 0.0, None)
        return np.sqrt(int(self.layers[layer]["n"]) * lam)[::-1]


class _Recorder(Callback):
    """Keeps what :class:`sweeps.trial_logger.MlflowTrialLogger` would log: numbers per step, ESDs."""

    def __init__(self) -> None:
        self.rows: dict[int, dict[str, float]] = {}
        self.esds: dict[int, dict[str, np.ndarray]] = {}
        self.layers: dict[str, dict[str, Any]] = {}

    def on_report(self, trainer: Any, model: Any, step: int, metrics: dict[str, Any]) -> None:
        snapshot = trainer.spectral
        fresh = snapshot is not None and snapshot.step == step
        # like the MLflow logger: spectral values carried over from an older analysis are not re-dated
        row = {k: float(v) for k, v in metrics.items()
               if isinstance(v, int | float) and not isinstance(v, bool) and k != "step"
               and (fresh or not is_spectral_key(k))}
        self.rows.setdefault(int(step), {}).update(row)
        if fresh:
            self.esds[int(step)] = snapshot.eigs()
            self.layers = {str(r["name"]): {k: v for k, v in r.items() if k != "eigs"} for r in snapshot.rows}


def _history(rows: Mapping[int, Mapping[str, float]]) -> pd.DataFrame:
    frame = pd.DataFrame.from_dict({int(k): dict(v) for k, v in rows.items()}, orient="index")
    frame.index.name = "step"
    return frame.sort_index()


def run_trial(config: Mapping[str, Any], params: Mapping[str, Any] | None = None, *,
              data: Any = None) -> TrialRecord:
    """Train one ``TrainConfig`` here (spectral monitor in-process) and record it.

    Parameters
    ----------
    config : mapping
        ``TrainConfig`` fields (``model``, ``dataset``, ``steps`` ...).
    params : mapping, optional
        The grid point to store as the record's ``params`` (default: none).
    data : DataBundle, optional
        An already loaded dataset to share between runs.
    """
    from htsweep.trainers.train import TrainConfig, Trainer

    recorder = _Recorder()
    Trainer(TrainConfig.from_dict(config), [SpectralMonitor(), recorder], data=data).fit()
    return TrialRecord(dict(params or {}), _history(recorder.rows), recorder.esds, recorder.layers)


def run_grid(base: Mapping[str, Any], points: Iterable[Mapping[str, Any]], *, data: Any = None) -> list[TrialRecord]:
    """:func:`run_trial` for each grid point (``key`` or ``model_kwargs.<key>`` → value) over ``base``,
    merged as a sweep trial merges its hyperparameters (``sweeps.trainable.merge_config``)."""
    from htsweep.sweeps.trainable import merge_config

    return [run_trial(merge_config(dict(base), dict(p)), p, data=data) for p in points]


def grid_points(values: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """The product of ``{name: values}`` in the order Optuna's grid lists it (first key slowest)."""
    names = list(values)
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*(values[n] for n in names))]


def spec_setup(name: str, *, train: Mapping[str, Any] | None = None,
               grid: Mapping[str, Sequence[Any]] | None = None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A shipped spec as ``(base TrainConfig dict, grid points)``, optionally reduced.

    Parameters
    ----------
    name : str
        File stem under ``sweeps/examples`` (``"lr_spike_one_step"``).
    train : mapping, optional
        Overrides of the fixed training settings; ``model_kwargs`` / ``data_kwargs`` are merged.
    grid : mapping, optional
        Replacement values for some grid domains (the others keep the spec's values).

    Raises
    ------
    ValueError
        A grid override names a parameter the spec does not search on a grid.
    """
    from htsweep.sweeps.spec import Grid, SweepSpec
    from htsweep.sweeps.trainable import train_config_dict

    spec = SweepSpec.from_yaml(EXAMPLES / f"{name}.yaml")
    base = train_config_dict(spec)  # what every trial of the sweep starts from
    for key, value in (train or {}).items():
        base[key] = {**base.get(key, {}), **value} if isinstance(value, Mapping) else value
    values = {k: list(d.values) for k, d in spec.search.items() if isinstance(d, Grid)}
    unknown = sorted(set(grid or {}) - set(values))
    if unknown:
        raise ValueError(f"spec {name!r} has no grid domain {', '.join(unknown)}; grid: {', '.join(values)}")
    values.update({k: list(v) for k, v in (grid or {}).items()})
    return base, grid_points(values)


# --------------------------------------------------------------------------- from a sweep (MLflow)
def records_from_sweep(workdir: str | os.PathLike, *, prefixes: Sequence[str] | None = None,
                       esd_steps: str | Sequence[int] = "all") -> list[TrialRecord]:
    """The completed trials of a sweep, read back from its MLflow store.

    Parameters
    ----------
    workdir : path-like
        The sweep directory (``runs/<name>``).
    prefixes : sequence of str, optional
        Only metrics whose key starts with one of these (default: all) — fewer MLflow calls.
    esd_steps : 'all', 'last', 'none' or sequence of int, default='all'
        Which ``esd/step_<k>.npz`` artifacts to load.

    Returns
    -------
    list of TrialRecord
        In Optuna trial order.

    Raises
    ------
    FileNotFoundError
        ``workdir`` is not a sweep directory.
    """
    import mlflow

    from htsweep.sweeps.status import load_trials

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    meta, _, rows = load_trials(workdir)
    client = mlflow.MlflowClient(meta.tracking_uri)
    out = []
    with tempfile.TemporaryDirectory(prefix="htsweep-repro-") as tmp:
        for row in rows:
            if not (row.complete and row.mlflow_run_id):
                continue
            run_id = row.mlflow_run_id
            keys = [k for k in client.get_run(run_id).data.metrics
                    if prefixes is None or k.startswith(tuple(prefixes))]
            hist: dict[int, dict[str, float]] = {}
            for key in keys:
                for m in client.get_metric_history(run_id, key):
                    hist.setdefault(int(m.step), {})[key] = float(m.value)
            dst = Path(tmp) / str(row.number)
            dst.mkdir()
            esds = _load_esds(client, run_id, dst, esd_steps)
            out.append(TrialRecord(dict(row.params), _history(hist), esds, _final_layers(client, run_id, dst)))
    return out


def _load_esds(client: Any, run_id: str, dst: Path, which: str | Sequence[int]) -> dict[int, dict[str, np.ndarray]]:
    if which == "none":
        return {}
    files = {int(Path(f.path).stem.split("_")[-1]): f.path for f in client.list_artifacts(run_id, "esd")
             if f.path.endswith(".npz") and Path(f.path).stem.split("_")[-1].isdigit()}
    steps = sorted(files) if which == "all" else sorted(files)[-1:] if which == "last" else \
        [s for s in which if s in files]
    esds = {}
    for step in steps:
        path = Path(client.download_artifacts(run_id, files[step], str(dst)))
        with np.load(path) as npz:
            esds[step] = {k.replace("|", "/"): np.asarray(npz[k], dtype=np.float64) for k in npz.files}
    return esds


def _final_layers(client: Any, run_id: str, dst: Path) -> dict[str, dict[str, Any]]:
    try:
        path = Path(client.download_artifacts(run_id, "spectral_summary.json", str(dst)))
    except Exception:  # noqa: BLE001 - a trial that failed before writing it has no final rows
        return {}
    return {str(r["name"]): r for r in json.loads(path.read_text()).get("layers", [])}
