"""Search space, Optuna sampler and searcher, scheduler: built from a :class:`~sweeps.spec.SweepSpec`.

The search space is data — a mapping from parameter name to an Optuna distribution — built apart
from the trainable. :class:`ResumableOptunaSearch` is Ray Tune's ``OptunaSearch`` made safe for
restarts (see ``shared/STACK_NOTES.md``): after a hard kill Tune may re-run a trial that the sqlite
study already finished, and Optuna then raises ``UpdateFinishedTrialError``; this subclass logs and
ignores it. It never drops a finished value: ``study.tell`` is retried while sqlite reports a lock,
any other failure is logged as an error (Ray's ``OptunaSearch`` swallows it as a warning), and the
value is kept in ``<workdir>/optuna_pending.jsonl`` until :func:`tell_pending` records it at the
end of the sweep. It also records, on each Optuna trial, the Tune trial id and the final alpha,
phase and accuracy as user attributes, so the study alone can answer ``htsweep status``. It lives
in an importable module because Tune pickles the searcher into its experiment state and unpickles
it on ``Tuner.restore``.

With an accuracy floor (``objective.min_test_accuracy``), every finished trial also gets Optuna's
constraint ``min_test_accuracy - test_acc`` (feasible when ≤ 0, the system attribute that
``Trial.set_constraint`` writes), which constrained TPE, NSGA-II and the GP sampler model as a
constraint; Optuna then receives ``|alpha - target|`` itself, not the penalized objective (whose
cliff a GP would have to fit). Tune, ASHA and ``htsweep best`` still rank trials by the penalized
objective, which is kept on the trial as the user attribute ``objective``. Constraints and values
live in the study, so a resumed sweep's sampler sees them as before.
"""

from __future__ import annotations

import json
import logging
import math
import time
import warnings
from pathlib import Path
from typing import Any

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.exceptions import UpdateFinishedTrialError
from optuna.study._constrained_optimization import _CONSTRAINTS_KEY
from optuna.trial import TrialState
from ray.tune.schedulers import ASHAScheduler, TrialScheduler
from ray.tune.search import ConcurrencyLimiter, Searcher
from ray.tune.search.optuna import OptunaSearch

from htsweep.analysis.metric_names import ReportKey
from htsweep.sweeps.objective import ALPHA_AGG, ALPHA_ERROR, FEASIBLE, OBJECTIVE, TEST_ERROR
from htsweep.sweeps.spec import Choice, Grid, IntRange, LogUniform, SweepSpec, Uniform
from htsweep.sweeps.warm_start import FROM, SKIPPED, warm_source
from htsweep.sweeps.workdir import load_optuna_study, open_optuna_storage

__all__ = [
    "search_space",
    "make_sampler",
    "make_searcher",
    "make_scheduler",
    "ResumableOptunaSearch",
    "AskTellGridSampler",
    "optuna_storage_url",
    "fail_stale_trials",
    "tell_pending",
    "optuna_outcomes",
    "USER_ATTRS",
    "PENDING_FILE",
    "CONSTRAINT",
    "accuracy_constraint",
]

logger = logging.getLogger(__name__)

#: Finished values Optuna could not record yet (one JSON object per line), in the sweep directory.
PENDING_FILE = "optuna_pending.jsonl"
#: How long ``study.tell`` keeps retrying while the sqlite store is locked by another writer.
TELL_RETRY_S = 30.0

#: Result keys copied onto each finished Optuna trial as user attributes.
USER_ATTRS = (ALPHA_AGG, ReportKey.ALPHA_MEAN, ReportKey.TEST_ACC, ReportKey.TRAIN_ACC, ReportKey.TEST_LOSS,
              ReportKey.TEST_R2, TEST_ERROR, FEASIBLE, ReportKey.PHASE_CODE, ReportKey.PHASE, ReportKey.STEP,
              OBJECTIVE, "trained", "mlflow_run_id", "node_id", "diverged", "error")

#: Proposals in a row that earlier sweeps already measured before the searcher stops asking.
MAX_SKIPS = 20

#: Name of the Optuna constraint (``constraints:<name>`` system attribute) of the accuracy floor.
CONSTRAINT = "min_test_accuracy"


