"""The Ray Tune trainable: one trial = one ``trainers.Trainer`` run, monitored and tracked.

Thin by design: :func:`train_trial` merges the sweep's fixed settings with the trial's
hyperparameters into a ``TrainConfig``, plugs in the spectral monitor (backed by the shared ESD
actor), the MLflow trial logger (``sweeps.trial_logger``) and a :class:`TuneReporter`, restores
from the Tune checkpoint if there is one, and calls ``fit``. The reporter turns each ``on_report`` into one flat
``tune.report(metrics, checkpoint=...)`` with the objective terms added.

Everything large or constant (the fixed settings, tracking config, objective) reaches the trial
through ``tune.with_parameters`` as one :class:`TrialContext`.
"""

from __future__ import annotations

import copy
import functools
import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ray import tune

from htsweep.analysis.farms import FARMS_WINDOWS
from htsweep.analysis.metric_names import ReportKey, RowKey, per_layer_key
from htsweep.sweeps.objective import ALPHA_AGG, ALPHA_ERROR, FEASIBLE, OBJECTIVE, evaluate
from htsweep.sweeps.spec import ObjectiveSpec, SweepSpec
from htsweep.trainers.callbacks import Callback

__all__ = ["TrialContext", "TuneReporter", "train_trial", "train_config_dict", "diverged_result",
           "CHECKPOINT_FILE"]

CHECKPOINT_FILE = "checkpoint.pt"
#: Keys of the trainer's metrics forwarded to Tune besides the objective terms.
_FORWARD_PREFIXES = (per_layer_key(RowKey.ALPHA, ""), per_layer_key(ReportKey.PHASE_CODE, ""))


@dataclass(frozen=True)
class TrialContext:
    """What every trial of a sweep shares (travels through the object store).

    Attributes
    ----------
    base : dict
        Fixed ``TrainConfig`` settings (model, dataset, cadence, seed, ``train`` section).
    objective : ObjectiveSpec
    tracking : services.tracking.TrackingConfig or None
        Where trials log; ``None`` disables MLflow (unit tests).
    parent_run_id : str or None
        The sweep's MLflow run.
    esd_name, esd_namespace : str or None
        The shared ESD actor; ``esd_name=None`` analyzes inside the trial.
    conv : str
        Conv-layer handling for the monitor.
    tail_law : bool
        The monitor adds the tail-law keys to every row (``monitor.tail_law``).
    farms : bool
        The monitor adds the FARMS α to every row (``SweepSpec.computes_farms``).
    farms_windows : int
        FARMS window offsets per dimension for the monitor (``monitor.farms_windows``).
    trainable : str or None
        The user's loop (``"pkg.module:train"``); None runs the built-in trainer.
    """

    base: dict[str, Any]
    objective: ObjectiveSpec
    tracking: Any = None
    parent_run_id: str | None = None
    esd_name: str | None = None
    esd_namespace: str | None = None
    conv: str = "reshape"
    tail_law: bool = False
    farms: bool = False
    farms_windows: int = FARMS_WINDOWS
    extra_tags: dict[str, str] = field(default_factory=dict)
    trainable: str | None = None


def train_config_dict(spec: SweepSpec) -> dict[str, Any]:
    """The fixed part of every trial's ``TrainConfig`` as a plain dict."""
    base = copy.deepcopy(dict(spec.train))
    if spec.trainable is None:
        base.update(model=spec.model, dataset=spec.dataset)
    if spec.task is not None:
        base["task"] = spec.task
    base.setdefault("eval_every", spec.monitor.eval_every)
    base.setdefault("spectral_every", spec.monitor.spectral_every)
    base.setdefault("seed", spec.seed)
    return base


