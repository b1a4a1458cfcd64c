"""Search space, Optuna sampler and searcher, scheduler: built from a :class:`~sweeps.spec.SweepSpec`.

The search space is data — a mapping from parameter name to an Optuna distribution — built apart
from the trainable. :class:`ResumableOptunaSearch` is Ray Tune's ``OptunaSearch`` made safe for
restarts (see ``shared/STACK_NOTES.md``): after a hard kill Tune may re-run a trial that the sqlite
study already finished, and Optuna then raises ``UpdateFinishedTrialError``; this subclass logs and
ignores it. It also records, on each Optuna trial, the Tune trial id and the final alpha, phase and
accuracy as user attributes, so the study alone can answer ``htsweep status``. It lives in an
importable module because Tune pickles the searcher into its experiment state and unpickles it on
``Tuner.restore``.
"""

from __future__ import annotations

import logging
import math
import warnings
from typing import Any

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState
from ray.tune.schedulers import ASHAScheduler, TrialScheduler
from ray.tune.search import ConcurrencyLimiter
from ray.tune.search.optuna import OptunaSearch

from sweeps.objective import ALPHA_AGG, FEASIBLE, TEST_ERROR
from sweeps.spec import Choice, Grid, IntRange, LogUniform, SweepSpec, Uniform
from sweeps.workdir import load_optuna_study, open_optuna_storage

__all__ = [
    "search_space",
    "make_sampler",
    "make_searcher",
    "make_scheduler",
    "ResumableOptunaSearch",
    "AskTellGridSampler",
    "optuna_storage_url",
    "fail_stale_trials",
    "USER_ATTRS",
]

logger = logging.getLogger(__name__)

#: Result keys copied onto each finished Optuna trial as user attributes.
USER_ATTRS = (ALPHA_AGG, "alpha_mean", "test_acc", "train_acc", "test_loss", "test_r2", TEST_ERROR, FEASIBLE,
              "phase_code", "phase", "step", "trained", "mlflow_run_id", "node_id", "diverged", "error")


def search_space(spec: SweepSpec) -> dict[str, BaseDistribution]:
    """The Optuna distributions of the spec's search space.

    Parameters
    ----------
    spec : SweepSpec

    Returns
    -------
    dict of str to optuna.distributions.BaseDistribution
        One entry per searched field, keyed as in the spec (``lr``, ``model_kwargs.width``).
    """
    space: dict[str, BaseDistribution] = {}
    for name, dom in spec.search.items():
        if isinstance(dom, Choice | Grid):
            space[name] = CategoricalDistribution(tuple(dom.values))
        elif isinstance(dom, LogUniform):
            space[name] = FloatDistribution(dom.low, dom.high, log=True)
        elif isinstance(dom, Uniform):
            space[name] = FloatDistribution(dom.low, dom.high)
        elif isinstance(dom, IntRange):
            space[name] = IntDistribution(dom.low, dom.high, log=dom.log)
        else:  # pragma: no cover - the spec's discriminated union is exhaustive
            raise TypeError(f"search.{name}: unsupported domain {dom!r}")
    return space


def make_sampler(spec: SweepSpec) -> optuna.samplers.BaseSampler:
    """The Optuna sampler named by ``spec.sampler`` (TPE by default, NSGA-II when multi-objective).

    Parameters
    ----------
    spec : SweepSpec

    Returns
    -------
    optuna.samplers.BaseSampler
    """
    kind, seed = spec.sampler_type, spec.seed
    if kind == "tpe":
        return optuna.samplers.TPESampler(n_startup_trials=spec.sampler.n_startup_trials, seed=seed)
    if kind == "nsga2":
        return optuna.samplers.NSGAIISampler(population_size=spec.sampler.population_size, seed=seed)
    if kind == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if kind == "qmc":
        with warnings.catch_warnings():  # "QMCSampler is experimental": a notice, not a problem
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.QMCSampler(seed=seed, warn_independent_sampling=False)
    if kind == "grid":
        grid = {name: list(dom.values) for name, dom in spec.search.items() if isinstance(dom, Grid)}
        return AskTellGridSampler(grid, seed=seed)
    raise ValueError(f"sampler.type: unknown sampler {kind!r}")  # pragma: no cover


class AskTellGridSampler(optuna.samplers.GridSampler):
    """``GridSampler`` for ask/tell use: it does not call ``study.stop()`` when the grid is exhausted.

    (``Study.stop`` only works inside ``study.optimize``; Tune stops after ``num_samples``.)
    """

    def after_trial(self, study, trial, state, values) -> None:  # noqa: D102 - see class docstring
        return None


