"""Warm start: a new sweep's Optuna study begins with the finished trials of earlier sweeps.

``htsweep run SPEC --warm-start DIR`` reads every completed, fully trained trial of the sweep in
``DIR``, recomputes its objective for the new spec's target alpha, accuracy floor and aggregate
from what MLflow logged (:func:`sweeps.retarget.retarget`, the code ``htsweep best --target-alpha``
uses), and adds it to the new study as a finished trial (``study.add_trial``), with the accuracy
floor as Optuna's constraint exactly as :class:`sweeps.search.ResumableOptunaSearch` records a
trial it ran. The sampler therefore starts informed (TPE's and the GP's start-up trials count
them), and the searcher never trains a configuration one of them already measured (it records
such a proposal as skipped and asks again). Each added trial carries its provenance as user
attributes: :data:`FROM` (the earlier sweep's directory) and :data:`FROM_TRIAL` (its trial number
there); its MLflow run stays in that sweep's tracking store (:func:`sweeps.trial_data.run_client`).

Only sweeps that measured the same thing can warm-start another: the same searched parameters,
each of the same kind (categorical, float, int), and the same fixed training settings (model,
dataset or own loop, steps, optimizer ..., how conv layers are analyzed; the seed and the
monitoring cadence may differ). Anything else is a one-line :class:`~sweeps.spec.SpecError`
naming the parameter or setting. Trials whose values lie outside the new search space are left
out, and the message says how many.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from htsweep.analysis.metric_names import ReportKey
from htsweep.sweeps.objective import ALPHA_AGG, ALPHA_ERROR, FEASIBLE, OBJECTIVE, TEST_ERROR, metric_and_mode
from htsweep.sweeps.spec import SpecError, SweepSpec

__all__ = ["FROM", "FROM_TRIAL", "SKIPPED", "WarmTrial", "add_warm_trials", "check_compatible", "load_warm_trials",
           "warm_source"]

log = logging.getLogger(__name__)

#: User attribute of a warm-started trial: the directory of the sweep that measured it.
FROM = "warm_start_from"
#: User attribute of a warm-started trial: its Optuna trial number in that sweep.
FROM_TRIAL = "warm_start_trial"
#: User attribute of a proposal the searcher did not train (FAIL state): which trial measured it.
SKIPPED = "skipped"

#: Fixed settings that may differ between the sweeps: they do not change what a trial measures.
_FREE_SETTINGS = frozenset({"seed", "eval_every", "spectral_every", "threads", "device"})
#: Attributes of the earlier trial carried over as they are (the objective terms are recomputed).
_CARRIED = (ReportKey.ALPHA_MEAN, ReportKey.TRAIN_ACC, ReportKey.TEST_LOSS, ReportKey.TEST_R2, ReportKey.PHASE_CODE,
            ReportKey.PHASE, ReportKey.STEP, "trained", "mlflow_run_id", "diverged")


@dataclass(frozen=True)
class WarmTrial:
    """One finished trial of an earlier sweep, under the new sweep's objective.

    Attributes
    ----------
    source : str
        The earlier sweep's directory.
    number : int
        Its Optuna trial number there.
    params : dict
    terms : dict of str to float
        :func:`sweeps.objective.evaluate` terms of its final report under the new objective, and ``test_acc``.
    attrs : dict
        The earlier trial's user attributes kept as they are (phase, step, MLflow run id ...).
    """

    source: str
    number: int
    params: dict[str, Any]
    terms: dict[str, float]
    attrs: dict[str, Any]


def _kind(dist: Any) -> str:
    return type(dist).__name__.removesuffix("Distribution").lower()


def check_compatible(new: SweepSpec, old: SweepSpec, source: str) -> None:
    """Raise a one-line ``SpecError`` when ``old``'s trials do not measure what ``new`` searches.

    Parameters
    ----------
    new, old : SweepSpec
        The spec to run and the earlier sweep's.
    source : str
        The earlier sweep's directory, for the message.
    """
    from htsweep.sweeps.search import search_space
    from htsweep.sweeps.trainable import train_config_dict

    new_space, old_space = search_space(new), search_space(old)
    for name in new_space:
        if name not in old_space:
            raise SpecError(f"--warm-start {source}: search.{name} is not searched there; its trials cannot "
                            "warm-start this sweep")
    for name in old_space:
        if name not in new_space:
            raise SpecError(f"--warm-start {source}: search.{name} is searched there but not here")
        if _kind(old_space[name]) != _kind(new_space[name]):
            raise SpecError(f"--warm-start {source}: search.{name} is {_kind(old_space[name])} there and "
                            f"{_kind(new_space[name])} here")
    fixed_new = {**train_config_dict(new), "trainable": new.trainable, "monitor.conv": new.monitor.conv}
    fixed_old = {**train_config_dict(old), "trainable": old.trainable, "monitor.conv": old.monitor.conv}
    for key in sorted(set(fixed_new) | set(fixed_old)):
        if key in _FREE_SETTINGS or key in new_space or key.split(".")[0] in new_space:
            continue
        a, b = fixed_old.get(key), fixed_new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):  # model_kwargs: searched sub-keys may differ
            a = {k: v for k, v in a.items() if f"{key}.{k}" not in new_space}
            b = {k: v for k, v in b.items() if f"{key}.{k}" not in new_space}
        if a != b:
            raise SpecError(f"--warm-start {source}: its trials ran with {key}={a!r}, this spec sets {key}={b!r}; "
                            "their measurements do not apply here")


def load_warm_trials(spec: SweepSpec, sources: Sequence[str | Path]) -> list[WarmTrial]:
    """The finished trials of the sweeps in ``sources``, re-evaluated under ``spec.objective``.

    Raises
    ------
    SpecError
        A directory holds no sweep, or its search space or fixed settings differ (one line).
    """
    from htsweep.sweeps.retarget import retarget
    from htsweep.sweeps.search import search_space
    from htsweep.sweeps.status import load_trials

    space = search_space(spec)
    out: dict[tuple[str, int], WarmTrial] = {}
    for src in sources:
        path = str(Path(src).resolve())
        meta, old, rows = load_trials(path)
        check_compatible(spec, old, str(src))
        by_number = {r.number: r for r in rows}
        kept = outside = 0
        for t in retarget(meta, rows, spec.objective):
            if not all(space[n]._contains(space[n].to_internal_repr(t.params[n])) for n in space):
                outside += 1
                continue
            attrs = by_number[t.number].attrs
            # a trial that sweep was itself warm-started with keeps the sweep that trained it
            where = (str(attrs.get(FROM, path)), int(attrs.get(FROM_TRIAL, t.number)))
            out[where] = WarmTrial(source=where[0], number=where[1], params=t.params, terms=t.final,
                                   attrs={k: v for k, v in attrs.items() if k in _CARRIED})
            kept += 1
        log.warning("warm start: %d finished trial(s) of %s%s", kept, src,
                    f"; {outside} left out: outside this search space" if outside else "")
    return list(out.values())


def add_warm_trials(study: Any, spec: SweepSpec, trials: Sequence[WarmTrial]) -> int:
    """Add ``trials`` to ``study`` as finished trials with the values the searcher would have told.

    Single objective: ``|alpha - target|`` with the accuracy floor as Optuna's constraint, or the
    objective without a floor; multi-objective: ``(alpha_error, test_error)``. Returns how many.
    """
    import optuna

    from htsweep.sweeps.search import CONSTRAINT, USER_ATTRS, accuracy_constraint, search_space

    space = search_space(spec)
    metric, _ = metric_and_mode(spec.objective)
    floor = None if spec.objective.multi_objective else spec.objective.min_test_accuracy
    frozen = []
    for t in trials:
        terms = t.terms
        attrs = {**t.attrs, **{k: float(terms[k]) for k in (ALPHA_AGG, ALPHA_ERROR, TEST_ERROR, FEASIBLE, OBJECTIVE,
                                                           ReportKey.TEST_ACC)
                               if k in USER_ATTRS and math.isfinite(terms[k])},
                 FROM: t.source, FROM_TRIAL: t.number}
        if isinstance(metric, list):
            values, constraints = [float(terms[m]) for m in metric], None
        elif floor is not None:
            values = [float(terms[ALPHA_ERROR])]
            constraints = {CONSTRAINT: accuracy_constraint({ReportKey.TEST_ACC: terms[ReportKey.TEST_ACC]}, floor)}
        else:
            values, constraints = [float(terms[OBJECTIVE])], None
        frozen.append(optuna.trial.create_trial(params=t.params, distributions=space, values=values,
                                                user_attrs=attrs, constraints=constraints))
    study.add_trials(frozen)
    return len(frozen)


def warm_source(attrs: dict[str, Any]) -> str | None:
    """``<sweep dir name> #<trial>`` for a warm-started trial's user attributes, else None."""
    if FROM not in attrs:
        return None
    return f"{Path(str(attrs[FROM])).name} #{attrs.get(FROM_TRIAL, '?')}"
