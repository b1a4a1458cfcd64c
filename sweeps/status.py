"""``htsweep status`` / ``htsweep best``: the trials of a sweep, read from its Optuna study.

The study is the source of truth for which trials exist and their state. Each finished trial
carries, as user attributes written by :class:`sweeps.search.ResumableOptunaSearch`, its final
alpha aggregate, test accuracy, phase and MLflow run id; running trials show their latest
intermediate objective. ``best`` is the completed trial whose alpha is closest to the target
among the feasible ones (test accuracy at least ``objective.min_test_accuracy``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sweeps.spec import SweepSpec
from sweeps.workdir import SweepMeta, find_workdir, load_optuna_study

__all__ = ["TrialRow", "load_trials", "best_trial", "pareto_front", "trials_table", "print_status",
           "print_best", "format_params", "make_console"]


@dataclass(frozen=True)
class TrialRow:
    """One trial of a sweep.

    Attributes
    ----------
    number : int
        Optuna trial number (0-based, in order of creation).
    state : str
        ``COMPLETE``, ``RUNNING``, ``FAIL``, ``PRUNED`` or ``WAITING``.
    params : dict
        The searched hyperparameters.
    alpha : float
        The alpha aggregate the objective steers (NaN if unknown).
    alpha_error : float
        ``|alpha - target|`` (NaN if unknown).
    test_acc : float
        Final test accuracy (NaN if unknown).
    phase : str
        Model phase (``""`` if unknown).
    feasible : bool
        Test accuracy meets the constraint (True when there is none).
    values : tuple of float
        The objective value(s) Optuna received (empty while running).
    tune_trial_id, mlflow_run_id : str or None
        Links to the Ray Tune trial and MLflow run.
    """

    number: int
    state: str
    params: dict[str, Any]
    alpha: float = math.nan
    alpha_error: float = math.nan
    test_acc: float = math.nan
    phase: str = ""
    feasible: bool = True
    values: tuple[float, ...] = ()
    tune_trial_id: str | None = None
    mlflow_run_id: str | None = None
    attrs: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def complete(self) -> bool:
        """True when Optuna recorded a final value."""
        return self.state == "COMPLETE"

    @property
    def fully_trained(self) -> bool:
        """False when a scheduler (ASHA) stopped the trial before its last training step."""
        return bool(self.attrs.get("trained", True))


def _f(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _phase(attrs: dict[str, Any]) -> str:
    if attrs.get("diverged"):
        return "(diverged)"
    if isinstance(attrs.get("phase"), str):
        return attrs["phase"]
    code = attrs.get("phase_code")
    if isinstance(code, int | float) and math.isfinite(code):
        from analysis.phases import PHASES

        i = int(round(code))
        if 0 <= i < len(PHASES):
            return PHASES[i]
    return ""


def load_trials(workdir: str | Path) -> tuple[SweepMeta, SweepSpec, list[TrialRow]]:
    """Read the sweep's metadata, spec and Optuna trials.

    Parameters
    ----------
    workdir : str or Path
        The sweep directory (holds ``sweep.json``).

    Returns
    -------
    meta : SweepMeta
    spec : SweepSpec
    rows : list of TrialRow
        In Optuna trial order; empty if the study does not exist yet.
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    meta = SweepMeta.load(workdir)
    spec = meta.spec()
    try:
        study = load_optuna_study(meta.study, meta.optuna_storage)
    except KeyError:
        return meta, spec, []
    target, min_acc = spec.objective.target_alpha, spec.objective.min_test_accuracy
    rows = []
    for t in study.get_trials(deepcopy=False):
        attrs = dict(t.user_attrs)
        alpha = _f(attrs.get("alpha_agg"))
        acc = _f(attrs.get("test_acc"))
        if t.values is not None:
            values = tuple(float(v) for v in t.values)
        elif t.intermediate_values:
            values = (float(t.intermediate_values[max(t.intermediate_values)]),)
        else:
            values = ()
        feasible = min_acc is None or (math.isfinite(acc) and acc >= min_acc)
        rows.append(TrialRow(
            number=t.number, state=t.state.name, params=dict(t.params), alpha=alpha,
            alpha_error=abs(alpha - target) if math.isfinite(alpha) else math.nan,
            test_acc=acc, phase=_phase(attrs), feasible=feasible, values=values,
            tune_trial_id=attrs.get("tune_trial_id"), mlflow_run_id=attrs.get("mlflow_run_id"), attrs=attrs,
        ))
    return meta, spec, rows


def best_trial(rows: list[TrialRow]) -> TrialRow | None:
    """The completed, fully trained, feasible trial with alpha closest to the target.

    Ties go to the higher test accuracy. Trials an early-stopping scheduler cut short are left
    out: their alpha and accuracy describe a model that never finished training.

    Parameters
    ----------
    rows : list of TrialRow

    Returns
    -------
    TrialRow or None
        ``None`` when no completed trial is feasible and has a finite alpha.
    """
    ok = [r for r in rows if r.complete and r.fully_trained and r.feasible and math.isfinite(r.alpha_error)]
    if not ok:
        return None
    return min(ok, key=lambda r: (r.alpha_error, -(r.test_acc if math.isfinite(r.test_acc) else -1.0), r.number))


