"""Change the target without re-training: the objective of a finished sweep recomputed from what was logged.

Every trial's MLflow run holds the alpha aggregates (``alpha_mean``, ``alpha_median``,
``alpha_last``, ``alpha/<layer>``) at every monitored step and the test accuracy at every
evaluation. :func:`retarget` reads them back and evaluates another :class:`ObjectiveSpec` (target
alpha, accuracy floor, aggregate) with :func:`sweeps.objective.evaluate` — the function the
trainable reports with — on

* the trial's final report (the last logged value of each key, as the trainer carries the last
  analysis and evaluation into its final report), which gives the new feasibility, objective
  and best trial;
* each monitored step (the alpha of that analysis with the latest test accuracy at or before
  it), which gives the best step of each trial.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from htsweep.analysis.metric_names import ReportKey
from htsweep.sweeps.objective import ALPHA_ERROR, FEASIBLE, OBJECTIVE, alpha_keys, evaluate
from htsweep.sweeps.spec import ObjectiveSpec
from htsweep.sweeps.status import TrialRow
from htsweep.sweeps.workdir import SweepMeta

__all__ = ["Retargeted", "best_retargeted", "logged_steps", "print_retargeted", "retarget", "retarget_objective"]


@dataclass(frozen=True)
class Retargeted:
    """One finished trial under another objective.

    Attributes
    ----------
    number : int
        Optuna trial number.
    params : dict
    final : dict of str to float
        :func:`sweeps.objective.evaluate` terms of the final report (``alpha_agg``, ``alpha_error``,
        ``test_error``, ``feasible``, ``objective``) plus its ``test_acc``.
    best_step : int or None
        The monitored step with the lowest objective (ties: the later step); None without one.
    best_step_terms : dict of str to float
        Its terms (empty without a step).
    """

    number: int
    params: dict[str, Any]
    final: dict[str, float]
    best_step: int | None = None
    best_step_terms: dict[str, float] = field(default_factory=dict)

    @property
    def feasible(self) -> bool:
        """The final report meets the new accuracy floor."""
        return self.final[FEASIBLE] > 0


def logged_steps(client: Any, run_id: str, keys: list[str]) -> dict[str, dict[int, float]]:
    """``key → {step: value}`` of each logged metric history of ``run_id`` (missing keys: empty)."""
    return {k: {int(m.step): float(m.value) for m in client.get_metric_history(run_id, k)} for k in keys}


def _latest(series: dict[int, float], upto: int | None = None) -> float:
    steps = [s for s in series if upto is None or s <= upto]
    return series[max(steps)] if steps else math.nan


def _evaluate(hist: dict[str, dict[int, float]], objective: ObjectiveSpec, upto: int | None) -> dict[str, float]:
    """The objective terms from the latest logged value of each key at or before step ``upto``."""
    metrics = {k: _latest(hist[k], upto) for k in alpha_keys(objective)}
    acc = _latest(hist[ReportKey.TEST_ACC], upto)
    metrics[ReportKey.TEST_ACC] = acc
    return {**evaluate(metrics, objective), ReportKey.TEST_ACC: acc}


def retarget(meta: SweepMeta, rows: list[TrialRow], objective: ObjectiveSpec) -> list[Retargeted]:
    """Recompute the objective of every completed trial with an MLflow run, from its logged metrics.

    Parameters
    ----------
    meta, rows
        From :func:`sweeps.status.load_trials`.
    objective : ObjectiveSpec
        The new target alpha / accuracy floor / aggregate.

    Returns
    -------
    list of Retargeted
        In trial order; trials without a run or any logged alpha, and trials an early-stopping
        scheduler cut short (as in :func:`sweeps.status.best_trial`), are left out.
    """
    from htsweep.sweeps.trial_data import run_client

    clients: dict[str, Any] = {}
    logged = alpha_keys(objective)  # logged under the same (MLflow-legal) names
    out = []
    for r in rows:
        if not (r.complete and r.fully_trained and r.mlflow_run_id):
            continue
        hist = logged_steps(run_client(meta, r, clients), r.mlflow_run_id, [*logged, ReportKey.TEST_ACC])
        steps = sorted(set().union(*(hist[k] for k in logged)))
        if not steps:
            continue
        final = _evaluate(hist, objective, None)
        per_step = [(s, _evaluate(hist, objective, s)) for s in steps]
        best_step, best_terms = min(per_step, key=lambda st: (st[1][OBJECTIVE], -st[0]))
        out.append(Retargeted(number=r.number, params=dict(r.params), final=final, best_step=best_step,
                              best_step_terms=best_terms))
    return out


def best_retargeted(trials: list[Retargeted]) -> Retargeted | None:
    """The feasible trial with alpha closest to the new target (ties: higher accuracy), as ``best`` ranks."""
    ok = [t for t in trials if t.feasible and math.isfinite(t.final[ALPHA_ERROR])]
    if not ok:
        return None
    return min(ok, key=lambda t: (t.final[ALPHA_ERROR], -_acc(t), t.number))


def _acc(t: Retargeted) -> float:
    acc = t.final[ReportKey.TEST_ACC]
    return acc if math.isfinite(acc) else -1.0


def retarget_objective(base: ObjectiveSpec, *, target_alpha: float | None = None,
                       min_test_accuracy: float | None = None, aggregate: str | None = None) -> ObjectiveSpec:
    """``base`` with the given fields replaced, validated (a one-line ``SpecError`` when invalid)."""
    from pydantic import ValidationError

    from htsweep.sweeps.spec import SpecError

    data = base.model_dump()
    data["multi_objective"] = False  # a target and a floor: the constrained form
    for key, value in (("target_alpha", target_alpha), ("min_test_accuracy", min_test_accuracy),
                       ("aggregate", aggregate)):
        if value is not None:
            data[key] = value
    if data["aggregate"] != "layers":
        data["layers"] = None
    try:
        return ObjectiveSpec(**data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err.get("loc", ())) or "objective"
        raise SpecError(f"{where}: {err['msg']}") from None


def print_retargeted(workdir: Any = None, objective_changes: dict[str, Any] | None = None, *,
                     console: Any = None) -> Retargeted | None:
    """Print every finished trial under the changed objective, its best monitored step, and the best trial."""
    from rich.table import Table

    from htsweep.sweeps.status import _fmt, format_params, load_trials, make_console
    from htsweep.sweeps.workdir import find_workdir

    console = console or make_console()
    meta, spec, rows = load_trials(find_workdir(workdir))
    objective = retarget_objective(spec.objective, **(objective_changes or {}))
    trials = retarget(meta, rows, objective)
    best = best_retargeted(trials)
    floor = "" if objective.min_test_accuracy is None else f", test acc >= {objective.min_test_accuracy:g}"
    table = Table(title=f"{meta.name} re-targeted: alpha ({objective.aggregate}) -> {objective.target_alpha:g}{floor} "
                  f"(recomputed from the logged metrics; nothing re-trained)", header_style="bold")
    for name, justify in (("#", "right"), *((n, "right") for n in spec.search), ("alpha", "right"),
                          ("|a-target|", "right"), ("test acc", "right"), ("objective", "right"),
                          ("best step", "right"), ("its alpha / acc", "right")):
        table.add_column(name, justify=justify)
    for t in trials:
        acc = _fmt(t.final[ReportKey.TEST_ACC])
        s = t.best_step_terms
        table.add_row(f"{t.number}{' *' if best is not None and t.number == best.number else ''}",
                      *[_fmt(t.params.get(n)) for n in spec.search], _fmt(t.final["alpha_agg"]),
                      _fmt(t.final[ALPHA_ERROR]), acc if t.feasible else f"[red]{acc}[/red]",
                      _fmt(t.final[OBJECTIVE]), str(t.best_step),
                      f"{_fmt(s.get('alpha_agg'))} / {_fmt(s.get(ReportKey.TEST_ACC))}")
    console.print(table)
    if best is None:
        console.print("[yellow]no finished trial meets the new objective's accuracy floor[/yellow]")
    else:
        console.print(f"best: trial #{best.number} ({format_params(best.params)}): alpha "
                      f"{_fmt(best.final['alpha_agg'])}, test acc {_fmt(best.final[ReportKey.TEST_ACC])}; "
                      f"its best monitored step {best.best_step} (alpha {_fmt(best.best_step_terms['alpha_agg'])})")
    return best