def merge_config(base: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """``base`` with the trial's hyperparameters applied (``model_kwargs.width`` → nested)."""
    out = copy.deepcopy(base)
    for key, value in config.items():
        head, _, tail = key.partition(".")
        if tail:
            out[head] = {**out.get(head, {}), tail: value}
        elif isinstance(value, dict):  # Tune unflattens "a/b" keys into nested dicts
            out[key] = {**out.get(key, {}), **value}
        else:
            out[key] = value
    return out


class TuneReporter(Callback):
    """Reports each ``on_report`` to Ray Tune with the objective terms and a checkpoint.

    Parameters
    ----------
    objective : ObjectiveSpec
        How to turn the trainer's metrics into the objective.
    logger : sweeps.trial_logger.MlflowTrialLogger, optional
        Its ``run_id`` is reported as ``mlflow_run_id`` (so the Optuna study links to MLflow).
    checkpoint : bool, default=True
        Attach a trainer checkpoint to every report (restored on retries and resume).
    """

    def __init__(self, objective: ObjectiveSpec, *, logger: Any = None, checkpoint: bool = True) -> None:
        self.objective = objective
        self.logger = logger
        self.checkpoint = checkpoint

    def on_report(self, trainer: Any, model: Any, step: int, metrics: dict[str, Any]) -> None:
        """Flatten, add objective terms, phase and run id, then ``tune.report`` (+ checkpoint)."""
        out: dict[str, Any] = {}
        for key, value in metrics.items():
            if isinstance(value, bool):
                out[key] = float(value)
            elif isinstance(value, int | float):
                out[key] = float(value) if isinstance(value, float) else value
            elif hasattr(value, "item") and getattr(value, "size", 2) == 1:
                out[key] = value.item()
        out = {k: v for k, v in out.items() if "/" not in k or k.startswith(_FORWARD_PREFIXES)}
        out[ReportKey.STEP] = int(step)
        out["trained"] = trainer.step >= trainer.total_steps  # False for a trial ASHA stops early
        out.update(evaluate(metrics, self.objective))
        out.update(_links(trainer, self.logger))
        out = {k: v for k, v in out.items() if not (isinstance(v, float) and math.isinf(v))}
        if not self.checkpoint:
            tune.report(out)
            return
        if self.logger is not None:  # the checkpoint must not get ahead of what MLflow has
            self.logger.send_now()
        with tempfile.TemporaryDirectory(prefix="htsweep-ckpt-") as tmp:
            trainer.save_checkpoint(Path(tmp) / CHECKPOINT_FILE)
            tune.report(out, checkpoint=tune.Checkpoint.from_directory(tmp))


def headline_metrics(metrics: dict[str, Any], objective: ObjectiveSpec) -> dict[str, float]:
    """What a trial's MLflow run shows first: ``alpha`` (the objective's aggregate), ``alpha_error``
    and ``objective``; empty before the first spectral analysis."""
    terms = evaluate(metrics, objective)
    if not math.isfinite(terms[ALPHA_AGG]):
        return {}
    return {ReportKey.HEADLINE_ALPHA: terms[ALPHA_AGG], ALPHA_ERROR: terms[ALPHA_ERROR], OBJECTIVE: terms[OBJECTIVE]}


def _links(trainer: Any, logger: Any) -> dict[str, Any]:
    """What ties a result to its trial: model ``phase``, Ray ``node_id`` and ``mlflow_run_id``."""
    out: dict[str, Any] = {}
    snapshot = getattr(trainer, "spectral", None)
    if snapshot is not None and snapshot.rows:
        from htsweep.analysis.aggregate import model_phase

        out[ReportKey.PHASE] = model_phase(snapshot.rows)
    node_id = _node_id()
    if node_id:
        out["node_id"] = node_id
    run_id = getattr(logger, "run_id", None) if logger is not None else None
    if run_id:
        out["mlflow_run_id"] = run_id
    return out


def _node_id() -> str | None:
    """The Ray node this trial runs on (tells the nodes of a one-machine test cluster apart)."""
    try:
        import ray

        return ray.get_runtime_context().get_node_id() if ray.is_initialized() else None
    except Exception:  # noqa: BLE001 - informational only
        return None


def train_trial(config: dict[str, Any], ctx: TrialContext) -> None:
    """Ray Tune function trainable: train one configuration and report to Tune.

    Parameters
    ----------
    config : dict
        The trial's hyperparameters (from the Optuna searcher).
    ctx : TrialContext
        Shared sweep settings (bound with ``tune.with_parameters``).
    """
    from htsweep.trainers.train import TrainConfig, Trainer

    if ctx.trainable is not None:
        _train_function(config, ctx)
        return
    train_config = TrainConfig.from_dict(merge_config(ctx.base, config))
    monitor, logger = _monitor_and_logger(config, ctx, params=config)
    callbacks: list[Callback] = [monitor, *([logger] if logger is not None else []),
                                 TuneReporter(ctx.objective, logger=logger)]

    trainer = Trainer(train_config, callbacks=callbacks)
    checkpoint = tune.get_checkpoint()
    try:
        if checkpoint is None:
            trainer.fit()
        else:
            with checkpoint.as_directory() as path:
                trainer.fit(resume_from=Path(path) / CHECKPOINT_FILE)
    except FloatingPointError as exc:
        # Divergence is an outcome of the hyperparameters, not a fault to retry: report it as the
        # worst feasible-less result so the sampler learns to avoid the region.
        tune.report(diverged_result(trainer, ctx.objective, str(exc), logger=logger))


def _monitor_and_logger(config: dict[str, Any], ctx: TrialContext, *, params: dict[str, Any]) -> tuple[Any, Any]:
    """The trial's spectral monitor (on the shared ESD actor when the sweep has one) and its MLflow
    logger (None without tracking; ``params`` become the run's params): the same for the built-in
    trainer and the user's loop."""
    from htsweep.trainers.monitor import SpectralMonitor

    tune_ctx = tune.get_context()
    trial_id = tune_ctx.get_trial_id() or "local"
    analyzer = None
    if ctx.esd_name:
        from htsweep.services.esd_actor import ActorAnalyzer

        analyzer = ActorAnalyzer.by_name(ctx.esd_name, namespace=ctx.esd_namespace)
    logger = None
    if ctx.tracking is not None:
        from htsweep.sweeps.trial_logger import MlflowTrialLogger

        logger = MlflowTrialLogger(ctx.tracking, trial_id=trial_id, params=params, parent_run_id=ctx.parent_run_id,
                                   run_name=tune_ctx.get_trial_name() or trial_id,
                                   tags={"trial_name": tune_ctx.get_trial_name() or "", **ctx.extra_tags},
                                   headline=functools.partial(headline_metrics, objective=ctx.objective))
    return SpectralMonitor(analyzer, conv=ctx.conv, farms=ctx.farms, farms_windows=ctx.farms_windows,
                           tail_law=ctx.tail_law), logger


def _train_function(config: dict[str, Any], ctx: TrialContext) -> None:
    """One trial of the user's own loop: ``train(settings, session)`` (``sweeps.session``)."""
    from htsweep.sweeps.session import TrialSession
    from htsweep.trainers.user_code import resolve

    train = resolve(ctx.trainable, field="trainable")
    settings = merge_config(ctx.base, config)
    tune_ctx = tune.get_context()
    monitor, logger = _monitor_and_logger(config, ctx, params=settings)  # the loop's settings are its params
    session = TrialSession(copy.deepcopy(settings), objective=ctx.objective,
                           trial_id=tune_ctx.get_trial_id() or "local",
                           trial_dir=Path(tune_ctx.get_trial_dir() or tempfile.mkdtemp(prefix="htsweep-trial-")),
                           device=_device(), monitor=monitor, logger=logger,
                           reporter=TuneReporter(ctx.objective, logger=logger))
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as path:
            session.restore(Path(path))
    view = session.trainer_view
    if logger is not None:
        logger.on_fit_start(view, None)
    try:
        with session:
            train(settings, session)
        session.finish()
    except FloatingPointError as exc:  # diverged: an outcome of the hyperparameters, as in the built-in loop
        if logger is not None:
            logger.on_exception(view, exc)
        tune.report(diverged_result(view, ctx.objective, str(exc), logger=logger))
        return
    except BaseException as exc:
        if logger is not None:
            logger.on_exception(view, exc)
        raise
    if logger is not None:
        logger.on_fit_end(view, None)


def _device() -> str:
    """``"cuda"`` when Ray gave this trial a GPU (share), else ``"cpu"``."""
    try:
        import ray

        return "cuda" if ray.is_initialized() and ray.get_gpu_ids() else "cpu"
    except Exception:  # noqa: BLE001 - outside a Ray worker
        return "cpu"


def diverged_result(trainer: Any, objective: ObjectiveSpec, message: str, *, logger: Any = None) -> dict[str, Any]:
    """The final result of a trial whose loss became non-finite (objective: twice the penalty).

    Carries the same links as every other report (``mlflow_run_id`` from ``logger``, ``node_id``,
    and ``phase`` of the last spectral snapshot), so status and report still find the trial's run.
    """
    terms = evaluate({}, objective)
    terms.update({OBJECTIVE: 2.0 * objective.penalty, ALPHA_ERROR: 2.0 * objective.penalty, FEASIBLE: 0.0})
    return {ReportKey.STEP: int(getattr(trainer, "step", 0)), "diverged": 1.0, "error": message[:200], **terms,
            **_links(trainer, logger)}