def optuna_storage_url(spec: SweepSpec, workdir: str) -> str:
    """``spec.optuna_storage`` or ``sqlite:///<workdir>/optuna.db``."""
    return spec.optuna_storage or f"sqlite:///{workdir}/optuna.db"


class ResumableOptunaSearch(OptunaSearch):
    """``OptunaSearch`` that survives restarts and annotates Optuna trials.

    Differences from the parent:

    * ``UpdateFinishedTrialError`` (a trial the study already finished, re-run by Tune after a hard
      kill of the driver) is logged and ignored instead of failing the sweep;
    * each Optuna trial gets the user attribute ``tune_trial_id`` when suggested, and the final
      alpha aggregate, accuracy, phase and feasibility when it completes.
    """

    def suggest(self, trial_id: str) -> dict | None:
        """Suggest a configuration and tag the Optuna trial with the Tune trial id."""
        config = super().suggest(trial_id)
        ot_trial = self._ot_trials.get(trial_id)
        if ot_trial is not None:
            try:
                ot_trial.set_user_attr("tune_trial_id", trial_id)
            except UpdateFinishedTrialError:
                pass
        return config

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        """Report an intermediate value, tolerating trials the study already finished."""
        if trial_id not in self._ot_trials:
            return
        metric = self.metric
        if isinstance(metric, str) and not _finite(result.get(metric)):
            return
        try:
            super().on_trial_result(trial_id, result)
        except UpdateFinishedTrialError:
            logger.info("Optuna already finished the trial of Tune trial %s; ignoring its result", trial_id)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        """Record user attributes, then tell Optuna the final value(s)."""
        ot_trial = self._ot_trials.get(trial_id)
        if ot_trial is None:
            logger.warning("Tune trial %s has no Optuna trial; not recorded in the study", trial_id)
            return
        if result:
            for key in USER_ATTRS:
                value = result.get(key)
                if isinstance(value, int | float | str | bool):
                    try:
                        ot_trial.set_user_attr(key, value)
                    except UpdateFinishedTrialError:
                        break
        try:
            super().on_trial_complete(trial_id, result=result, error=error)
        except UpdateFinishedTrialError:  # pragma: no cover - parent already logs tell() errors
            self._completed_trials.add(trial_id)


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def make_searcher(spec: SweepSpec, *, metric: str | list[str], mode: str | list[str], storage_url: str,
                  ) -> ConcurrencyLimiter:
    """The Optuna searcher on a persistent study, behind a concurrency limiter.

    Parameters
    ----------
    spec : SweepSpec
    metric, mode : str or list of str
        From :func:`sweeps.objective.metric_and_mode`.
    storage_url : str
        The Optuna RDB storage URL (``sqlite:///<workdir>/optuna.db`` by default).

    Returns
    -------
    ray.tune.search.ConcurrencyLimiter
        Wrapping a :class:`ResumableOptunaSearch` whose study is ``spec.name``.
    """
    storage = open_optuna_storage(storage_url)
    searcher = ResumableOptunaSearch(
        space=search_space(spec),
        metric=metric,
        mode=mode,
        sampler=make_sampler(spec),
        study_name=spec.name,
        storage=storage,
        seed=spec.seed,
    )
    return ConcurrencyLimiter(searcher, max_concurrent=spec.max_concurrent_trials)


def make_scheduler(spec: SweepSpec) -> TrialScheduler | None:
    """ASHA on the objective when ``spec.scheduler.type == "asha"``, else ``None`` (FIFO).

    The metric and mode come from the ``TuneConfig`` (stated once in the runner).
    """
    if spec.scheduler.type != "asha":
        return None
    return ASHAScheduler(
        time_attr="training_iteration",
        grace_period=spec.scheduler.grace_period,
        reduction_factor=spec.scheduler.reduction_factor,
        max_t=10_000,
    )


def fail_stale_trials(storage_url: str, study_name: str) -> int:
    """Mark RUNNING / WAITING trials of a study FAIL; returns how many.

    Run only when no trial of the sweep is running (at the end of a run or resume): such trials
    were orphaned by a hard kill of the driver, and Optuna cannot delete them.
    """
    try:
        study = load_optuna_study(study_name, storage_url)
    except KeyError:
        return 0
    storage = study._storage
    n = 0
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING)):
        try:
            storage.set_trial_user_attr(t._trial_id, "stale", "orphaned by an interrupted driver")
            storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
            n += 1
        except UpdateFinishedTrialError:
            pass
    return n