def pareto_front(rows: list[TrialRow]) -> list[TrialRow]:
    """Completed trials not dominated in (alpha error, test error), sorted by alpha error."""
    pts = [r for r in rows if r.complete and math.isfinite(r.alpha_error) and math.isfinite(r.test_acc)]
    front = []
    for r in pts:
        a, e = r.alpha_error, 1 - r.test_acc
        dominated = any((o.alpha_error <= a and 1 - o.test_acc <= e) and (o.alpha_error < a or 1 - o.test_acc < e)
                        for o in pts)
        if not dominated:
            front.append(r)
    return sorted(front, key=lambda r: r.alpha_error)


def format_params(params: dict[str, Any]) -> str:
    """``lr=0.0123 batch_size=32`` with short floats."""
    return " ".join(f"{k}={_fmt(v)}" for k, v in params.items())


def _fmt(v: Any, digits: int = 3) -> str:
    if isinstance(v, float):
        if not math.isfinite(v):
            return "-"
        return f"{v:.{digits}g}"
    return "-" if v is None else str(v)


_STATE_STYLE = {"COMPLETE": "green", "RUNNING": "yellow", "FAIL": "red", "PRUNED": "magenta", "WAITING": "dim"}


def trials_table(spec: SweepSpec, rows: list[TrialRow], *, best: TrialRow | None = None, title: str | None = None):
    """A rich table: one row per trial with hyperparameters, alpha, phase, accuracy, objective, state."""
    from rich.table import Table

    table = Table(title=title, header_style="bold", show_lines=False)
    table.add_column("#", justify="right")
    for name in spec.search:
        table.add_column(name, justify="right")
    table.add_column(f"alpha ({spec.objective.aggregate})", justify="right")
    table.add_column("|a-target|", justify="right")
    table.add_column("phase")
    table.add_column("test acc", justify="right")
    table.add_column("objective", justify="right")
    table.add_column("state")
    for r in rows:
        mark = " *" if best is not None and r.number == best.number else ""
        acc = _fmt(r.test_acc)
        if not r.feasible and r.complete:
            acc = f"[red]{acc}[/red]"
        table.add_row(
            f"{r.number}{mark}",
            *[_fmt(r.params.get(name)) for name in spec.search],
            _fmt(r.alpha), _fmt(r.alpha_error), r.phase or "-", acc,
            " / ".join(_fmt(v) for v in r.values) or "-",
            f"[{_STATE_STYLE.get(r.state, 'white')}]{r.state}[/]",
        )
    return table


def _counts(rows: list[TrialRow]) -> str:
    states: dict[str, int] = {}
    for r in rows:
        states[r.state] = states.get(r.state, 0) + 1
    return ", ".join(f"{n} {s.lower()}" for s, n in sorted(states.items()))


def make_console(**kwargs: Any):
    """A rich console; 140 columns when the output is not a terminal (logs, pipes, CI)."""
    import sys

    from rich.console import Console

    if not sys.stdout.isatty():
        kwargs.setdefault("width", 140)
    return Console(highlight=False, **kwargs)


def print_status(workdir: str | Path | None = None, *, console=None) -> list[TrialRow]:
    """Print the trial table of a sweep (the most recent under ``runs/`` by default)."""
    console = console or make_console()
    path = find_workdir(workdir)
    meta, spec, rows = load_trials(path)
    best = best_trial(rows)
    title = (f"{meta.name}: {len(rows)}/{spec.num_samples} trials ({_counts(rows) or 'none yet'}) — "
             f"target alpha {spec.objective.target_alpha:g}, sweep {meta.status}")
    console.print(trials_table(spec, rows, best=best, title=title))
    if spec.objective.min_test_accuracy is not None:
        console.print(f"feasible: test acc >= {spec.objective.min_test_accuracy:g} (red: infeasible);  * = best")
    return rows


def print_best(workdir: str | Path | None = None, *, console=None) -> TrialRow | None:
    """Print the best trial's configuration, alpha, phase and accuracy (and the Pareto front if any)."""
    console = console or make_console()
    path = find_workdir(workdir)
    meta, spec, rows = load_trials(path)
    best = best_trial(rows)
    target = spec.objective.target_alpha
    if best is None:
        done = sum(r.complete for r in rows)
        why = "no completed trial yet" if not done else "no completed trial meets the test-accuracy constraint"
        console.print(f"[yellow]{meta.name}: {why}[/yellow] ({_counts(rows) or 'no trials'})")
        return None
    console.print(f"[bold]Best trial of {meta.name}[/bold] (alpha closest to target {target:g} among feasible trials)")
    w = max([10, *(len(k) + 1 for k in best.params)])
    console.print(f"  {'trial':<{w}} #{best.number}  (tune {best.tune_trial_id or '-'}, "
                  f"mlflow run {best.mlflow_run_id or '-'})")
    for k, v in best.params.items():
        console.print(f"  {k:<{w}} {_fmt(v, 4)}")
    console.print(f"  {'alpha':<{w}} {_fmt(best.alpha, 4)} ({spec.objective.aggregate} over layers; "
                  f"|alpha - target| = {_fmt(best.alpha_error, 3)})")
    console.print(f"  {'phase':<{w}} {best.phase or '-'}")
    console.print(f"  {'test acc':<{w}} {_fmt(best.test_acc, 4)}")
    if spec.objective.multi_objective:
        front = pareto_front(rows)
        console.print(f"Pareto front (|alpha - target| vs test error): {len(front)} trials")
        for r in front:
            console.print(f"  #{r.number:<3} |a-t|={_fmt(r.alpha_error)}  test err={_fmt(1 - r.test_acc)}  "
                          f"{format_params(r.params)}")
    return best