def accuracy_constraint(result: dict | None, min_test_accuracy: float | None) -> float | None:
    """Optuna's constraint value of a finished trial: ``min_test_accuracy - test_acc`` (≤ 0: feasible).

    A trial without a test accuracy (diverged, failed before evaluating) counts as accuracy 0.
    ``None`` when the sweep has no floor.

    Examples
    --------
    >>> accuracy_constraint({"test_acc": 0.95}, 0.9) < 0, accuracy_constraint({}, 0.9)
    (True, 0.9)
    """
    if min_test_accuracy is None:
        return None
    acc = (result or {}).get(ReportKey.TEST_ACC)
    acc = float(acc) if _finite(acc) else 0.0
    return float(min_test_accuracy) - acc


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
    """The Optuna sampler named by ``spec.sampler_type`` (see :attr:`sweeps.spec.SweepSpec.sampler_type`).

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
    if kind == "gp":
        with warnings.catch_warnings():  # experimental-feature notices, not problems
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.GPSampler(n_startup_trials=spec.sampler.n_startup_trials, seed=seed)
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

    def suggest(self, trial_id: str) -> dict | str | None:
        """Suggest a configuration and tag the Optuna trial with the Tune trial id.

        A proposal that a warm-start trial already measured (:mod:`sweeps.warm_start`) is not
        trained: its Optuna trial is closed FAIL with the user attribute ``skipped`` naming that
        trial, and the sampler is asked again (up to :data:`MAX_SKIPS` times in a row; then the
        sweep stops asking: the space holds nothing new for it).
        """
        for _ in range(MAX_SKIPS):
            config = super().suggest(trial_id)
            ot_trial = self._ot_trials.get(trial_id)
            if ot_trial is None:
                return config
            measured = self._measured().get(_params_key(ot_trial.params))
            if measured is None:
                try:
                    ot_trial.set_user_attr("tune_trial_id", trial_id)
                except UpdateFinishedTrialError:
                    pass
                return config
            logger.info("Optuna proposed %s, already measured by %s; asking again", ot_trial.params, measured)
            _retry_locked(lambda n=ot_trial.number, m=measured: _tell(
                self._ot_study, n, None, TrialState.FAIL, {SKIPPED: f"already measured: {m}"}))
            del self._ot_trials[trial_id]
        logger.warning("Optuna proposed %d configurations in a row that earlier sweeps already measured; "
                       "no new trials are started", MAX_SKIPS)
        return Searcher.FINISHED

    def _measured(self) -> dict[tuple, str]:
        """Params → ``<sweep> #<trial>`` of the study's warm-start trials (read once, when first needed)."""
        if getattr(self, "_warm", None) is None:
            self._warm = {_params_key(t.params): warm_source(t.user_attrs)
                          for t in self._ot_study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                          if FROM in t.user_attrs}
        return self._warm

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
        """Record user attributes, then tell Optuna the final value(s); a value is never dropped."""
        if trial_id in self._completed_trials:
            return
        ot_trial = self._ot_trials.get(trial_id)
        if ot_trial is None:
            logger.warning("Tune trial %s has no Optuna trial; not recorded in the study", trial_id)
            return
        attrs = {k: v for k, v in (result or {}).items() if k in USER_ATTRS and isinstance(v, int | float | str | bool)}
        values, state = self._final_values(result, error)
        floor = getattr(self, "_min_test_accuracy", None)
        constraint = accuracy_constraint(result, floor) if state != TrialState.FAIL else None
        if constraint is not None and values is not None and _finite((result or {}).get(ALPHA_ERROR)):
            values = float(result[ALPHA_ERROR])  # the floor is the constraint: no penalty cliff to model
        try:
            _retry_locked(lambda: _tell(self._ot_study, ot_trial.number, values, state, attrs, constraint))
        except UpdateFinishedTrialError:
            logger.info("Optuna already finished the trial of Tune trial %s; keeping its first value", trial_id)
        except Exception as exc:  # noqa: BLE001 - surfaced, and the value is kept for later
            logger.error("Optuna could not record the result of Tune trial %s (trial #%d): %s; kept in %s and "
                         "recorded at the end of the sweep", trial_id, ot_trial.number, exc, self.pending_path)
            _append_pending(self.pending_path, {"study": self._ot_study.study_name, "number": ot_trial.number,
                                                "values": values, "state": state.name, "attrs": attrs,
                                                "constraint": constraint, "error": str(exc)[:500]})
        self._completed_trials.add(trial_id)

    def _final_values(self, result: dict | None, error: bool) -> tuple[Any, TrialState]:
        """What Ray's ``OptunaSearch`` would tell: the metric value(s), or FAIL / PRUNED without one."""
        metric = self.metric
        val = None
        if result:
            val = [result.get(m) for m in metric] if isinstance(metric, list) else result.get(metric)
            if isinstance(val, list) and any(v is None for v in val):
                val = None
        if val is None:
            return None, TrialState.FAIL if error else TrialState.PRUNED
        return val, TrialState.COMPLETE

    @property
    def pending_path(self) -> Path | None:
        """Where finished values wait when the study cannot take them (None: in memory only)."""
        return Path(self._pending_dir) / PENDING_FILE if getattr(self, "_pending_dir", None) else None


def _tell(study: optuna.Study, number: int, values: Any, state: TrialState, attrs: dict[str, Any],
          constraint: float | None = None) -> None:
    """Set the user attributes and the constraint, then finish trial ``number`` with ``values``
    (or ``state`` without); the sampler's ``after_trial`` then sees the constraint."""
    storage = study._storage
    trial_id = storage.get_trial_id_from_study_id_trial_number(study._study_id, number)
    for key, value in attrs.items():
        storage.set_trial_user_attr(trial_id, key, value)
    if constraint is not None and f"{_CONSTRAINTS_KEY}:{CONSTRAINT}" not in storage.get_trial_system_attrs(trial_id):
        optuna.Trial(study, trial_id).set_constraint(CONSTRAINT, constraint)
    if values is None:
        study.tell(number, state=state)
    else:
        study.tell(number, values)


