"""MLflow tracking for sweeps: the store, the sweep's parent run, and a per-trial logger callback.

Layout in MLflow: one experiment per sweep, one parent run for the sweep
(:func:`start_sweep_run`), one nested run per trial (:class:`TrialRunLogger`, tagged
``trial_id`` so a resumed trial re-opens its run) with every hyperparameter as a param.

Per monitoring step the trial run gets, in one ``log_batch``: train/test metrics, the spectral
aggregates (``alpha_mean``, ``alpha_weighted_mean``, ``frac_heavy_tailed``, ``phase_code``, ...),
per-layer ``alpha/<layer>``, ``alpha_hill/<layer>``, ``stable_rank/<layer>``,
``mp_soft_rank/<layer>``, ``effective_rank/<layer>``, ``n_spikes/<layer>``, ``phase_code/<layer>``
(0–5 in ``analysis.phases.PHASES`` order, -1 = ``undetermined``: no spectrum to classify), all with an
explicit step;
tags ``phase.<layer>`` and ``phase`` (the model phase by :func:`analysis.aggregate.model_phase`:
the most common phase of the dense layers), so
``mlflow.search_runs(filter_string="tags.phase = 'heavy_tailed'")`` finds trials by phase;
artifacts ``esd/step_<k>.npz`` (every layer's eigenvalues), ESD figures every ``figure_every``
monitoring steps and at the end (``esd/final/<layer>.png``), and ``spectral_summary.json``.

Writes go through :class:`services.buffer.BufferedClient`: if the tracking server is unreachable
they are journaled on local disk and sent when it answers again; :func:`flush_buffers` sends what
trials left behind. A report's metrics and tags are journaled and sent by a background thread
(``TrackingConfig.flush_interval``), so the training loop does not wait for the store; artifacts,
the run's end and every checkpoint (:meth:`TrialRunLogger.send_now`) send what is pending first.

Examples
--------
Driver side, before the trials start::

    cfg = TrackingConfig.for_workdir("runs/quickstart", experiment="quickstart")
    init_store(cfg.tracking_uri)                 # migrations, once
    parent = start_sweep_run(cfg, params=spec_dict)

Trial side (``sweeps.trial_logger.MlflowTrialLogger`` is this module's :class:`TrialRunLogger`
as a trainers callback)::

    logger = MlflowTrialLogger(cfg, trial_id=trial_id, params=config, parent_run_id=parent)
    Trainer(train_config, callbacks=[monitor, logger]).fit()
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import re
import shutil
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from htsweep.analysis.aggregate import model_phase, spectral_aggregates
from htsweep.analysis.analyze import json_safe
from htsweep.analysis.metric_names import ReportKey, RowKey, is_spectral_key
from htsweep.analysis.phases import CLASSIFIER_VERSION
from htsweep.services.buffer import (
    LOCAL_PREFIX,
    BufferedClient,
    _require_mlflow,
    ensure_run,
    flush_journals,
    is_disk_full,
)
from htsweep.services.tracking_uri import default_tracking_uri

try:
    import mlflow
except ImportError:  # pragma: no cover - soft optional dependency
    mlflow = None

__all__ = [
    "TrackingConfig",
    "TrialRunLogger",
    "configure_experiment_ui",
    "default_tracking_uri",
    "end_sweep_run",
    "flush_buffers",
    "init_store",
    "log_snapshot",
    "log_sweep_summary",
    "runs_table_url",
    "spectral_tags",
    "start_sweep_run",
]

log = logging.getLogger(__name__)

TRIAL_TAG = "trial_id"
SWEEP_TAG = "htsweep.sweep"  # on every run of the sweep (parent and trials)
SWEEP_RUN_TAG = "htsweep.sweep_run"  # only on the parent run: how a resumed sweep finds it
ROLE_TAG = "htsweep.role"  # "sweep" or "trial"
END_REASON_TAG = "htsweep.end_reason"  # why a trial run ended: completed, diverged: ..., error: ...
DROPPED_TAG = "htsweep.dropped"  # what a full disk kept from the run (artifacts not staged)
# What the MLflow UI shows first (MLflow 3.x; names read from its UI bundle, see configure_experiment_ui).
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"  # the experiment's type: decides the landing tab
EXPERIMENT_KIND = "custom_model_development"  # "traditional ML": the training-runs table, not GenAI traces
NOTE_TAG = "mlflow.note.content"  # the description of a run or an experiment (markdown)
VIEW_TAG_PREFIX = "mlflow.sharedViewState."  # a saved runs-table view, opened by ?viewStateShareKey=<id>
TRIALS_VIEW = "htsweep-trials"  # our saved view: trial runs, alpha/phase/accuracy/objective columns
#: Short top-level metrics and tags of each trial run that the saved view puts in front.
FRONT_COLUMNS = (f"metrics.{ReportKey.HEADLINE_ALPHA}", f"tags.{ReportKey.PHASE}", f"metrics.{ReportKey.TEST_ACC}",
                 f"metrics.{ReportKey.TEST_LOSS}", f"metrics.{ReportKey.TEST_R2}", f"metrics.{ReportKey.OBJECTIVE}")
_KEY_BAD = re.compile(r"[^\w\-./ :]")
_REMOTE_SCHEMES = ("http://", "https://", "databricks")
_initialized: set[str] = set()


@dataclasses.dataclass(frozen=True)
class TrackingConfig:
    """Where and how a sweep is tracked (picklable: it travels to every trial).

    Parameters
    ----------
    tracking_uri : str
        Any MLflow tracking URI: ``sqlite:///…`` (default, via :meth:`for_workdir`), an
        ``http://`` server, ``postgresql://…``.
    experiment : str, default='htsweep'
        Experiment name; one per sweep.
    artifacts : str or None, default=None
        Artifact root for experiments created on a local database store
        (``<artifacts>/<experiment>``); a tracking server chooses its own. None: ``mlartifacts``
        next to a sqlite database (MLflow's own default would be ``./mlruns`` in the cwd).
    buffer_dir : str or None, default=None
        Directory for the outage journal and staged artifact files; None: a temp directory.
    figure_every : int, default=0
        Save ESD figures every this many monitoring steps; 0: only at the end.
    npz_every : int, default=1
        Save ``esd/step_<k>.npz`` every this many monitoring steps (the last is always saved).
    http_max_retries : int, default=1
        ``MLFLOW_HTTP_REQUEST_MAX_RETRIES`` for trial processes (MLflow's default 7 blocks
        ~4 minutes per call when the server is down); an explicit environment value wins.
    http_timeout : float, default=5.0
        ``MLFLOW_HTTP_REQUEST_TIMEOUT`` in seconds (guards against a hung server).
    retry_interval : float, default=5.0
        After a failed send, seconds during which writes go straight to the journal (doubling
        with each consecutive failure, up to a minute).
    flush_timeout : float, default=30.0
        Seconds a finishing trial keeps retrying to flush its journal before leaving it to
        :func:`flush_buffers`.
    flush_interval : float, default=2.0
        Seconds a report's metrics may wait (journaled) to be sent together with the next ones by a
        background thread; 0: each report is written before the loop goes on.
    """

    tracking_uri: str
    experiment: str = "htsweep"
    artifacts: str | None = None
    buffer_dir: str | None = None
    figure_every: int = 0
    npz_every: int = 1
    http_max_retries: int = 1
    http_timeout: float = 5.0
    retry_interval: float = 5.0
    flush_timeout: float = 30.0
    flush_interval: float = 2.0

    def __post_init__(self) -> None:
        if not isinstance(self.tracking_uri, str) or not self.tracking_uri:
            raise ValueError(f"tracking_uri must be a non-empty string, got {self.tracking_uri!r}")
        if not self.experiment:
            raise ValueError("experiment must be a non-empty string")
        for name in ("figure_every", "npz_every", "http_max_retries"):
            if int(getattr(self, name)) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        for name in ("http_timeout", "retry_interval", "flush_timeout", "flush_interval"):
            if float(getattr(self, name)) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")

    @classmethod
    def for_workdir(cls, workdir: str | Path, *, experiment: str, tracking_uri: str | None = None,
                    **kwargs: Any) -> TrackingConfig:
        """Defaults for a sweep directory.

        ``tracking_uri`` from :func:`default_tracking_uri`, artifacts in ``<workdir>/mlartifacts``,
        the outage journal in ``<workdir>/mlbuffer``.
        """
        work = Path(workdir).resolve()
        kwargs.setdefault("artifacts", str(work / "mlartifacts"))
        kwargs.setdefault("buffer_dir", str(work / "mlbuffer"))
        return cls(default_tracking_uri(work, tracking_uri), experiment=experiment, **kwargs)

    @property
    def is_remote(self) -> bool:
        """True for a tracking server (http/https/databricks): it owns the artifact root."""
        return self.tracking_uri.startswith(_REMOTE_SCHEMES)

    def artifact_location(self) -> str | None:
        """Artifact location for a new experiment (None lets the server or MLflow decide)."""
        if self.is_remote:
            return None
        artifacts = self.artifacts
        if artifacts is None:
            if not self.tracking_uri.startswith("sqlite:///"):
                return None
            # Next to the database, never MLflow's default ./mlruns in whatever the cwd is.
            artifacts = str(Path(self.tracking_uri[len("sqlite:///"):]).parent / "mlartifacts")
        if "://" in artifacts:
            return f"{artifacts.rstrip('/')}/{_safe_name(self.experiment)}"
        return (Path(artifacts).resolve() / _safe_name(self.experiment)).as_uri()

    def resolved_buffer_dir(self) -> Path:
        """``buffer_dir``, or ``<tmp>/htsweep-mlbuffer/<experiment>``."""
        if self.buffer_dir is not None:
            return Path(self.buffer_dir)
        import tempfile

        return Path(tempfile.gettempdir()) / "htsweep-mlbuffer" / _safe_name(self.experiment)

    def configure_http(self) -> None:
        """Set tight MLflow HTTP retry/timeout variables unless the environment already has them."""
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", str(int(self.http_max_retries)))
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(int(math.ceil(self.http_timeout))))


def _safe_name(name: str) -> str:
    return re.sub(r"[^\w.\-]", "_", str(name)) or "_"


def _key(name: str) -> str:
    """An MLflow-legal metric/param/tag key."""
    return _KEY_BAD.sub("_", str(name))[:250]


def init_store(tracking_uri: str) -> None:
    """Prepare a tracking store once, in the driver, before any trial starts.

    A new sqlite store runs its schema migrations here; several trial processes creating the same
    store at once race on them (``duplicate column name``). Remote stores are left alone. Calling
    it again in the same process is free.

    Parameters
    ----------
    tracking_uri : str
        The sweep's tracking URI.
    """
    _require_mlflow()
    if tracking_uri in _initialized:
        return
    if tracking_uri.startswith("sqlite:///"):
        Path(tracking_uri[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    if not tracking_uri.startswith(_REMOTE_SCHEMES):
        mlflow.MlflowClient(tracking_uri).search_experiments(max_results=1)
    _initialized.add(tracking_uri)


def flatten_params(params: Mapping[str, Any], *, prefix: str = "") -> dict[str, str]:
    """Flatten nested hyperparameters to ``{"a.b": "value"}`` strings MLflow accepts as params."""
    out: dict[str, str] = {}
    for k, v in params.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten_params(v, prefix=f"{key}."))
        elif dataclasses.is_dataclass(v) and not isinstance(v, type):
            out.update(flatten_params(dataclasses.asdict(v), prefix=f"{key}."))
        else:
            out[_key(key)] = str(v)[:6000]
    return out


def _column(key: str) -> str:
    """The MLflow UI's canonical column id: ``metrics.alpha`` → ``metrics.`alpha```."""
    kind, _, name = key.partition(".")
    return f"{kind}.`{name}`"


def configure_experiment_ui(tracking_uri: str, experiment: str, *, param_names: Sequence[str] = (),
                            description: str | None = None) -> str:
    """Make the MLflow UI open the sweep's experiment on its trial runs with the science in front.

    Sets three experiment tags (idempotent; the kind and description only where not set yet, so
    a choice made in the UI survives):

    * ``mlflow.experimentKind = custom_model_development`` — MLflow 3 lands on the training-runs
      table instead of the GenAI overview (traces, "Detect issues");
    * ``mlflow.note.content`` — the experiment description shown above the table;
    * ``mlflow.sharedViewState.htsweep-trials`` — a saved runs-table view: only trial runs
      (``tags.htsweep.role = 'trial'``, so they are not folded under the sweep's parent run),
      sorted by the objective, with the columns :data:`FRONT_COLUMNS` (α, phase, test
      accuracy / loss / R², objective), the searched hyperparameters and the run description.
      :func:`runs_table_url` opens it.

    Parameters
    ----------
    tracking_uri : str
    experiment : str
        Experiment name (it must exist).
    param_names : sequence of str, default=()
        Hyperparameters to show as columns (the spec's searched names).
    description : str, optional
        Experiment description, set when the experiment has none.

    Returns
    -------
    str
        The experiment id.
    """
    _require_mlflow()
    client = mlflow.MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        raise ValueError(f"MLflow experiment {experiment!r} does not exist at {tracking_uri}")
    if EXPERIMENT_KIND_TAG not in exp.tags:
        client.set_experiment_tag(exp.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
    if description and not exp.tags.get(NOTE_TAG):
        client.set_experiment_tag(exp.experiment_id, NOTE_TAG, description)
    columns = [*map(_column, FRONT_COLUMNS), *(_column(f"params.{_key(p)}") for p in param_names),
               "attributes.`Description`"]
    state = {
        "searchFilter": f"tags.`{ROLE_TAG}` = 'trial'",
        "orderByKey": _column("metrics.objective"),
        "orderByAsc": True,
        "selectedColumns": columns,
        "columnOrder": columns,  # phase (a tag) right after alpha, not after every parameter
        "columnWidths": {c: 110 for c in columns if c.startswith("metrics.")},
        "runsHiddenMode": "SHOW_ALL",  # charts: every trial, not MLflow's default first ten
    }
    # The UI's saved-view envelope: name and time readable, ``state`` the serialized view.
    view = {"name": "htsweep: trials (alpha, phase, accuracy)", "createdAt": int(time.time() * 1000),
            "state": json.dumps(state)}
    try:
        same = json.loads(exp.tags.get(VIEW_TAG_PREFIX + TRIALS_VIEW, "{}")).get("state") == view["state"]
    except (ValueError, AttributeError):  # edited by hand: rewrite it
        same = False
    if not same:
        client.set_experiment_tag(exp.experiment_id, VIEW_TAG_PREFIX + TRIALS_VIEW, json.dumps(view))
    return exp.experiment_id


def runs_table_url(base_url: str, experiment_id: str) -> str:
    """URL of the experiment's trial runs table in the MLflow UI (the view of
    :func:`configure_experiment_ui`), e.g. ``http://127.0.0.1:5000/#/experiments/1/runs?...``."""
    return (f"{base_url.rstrip('/')}/#/experiments/{experiment_id}/runs"
            f"?viewStateShareKey={TRIALS_VIEW}&workflowType=machine_learning")


def log_sweep_summary(config: TrackingConfig, run_id: str, *, tables: Mapping[str, Any] | None = None,
                      description: str | None = None, artifacts: str | Path | None = None,
                      artifact_path: str = "report") -> None:
    """Put a sweep's summary on its parent run: tables, a description and (optionally) files.

    Parameters
    ----------
    config : TrackingConfig
    run_id : str
        The sweep's parent run.
    tables : mapping of str to pandas.DataFrame, optional
        Each is written as ``<name>.json`` in the layout of ``mlflow.log_table`` (pandas
        ``orient="split"``) and listed in the run's ``mlflow.loggedArtifacts`` tag, so the UI
        shows it as a table; logging again replaces it (``log_table`` would append the rows).
    description : str, optional
        Markdown for the run's description (``mlflow.note.content``).
    artifacts : path-like, optional
        A folder (e.g. the HTML report) logged under ``artifact_path``.
    artifact_path : str, default='report'
    """
    import tempfile

    _require_mlflow()
    from mlflow.utils.mlflow_tags import MLFLOW_LOGGED_ARTIFACTS

    config.configure_http()
    client = mlflow.MlflowClient(config.tracking_uri)
    if tables:
        listed = json.loads(client.get_run(run_id).data.tags.get(MLFLOW_LOGGED_ARTIFACTS, "[]"))
        with tempfile.TemporaryDirectory(prefix="htsweep-tables-") as tmp:
            for name, frame in tables.items():
                path = Path(tmp) / f"{_safe_name(name)}.json"
                frame.to_json(path, orient="split", index=False, double_precision=15)
                client.log_artifact(run_id, str(path))
                entry = {"path": path.name, "type": "table"}
                if entry not in listed:
                    listed.append(entry)
        client.set_tag(run_id, MLFLOW_LOGGED_ARTIFACTS, json.dumps(listed))
    if description:
        client.set_tag(run_id, NOTE_TAG, description[:5000])
    if artifacts is not None:
        client.log_artifacts(run_id, str(artifacts), artifact_path)


def start_sweep_run(config: TrackingConfig, *, params: Mapping[str, Any] | None = None,
                    tags: Mapping[str, str] | None = None, run_name: str | None = None,
                    sweep_id: str | None = None) -> str:
    """Create (or re-open, on resume) the sweep's parent run; driver side, unbuffered.

    Parameters
    ----------
    config : TrackingConfig
        The sweep's tracking settings; ``config.experiment`` names the sweep.
    params : mapping, optional
        Sweep-level settings (the spec), flattened to params.
    tags : mapping, optional
        Extra tags.
    run_name : str, optional
        Display name; default ``"sweep:<experiment>"``.
    sweep_id : str, optional
        Unique id of this sweep (kept in ``sweep.json``): the run tagged ``htsweep.sweep_run`` with
        it is re-opened on resume. None falls back to the experiment name, which a later sweep
        of the same spec on a shared server would share.

    Returns
    -------
    str
        The parent run id; pass it to every :class:`TrialRunLogger`.
    """
    _require_mlflow()
    init_store(config.tracking_uri)
    client = mlflow.MlflowClient(config.tracking_uri)
    run_id = ensure_run(
        client, experiment=config.experiment, match=(SWEEP_RUN_TAG, sweep_id or config.experiment),
        artifact_location=config.artifact_location(),
        tags={ROLE_TAG: "sweep", SWEEP_TAG: config.experiment, **dict(tags or {})}, run_name=run_name or f"sweep:{config.experiment}",
    )
    search = (params or {}).get("search")
    try:
        configure_experiment_ui(config.tracking_uri, config.experiment,
                                param_names=list(search) if isinstance(search, Mapping) else (),
                                description=(params or {}).get("description") or None)
    except mlflow.exceptions.MlflowException as exc:  # the UI's defaults are a nicety
        log.warning("MLflow UI view not configured: %s", exc)
    if params:
        from mlflow.entities import Param

        items = [Param(k, v) for k, v in flatten_params(params).items()]
        for i in range(0, len(items), 100):
            try:
                client.log_batch(run_id, params=items[i:i + 100], synchronous=True)
            except mlflow.exceptions.MlflowException as exc:  # resumed with changed settings
                log.warning("sweep params not updated: %s", exc)
    return run_id


def end_sweep_run(config: TrackingConfig, run_id: str, *, status: str = "FINISHED",
                  metrics: Mapping[str, float] | None = None) -> None:
    """Log final sweep metrics (e.g. the best objective) and end the parent run."""
    _require_mlflow()
    client = mlflow.MlflowClient(config.tracking_uri)
    if metrics:
        from mlflow.entities import Metric

        ts = int(time.time() * 1000)
        client.log_batch(run_id, metrics=[Metric(_key(k), float(v), ts, 0) for k, v in metrics.items()],
                         synchronous=True)
    client.set_terminated(run_id, status=status)


def flush_buffers(config: TrackingConfig, *, timeout: float = 0.0) -> int:
    """Send what trials left in the outage journals of ``config``'s buffer directory.

    ``timeout`` bounds the whole call, however many journals there are
    (:func:`services.buffer.flush_journals`).

    Returns
    -------
    int
        Operations still pending (0 when everything arrived).
    """
    _require_mlflow()
    config.configure_http()
    return flush_journals(config.tracking_uri, config.resolved_buffer_dir(), timeout=timeout)[1]


def spectral_tags(rows: Sequence[Mapping[str, Any]], step: int) -> dict[str, str]:
    """The MLflow tags of one spectral analysis: ``phase.<layer>`` per layer (and ``tail_law.<layer>``
    when the rows carry the tail-law verdict), the model ``phase``, ``phase_step`` (the step they
    are of) and ``phase_classifier`` (:data:`analysis.phases.CLASSIFIER_VERSION`); empty without rows."""
    tags = {_key(ReportKey.LAYER_PHASE_TAG_PREFIX + str(r[RowKey.NAME])): str(r.get(RowKey.PHASE, "")) for r in rows}
    # the tail-law verdict, when the rows carry it (monitor.tail_law)
    tags.update({_key(f"{RowKey.TAIL_LAW}.{r[RowKey.NAME]}"): str(r[RowKey.TAIL_LAW]) for r in rows
                 if r.get(RowKey.TAIL_LAW)})
    if rows:
        tags[ReportKey.PHASE] = model_phase(list(rows))
        tags[ReportKey.PHASE_STEP_TAG] = str(int(step))
        tags[ReportKey.PHASE_CLASSIFIER_TAG] = CLASSIFIER_VERSION
    return tags


def log_snapshot(rows: Sequence[Mapping[str, Any]], step: int, *, run_id: str | None = None,
                 client: Any = None) -> dict[str, float]:
    """Log one spectral analysis to an MLflow run: aggregates, per-layer series and phase tags.

    The metrics are :func:`analysis.aggregate.spectral_aggregates` of ``rows`` (``alpha_mean``,
    ``alpha/<layer>``, ``phase_code/<layer>``, ...) at ``step``, the tags :func:`spectral_tags`,
    all in one ``log_batch``. For monitoring outside a sweep (``htsweep.SpectralMonitor`` and the
    framework callbacks); a sweep's trials log through :class:`TrialRunLogger`.

    Parameters
    ----------
    rows : sequence of dict
        Metrics rows of one analysis.
    step : int
    run_id : str, optional
        Default: the active run of the fluent API (``mlflow.active_run()``).
    client : mlflow.MlflowClient, optional
        Default: a client on the current tracking URI.

    Returns
    -------
    dict of str to float
        The metrics logged.

    Raises
    ------
    RuntimeError
        No ``run_id`` and no active MLflow run.
    """
    _require_mlflow()
    if run_id is None:
        active = mlflow.active_run()
        if active is None:
            raise RuntimeError("no active MLflow run to log the spectra to: call mlflow.start_run() first")
        run_id = active.info.run_id
    from mlflow.entities import Metric, RunTag

    metrics = spectral_aggregates(rows)
    ts = int(time.time() * 1000)
    client = client or mlflow.MlflowClient()
    items = [Metric(_key(k), float(v), ts, int(step)) for k, v in metrics.items()]
    tags = [RunTag(k, v) for k, v in spectral_tags(rows, step).items()]
    # MLflow's log_batch takes at most 1000 metrics and 100 tags per call
    for i in range(0, max(len(items), 10 * len(tags)), 1000):
        client.log_batch(run_id, metrics=items[i:i + 1000], tags=tags[i // 10:i // 10 + 100], synchronous=True)
    return metrics


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, str)


def run_description(metrics: Mapping[str, Any], phase: str = "") -> str:
    """One line for a trial run's description: α, phase, accuracy (or loss and R²), objective."""
    def fmt(key: str, label: str) -> str | None:
        v = metrics.get(key)
        return f"{label} {float(v):.3g}" if _is_number(v) and math.isfinite(v) else None

    alpha = fmt(ReportKey.HEADLINE_ALPHA, "α") or fmt(ReportKey.ALPHA_MEAN, "α (mean)")
    parts = [alpha, phase or None, fmt(ReportKey.TEST_ACC, "test acc")]
    if parts[-1] is None:
        parts += [fmt(ReportKey.TEST_LOSS, "test loss"), fmt(ReportKey.TEST_R2, "R²")]
    parts += [fmt(ReportKey.OBJECTIVE, "objective"),
              f"(step {int(metrics[ReportKey.STEP])})" if ReportKey.STEP in metrics else None]
    return " · ".join(p for p in parts[:-1] if p) + (f" {parts[-1]}" if parts[-1] else "")


class TrialRunLogger:
    """Records one trial as a nested MLflow run, driven by the trainer's callback hooks.

    Its methods are hooks of ``trainers.callbacks.Callback`` by name, written against the
    trainer's public attributes only (``config``, ``spectral``), so this module needs no trainer;
    :class:`sweeps.trial_logger.MlflowTrialLogger` makes it a trainers callback. Connects in
    ``on_fit_start`` (never in ``__init__``), logs every ``on_report`` with an explicit
    step in one ``log_batch``, reads ``trainer.spectral`` for per-layer rows and eigenvalues, and
    ends the run FINISHED (``on_fit_end``) or FAILED (``on_exception``). Put it after the
    ``SpectralMonitor`` in the callback list.

    Parameters
    ----------
    config : TrackingConfig
        Where to log.
    trial_id : str
        Stable id of the trial (Tune's ``trial_id``); a resumed trial re-opens the run tagged with it.
    params : mapping, optional
        The trial's hyperparameters (e.g. Tune's ``config``); nested mappings are flattened. The
        trainer's ``config`` dataclass is logged too, under ``train.``.
    parent_run_id : str, optional
        The sweep's run from :func:`start_sweep_run`; the trial run is nested under it.
    run_name : str, optional
        Display name; default ``trial_id``.
    tags : mapping, optional
        Extra tags for the run.
    headline : callable, optional
        ``headline(metrics) -> {name: value}``: short top-level metrics computed from each report
        with a new spectral analysis (the sweep passes ``alpha``, ``alpha_error``, ``objective``),
        logged with the rest and used in the run description (``mlflow.note.content``, e.g.
        ``α 2.42 · heavy_tailed · test acc 0.942 · objective 0.423``) that the UI shows.

    Attributes
    ----------
    run_id : str or None
        The MLflow run id (None while the server was unreachable since the start).
    """

    def __init__(self, config: TrackingConfig, *, trial_id: str, params: Mapping[str, Any] | None = None,
                 parent_run_id: str | None = None, run_name: str | None = None,
                 tags: Mapping[str, str] | None = None,
                 headline: Callable[[Mapping[str, Any]], Mapping[str, float]] | None = None) -> None:
        if not isinstance(config, TrackingConfig):
            raise TypeError(f"config must be a TrackingConfig, got {type(config).__name__}")
        if not trial_id:
            raise ValueError("trial_id must be a non-empty string")
        self.config = config
        self.trial_id = str(trial_id)
        self.params = dict(params or {})
        self.parent_run_id = parent_run_id
        self.run_name = run_name
        self.tags = dict(tags or {})
        self.headline = headline
        self._buffer: BufferedClient | None = None
        self._run_ref = f"{LOCAL_PREFIX}{self.trial_id}"
        self._last_spectral_step: int | None = None
        self._n_snapshots = 0
        self._last_rows: list[dict] | None = None
        self._last_metrics: dict[str, Any] = {}
        self._ended = False
        self._dropped: list[str] = []

    # -- helpers ------------------------------------------------------------------------------
    @property
    def run_id(self) -> str | None:
        """The MLflow run id, once the run exists on the server."""
        return self._buffer.resolve(self._run_ref) if self._buffer is not None else None

    @property
    def pending(self) -> int:
        """Operations waiting in the outage journal."""
        return self._buffer.pending if self._buffer is not None else 0

    @property
    def staging_dir(self) -> Path:
        """Where artifact files wait until they are uploaded."""
        return self.config.resolved_buffer_dir() / _safe_name(self.trial_id)

    def flush(self, *, timeout: float = 0.0) -> bool:
        """Try to send everything buffered; True when nothing is pending."""
        return self._buffer.flush(timeout=timeout) if self._buffer is not None else True

    def send_now(self) -> bool:
        """Send what is pending unless the server failed moments ago; call it before a checkpoint, so
        a trial resumed from it (on any node) finds every step up to it in MLflow and none twice."""
        return self._buffer.send_now() if self._buffer is not None else True

    def _submit(self, op: dict) -> None:
        assert self._buffer is not None, "on_fit_start has not run"
        self._buffer.submit({**op, "run": self._run_ref})

    def _artifact(self, path: Path, artifact_path: str | None) -> None:
        self._submit({"op": "log_artifact", "path": str(path), "artifact_path": artifact_path,
                      "delete_after": True})

    def _write_artifact(self, rel: str, artifact_path: str | None, write: Any) -> None:
        """Stage ``rel`` with ``write(path)`` and queue its upload; a full disk drops it (counted)."""
        path = self.staging_dir / rel
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write(path)
        except OSError as exc:
            if not is_disk_full(exc):
                raise
            path.unlink(missing_ok=True)
            if not self._dropped:
                log.warning("disk full staging MLflow artifacts in %s (%s): training goes on, artifacts that do "
                            "not fit are dropped (counted in the run's %s tag)", self.staging_dir, exc.strerror,
                            DROPPED_TAG)
            self._dropped.append(rel)
            return
        self._artifact(path, artifact_path)

    # -- hooks --------------------------------------------------------------------------------
    def on_fit_start(self, trainer: Any, model: Any) -> None:
        """Connect, create or re-open the trial's run and log its hyperparameters."""
        _require_mlflow()
        self.config.configure_http()
        buffer_dir = self.config.resolved_buffer_dir()
        buffer_dir.mkdir(parents=True, exist_ok=True)
        if self._buffer is not None:
            self._buffer.close()
        self._buffer = BufferedClient(self.config.tracking_uri,
                                      journal=buffer_dir / f"{_safe_name(self.trial_id)}.jsonl",
                                      retry_interval=self.config.retry_interval,
                                      flush_interval=self.config.flush_interval)
        self._ended = False
        tags = {SWEEP_TAG: self.config.experiment, ROLE_TAG: "trial", **self.tags}
        if self.parent_run_id:
            tags["mlflow.parentRunId"] = self.parent_run_id
        self._buffer.submit({
            "op": "ensure_run", "ref": self._run_ref, "experiment": self.config.experiment,
            "match": [TRIAL_TAG, self.trial_id], "artifact_location": self.config.artifact_location(),
            "tags": tags, "run_name": self.run_name or self.trial_id,
            "start_time": int(time.time() * 1000),
        })
        params = {}
        train_config = getattr(trainer, "config", None)
        if dataclasses.is_dataclass(train_config) and not isinstance(train_config, type):
            params.update(flatten_params(dataclasses.asdict(train_config), prefix="train."))
        params.update(flatten_params(self.params))
        if params:
            self._submit({"op": "log_batch", "params": sorted(params.items())})

    def on_report(self, trainer: Any, model: Any, step: int, metrics: Mapping[str, Any]) -> None:
        """Log train/test metrics, spectral aggregates and per-layer metrics for ``step``."""
        step = int(step)
        values: dict[str, Any] = dict(metrics)  # the monitor already merged the spectral aggregates
        tags: dict[str, str] = {}
        snapshot = getattr(trainer, "spectral", None)
        new_snapshot = snapshot is not None and snapshot.step != self._last_spectral_step
        if new_snapshot:
            tags.update(spectral_tags(snapshot.rows, snapshot.step))
        self._last_metrics = {k: v for k, v in values.items() if _is_number(v)}
        if not new_snapshot:
            # carried over from the last analysis: logging them again would date them wrongly
            values = {k: v for k, v in values.items() if not is_spectral_key(k)}
        else:
            if self.headline is not None:
                values.update({k: v for k, v in self.headline(values).items() if _is_number(v) and math.isfinite(v)})
            tags[NOTE_TAG] = run_description(values, tags.get(ReportKey.PHASE, ""))
        ts = int(time.time() * 1000)
        rows_out = [[_key(k), float(v), ts, step] for k, v in values.items()
                    if k != ReportKey.STEP and _is_number(v)]
        self._submit({"op": "log_batch", "metrics": rows_out, "tags": sorted(tags.items())})
        if new_snapshot:
            self._on_snapshot(snapshot)

    def _on_snapshot(self, snapshot: Any) -> None:
        self._last_spectral_step = int(snapshot.step)
        self._n_snapshots += 1
        self._last_rows = list(snapshot.rows)
        if self.config.npz_every and (self._n_snapshots - 1) % self.config.npz_every == 0:
            self._save_npz(snapshot.step, self._last_rows)
        if self.config.figure_every and self._n_snapshots % self.config.figure_every == 0:
            self._save_figures(self._last_rows, f"esd/step_{snapshot.step}")

    def _save_npz(self, step: int, rows: list[dict]) -> None:
        arrays = {str(r[RowKey.NAME]).replace("/", "|"): np.asarray(r[RowKey.EIGS], dtype=np.float64)
                  for r in rows if r.get(RowKey.EIGS) is not None}
        self._write_artifact(f"esd/step_{step}.npz", "esd", lambda path: np.savez_compressed(path, **arrays))

    def _save_figures(self, rows: list[dict], artifact_dir: str) -> None:
        try:
            from htsweep.analysis.plots import plot_layer
        except ImportError as exc:  # matplotlib missing: figures are optional
            log.warning("ESD figures skipped: %s", exc)
            return
        for row in rows:
            if row.get(RowKey.EIGS) is None:
                continue
            try:
                self._write_artifact(f"{artifact_dir}/{_safe_name(row[RowKey.NAME])}.png", artifact_dir,
                                     lambda path, row=row: plot_layer(row, path))
            except Exception as exc:  # noqa: BLE001 - a figure must never fail the trial
                log.warning("ESD figure for %s failed: %s", row.get(RowKey.NAME), exc)

    def _finish(self, trainer: Any, status: str, reason: str) -> None:
        if self._buffer is None or self._ended:
            return
        self._ended = True
        snapshot = getattr(trainer, "spectral", None)
        if snapshot is not None and snapshot.step != self._last_spectral_step:
            self._on_snapshot(snapshot)  # a snapshot that never reached on_report
        rows = self._last_rows
        if rows:
            if status == "FINISHED":
                self._save_figures(rows, "esd/final")
                if self.config.npz_every and (self._n_snapshots - 1) % self.config.npz_every != 0:
                    self._save_npz(self._last_spectral_step, rows)
            summary = {
                "trial_id": self.trial_id, "status": status, "step": self._last_spectral_step,
                "phase": model_phase(rows), "metrics": self._last_metrics,
                "layers": [{k: v for k, v in r.items() if k != RowKey.EIGS} for r in rows],
            }
            text = json.dumps(json_safe(summary), indent=2)
            self._write_artifact("spectral_summary.json", None, lambda path: path.write_text(text))
        tags = [[END_REASON_TAG, reason[:5000]]]
        if self._dropped:
            tags.append([DROPPED_TAG, f"{len(self._dropped)} artifact(s), disk full: {', '.join(self._dropped)}"[:5000]])
        self._submit({"op": "log_batch", "tags": tags})
        self._submit({"op": "set_terminated", "status": status, "end_time": int(time.time() * 1000)})
        self._buffer.close()
        if self._buffer.flush(timeout=self.config.flush_timeout if status == "FINISHED" else 0.0):
            shutil.rmtree(self.staging_dir, ignore_errors=True)  # every staged file was uploaded
        else:
            log.warning("tracking server unreachable: %d operation(s) of trial %s left in %s "
                        "(services.tracking.flush_buffers sends them)",
                        self._buffer.pending, self.trial_id, self._buffer.journal)

    def on_fit_end(self, trainer: Any, model: Any) -> None:
        """Save final figures and ``spectral_summary.json``, end the run FINISHED, flush."""
        self._finish(trainer, "FINISHED", "completed")

    def on_exception(self, trainer: Any, exc: BaseException) -> None:
        """End the run FAILED (what was logged so far stays); the reason tag says diverged or the error,
        and an error's traceback is the artifact ``traceback.txt``."""
        kind = "diverged" if isinstance(exc, FloatingPointError) else f"error: {type(exc).__name__}"
        if kind != "diverged" and self._buffer is not None and not self._ended and exc.__traceback__ is not None:
            text = "".join(traceback.format_exception(exc))
            self._write_artifact("traceback.txt", None, lambda path: path.write_text(text))
        self._finish(trainer, "FAILED", f"{kind}: {exc}")

    # -- state --------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Run id and the last monitoring step logged, for resuming."""
        return {"run_id": self.run_id, "trial_id": self.trial_id,
                "last_spectral_step": self._last_spectral_step, "n_snapshots": self._n_snapshots}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore the counters saved by :meth:`state_dict` (the run itself is found by tag)."""
        self._last_spectral_step = state.get("last_spectral_step")
        self._n_snapshots = int(state.get("n_snapshots", 0))