def _is_locked(exc: BaseException | None) -> bool:
    """Whether ``exc`` (or what caused it: Optuna wraps sqlalchemy errors) is sqlite's lock timeout."""
    seen = 0
    while exc is not None and seen < 10:
        if "database is locked" in str(exc) or "database table is locked" in str(exc):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def _retry_locked(call: Any, *, budget_s: float | None = None) -> Any:
    """``call()``, retried with a growing wait while sqlite says another writer holds the lock
    (for up to ``budget_s``, default :data:`TELL_RETRY_S`)."""
    deadline = time.monotonic() + (TELL_RETRY_S if budget_s is None else budget_s)
    wait = 0.05
    while True:
        try:
            return call()
        except Exception as exc:
            if not _is_locked(exc) or time.monotonic() + wait > deadline:
                raise
            logger.info("Optuna storage locked; retrying in %.2f s", wait)
            time.sleep(wait)
            wait = min(wait * 2, 2.0)


def _append_pending(path: Path | None, record: dict[str, Any]) -> None:
    if path is None:
        return
    with open(path, "a") as fh:
        fh.write(json.dumps(record) + "\n")


def tell_pending(workdir: str | Path, storage_url: str) -> int:
    """Record the finished values the searcher could not (``optuna_pending.jsonl``); returns how many.

    Called at the end of a sweep, before stale trials are marked FAIL. What still fails stays in
    the file for the next resume.
    """
    path = Path(workdir) / PENDING_FILE
    if not path.exists():
        return 0
    done, keep = 0, []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        rec = json.loads(line)
        try:
            study = load_optuna_study(rec["study"], storage_url)
            _retry_locked(lambda rec=rec, study=study: _tell(study, rec["number"], rec["values"],
                                                             TrialState[rec["state"]], rec["attrs"],
                                                             rec.get("constraint")))
            done += 1
        except UpdateFinishedTrialError:
            done += 1
        except Exception as exc:  # noqa: BLE001 - kept for the next attempt
            logger.error("Optuna trial #%s still cannot be recorded: %s", rec.get("number"), exc)
            keep.append(line)
    if keep:
        path.write_text("\n".join(keep) + "\n")
    else:
        path.unlink()
    return done


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def _params_key(params: dict[str, Any]) -> tuple:
    return tuple(sorted(params.items()))


def make_searcher(spec: SweepSpec, *, metric: str | list[str], mode: str | list[str], storage_url: str,
                  study_name: str | None = None, pending_dir: str | Path | None = None) -> ConcurrencyLimiter:
    """The Optuna searcher on a persistent study, behind a concurrency limiter.

    Parameters
    ----------
    spec : SweepSpec
    metric, mode : str or list of str
        From :func:`sweeps.objective.metric_and_mode`.
    storage_url : str
        The Optuna RDB storage URL (``sqlite:///<workdir>/optuna.db`` by default).
    study_name : str, optional
        Default ``spec.name``.
    pending_dir : path-like, optional
        Where finished values wait when the study cannot take them (the sweep directory).

    Returns
    -------
    ray.tune.search.ConcurrencyLimiter
        Wrapping a :class:`ResumableOptunaSearch` on the study ``study_name``.
    """
    storage = open_optuna_storage(storage_url)
    searcher = ResumableOptunaSearch(
        space=search_space(spec),
        metric=metric,
        mode=mode,
        sampler=make_sampler(spec),
        study_name=study_name or spec.name,
        storage=storage,
        seed=spec.seed,
    )
    searcher._pending_dir = str(pending_dir) if pending_dir is not None else None
    searcher._min_test_accuracy = None if spec.objective.multi_objective else spec.objective.min_test_accuracy
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


def optuna_outcomes(storage_url: str, study_name: str) -> dict[str, str]:
    """Tune trial id → how its Optuna trial ended: ``COMPLETE``, ``PRUNED``, ``FAIL``, ``STALE`` (a FAIL
    :func:`fail_stale_trials` set) or ``RUNNING``. A COMPLETE trial wins over other records of the same id."""
    try:
        study = load_optuna_study(study_name, storage_url)
    except KeyError:
        return {}
    rank = {"COMPLETE": 3, "PRUNED": 2, "STALE": 1, "FAIL": 1, "RUNNING": 0, "WAITING": 0}
    out: dict[str, str] = {}
    for t in study.get_trials(deepcopy=False):
        tune_id = t.user_attrs.get("tune_trial_id")
        if not tune_id:
            continue
        state = "STALE" if t.state == TrialState.FAIL and "stale" in t.user_attrs else t.state.name
        if rank.get(state, 0) >= rank.get(out.get(tune_id, ""), -1):
            out[tune_id] = state
    return out
