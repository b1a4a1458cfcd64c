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

from htsweep.analysis.metric_names import ReportKey
from htsweep.sweeps.objective import ALPHA_AGG, OBJECTIVE
from htsweep.sweeps.spec import SweepSpec
from htsweep.sweeps.warm_start import SKIPPED, warm_source
from htsweep.sweeps.workdir import SweepMeta, find_workdir, load_optuna_study

__all__ = ["TrialRow", "load_trials", "best_trial", "pareto_front", "trials_table", "print_status",
           "print_best", "format_params", "make_console", "is_regression", "correlation_table", "print_correlations", "watch_status",
           "EsdActorProbe", "esd_actor_line"]


@dataclass(frozen=True)
class TrialRow:
    """One trial of a sweep.

    Attributes
    ----------
    number : int
        Optuna trial number (0-based, in order of creation).
    state : str
        ``COMPLETE``, ``RUNNING``, ``FAIL``, ``PRUNED`` or ``WAITING``; ``SKIPPED`` for a proposal
        not trained because a warm-start trial measured it (``sweeps.warm_start``).
    params : dict
        The searched hyperparameters.
    alpha : float
        The alpha aggregate the objective steers (NaN if unknown).
    alpha_error : float
        ``|alpha - target|`` (NaN if unknown).
    test_acc : float
        Final test accuracy (NaN if unknown, and for regression).
    test_loss, test_r2 : float
        Final test loss and, for regression, R² = 1 − MSE / Var(y) (NaN if unknown).
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
    test_loss: float = math.nan
    test_r2: float = math.nan
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
    def warm_from(self) -> str | None:
        """``<earlier sweep> #<trial>`` for a trial added by a warm start (not trained here), else None."""
        return warm_source(self.attrs)

    @property
    def fully_trained(self) -> bool:
        """False when a scheduler (ASHA) stopped the trial before its last training step."""
        return bool(self.attrs.get("trained", True))


def _f(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _phase(attrs: dict[str, Any]) -> str:
    if attrs.get("diverged"):
        return "(diverged)"
    if isinstance(attrs.get(ReportKey.PHASE), str):
        return attrs[ReportKey.PHASE]
    code = attrs.get(ReportKey.PHASE_CODE)
    if isinstance(code, int | float) and math.isfinite(code):
        from htsweep.analysis.phases import PHASES

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
        alpha = _f(attrs.get(ALPHA_AGG))
        acc = _f(attrs.get(ReportKey.TEST_ACC))
        if t.values is not None and len(t.values) == 1 and _finite(attrs.get(OBJECTIVE)):
            values = (float(attrs[OBJECTIVE]),)  # a constrained study holds |alpha - target|, Tune the penalized value
        elif t.values is not None:
            values = tuple(float(v) for v in t.values)
        elif t.intermediate_values:
            values = (float(t.intermediate_values[max(t.intermediate_values)]),)
        else:
            values = ()
        feasible = min_acc is None or (math.isfinite(acc) and acc >= min_acc)
        state = "SKIPPED" if t.state.name == "FAIL" and SKIPPED in attrs else t.state.name
        rows.append(TrialRow(
            number=t.number, state=state, params=dict(t.params), alpha=alpha,
            alpha_error=abs(alpha - target) if math.isfinite(alpha) else math.nan,
            test_acc=acc, phase=_phase(attrs), feasible=feasible, values=values,
            test_loss=_f(attrs.get(ReportKey.TEST_LOSS)), test_r2=_f(attrs.get(ReportKey.TEST_R2)),
            tune_trial_id=attrs.get("tune_trial_id"), mlflow_run_id=attrs.get("mlflow_run_id"), attrs=attrs,
        ))
    return meta, spec, rows


def is_regression(rows: list[TrialRow]) -> bool:
    """True for a regression sweep (e.g. teacher–student): no trial has an accuracy, some an R²."""
    return not any(math.isfinite(r.test_acc) for r in rows) and any(math.isfinite(r.test_r2) for r in rows)


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
    """A rich table: one row per trial with hyperparameters, alpha, phase, accuracy, objective, state.

    Regression sweeps (:func:`is_regression`) show test loss and R² where classification shows
    the test accuracy.
    """
    from rich.table import Table

    regression = is_regression(rows)
    table = Table(title=title, header_style="bold", show_lines=False)
    table.add_column("#", justify="right")
    for name in spec.search:
        table.add_column(name, justify="right")
    table.add_column(f"alpha ({spec.objective.aggregate})", justify="right")
    table.add_column("|a-target|", justify="right")
    table.add_column("phase")
    for name in ("test loss", "R²") if regression else ("test acc",):
        table.add_column(name, justify="right")
    table.add_column("objective", justify="right")
    table.add_column("state")
    warm = any(r.warm_from for r in rows)
    if warm:
        table.add_column("warm start from")
    for r in rows:
        mark = " *" if best is not None and r.number == best.number else ""
        acc = _fmt(r.test_acc)
        if not r.feasible and r.complete:
            acc = f"[red]{acc}[/red]"
        table.add_row(
            f"{r.number}{mark}",
            *[_fmt(r.params.get(name)) for name in spec.search],
            _fmt(r.alpha), _fmt(r.alpha_error), r.phase or "-",
            *((_fmt(r.test_loss), _fmt(r.test_r2)) if regression else (acc,)),
            " / ".join(_fmt(v) for v in r.values) or "-",
            f"[{_STATE_STYLE.get(r.state, 'white')}]{r.state}[/]",
            *([r.warm_from or ("(" + str(r.attrs[SKIPPED]) + ")" if SKIPPED in r.attrs else "")] if warm else []),
        )
    return table


def _ci(value: float, ci: tuple[float, float]) -> str:
    if not math.isfinite(value):
        return "-"
    lo, hi = ci
    return f"{value:+.2f} [{lo:+.2f}, {hi:+.2f}]" if math.isfinite(lo) else f"{value:+.2f}"


def correlation_table(table: Any, *, title: str | None = None, width: int = 100):
    """A rich table of a :class:`sweeps.trial_data.GeneralizationTable`, at most ``width`` columns wide.

    One row per model-level metric: Spearman ρ over all trials with its bootstrap confidence
    interval, Kendall τ, then Spearman ρ within each group value (its header gives the number
    of trials) for as many groups as fit in ``width``; the caption names how many more are in the
    report and ``metric_vs_generalization.json`` (which also hold τ's interval). ``*`` marks the metric with the largest
    ``|ρ|``; ``†`` marks estimates from too few trials to mean much.
    """
    from rich.console import Console
    from rich.measure import Measurement
    from rich.table import Table

    from htsweep.analysis.generalization import MIN_MODELS

    overall = {c.metric: c for c in table.overall()}
    best = table.best()
    n = len(table.trials)
    level = next(iter(overall.values())).level if overall else 0.95
    what = "test accuracy" if table.target == ReportKey.TEST_ACC else table.target.replace("_", " ")
    groups = list(dict.fromkeys(c.group for c in table.correlations if c.group))
    sizes = {g: next(c.n for c in table.correlations if c.group == g) for g in groups}
    by_group = {(c.group, c.metric): c for c in table.correlations}

    def build(shown: list[str]) -> Table:
        out = Table(title=title or f"Which spectral metric tracks {what}? Rank correlation over {n} trials "
                    f"({level:.0%} bootstrap CI)", header_style="bold")
        out.add_column("metric", no_wrap=True)
        out.add_column("Spearman ρ [CI]", justify="right", no_wrap=True)
        out.add_column("Kendall τ", justify="right", no_wrap=True)
        for g in shown:
            var, value = g.split("=", 1)
            out.add_column(f"ρ {var}\n={value} (n={sizes[g]})", justify="right", no_wrap=True)
        for metric, c in overall.items():
            dagger = "" if c.enough or not math.isfinite(c.spearman) else " †"
            name = f"{metric} *" if best is not None and metric == best.metric else metric
            cells = [_ci(c.spearman, c.spearman_ci) + dagger, _ci(c.kendall, (math.nan, math.nan))]
            for g in shown:
                gc = by_group.get((g, metric))
                cells.append("-" if gc is None or not math.isfinite(gc.spearman)
                             else f"{gc.spearman:+.2f}{'' if gc.enough else ' †'}")
            out.add_row(f"[bold]{name}[/bold]" if name.endswith("*") else name, *cells)
        return out

    probe = Console(width=10_000)

    def fits(t: Table) -> bool:
        return Measurement.get(probe, probe.options, t).maximum <= width

    shown: list[str] = []
    for g in groups:  # in order: the first variable's values stay together
        if not fits(build([*shown, g])):
            break
        shown.append(g)
    out = build(shown)
    more = len(groups) - len(shown)
    out.caption = ("* largest |ρ|;  † fewer trials than needed for a meaningful estimate "
                   f"(n < {MIN_MODELS});  HT-SR expects ρ < 0 for α vs accuracy (alpha_weighted and "
                   "log_alpha_norm carry log10 λmax, negative for small weights: their sign can flip)"
                   + (f";  {more} more group column(s) in the report and metric_vs_generalization.json"
                      if more else ""))
    return out


def _counts(rows: list[TrialRow]) -> str:
    states: dict[str, int] = {}
    for r in rows:
        state = "warm-started" if r.warm_from else r.state
        states[state] = states.get(state, 0) + 1
    return ", ".join(f"{n} {s.lower()}" for s, n in sorted(states.items()))


def _title(meta: SweepMeta, spec: SweepSpec, rows: list[TrialRow]) -> str:
    """``name: run/num_samples trials (counts) — target, status``; warm-start and skipped rows are not run here."""
    own = sum(not r.warm_from and r.state != "SKIPPED" for r in rows)
    return (f"{meta.name}: {own}/{spec.num_samples} trials ({_counts(rows) or 'none yet'}) — "
            f"target alpha {spec.objective.target_alpha:g}, sweep {meta.status}")


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
    console.print(trials_table(spec, rows, best=best, title=_title(meta, spec, rows)))
    if spec.objective.min_test_accuracy is not None:
        console.print(f"feasible: test acc >= {spec.objective.min_test_accuracy:g} (red: infeasible);  * = best")
    return rows


def print_best(workdir: str | Path | None = None, *, console=None, correlations: bool = True) -> TrialRow | None:
    """Print the best trial's configuration, alpha, phase and accuracy (and the Pareto front if any).

    With ``correlations`` (default) also the metric ↔ generalization table of
    :func:`print_correlations` (reads every finished trial's spectral summary from MLflow).
    """
    console = console or make_console()
    path = find_workdir(workdir)
    meta, spec, rows = load_trials(path)
    best = best_trial(rows)
    target = spec.objective.target_alpha
    if best is None:
        done = sum(r.complete for r in rows)
        why = "no completed trial yet" if not done else "no completed trial meets the test-accuracy constraint"
        console.print(f"[yellow]{meta.name}: {why}[/yellow] ({_counts(rows) or 'no trials'})")
        if correlations and done:  # which metric tracks generalization does not need a feasible trial
            print_correlations(meta, spec, rows, console=console)
        return None
    console.print(f"[bold]Best trial of {meta.name}[/bold] (alpha closest to target {target:g} among feasible trials)")
    w = max([10, *(len(k) + 1 for k in best.params)])
    console.print(f"  {'trial':<{w}} #{best.number}  (tune {best.tune_trial_id or '-'}, "
                  f"mlflow run {best.mlflow_run_id or '-'})")
    if best.warm_from:
        console.print(f"  {'':<{w}} warm-started: trained as {best.warm_from} "
                      f"({best.attrs.get('warm_start_from')}), not in this sweep")
    for k, v in best.params.items():
        console.print(f"  {k:<{w}} {_fmt(v, 4)}")
    console.print(f"  {'alpha':<{w}} {_fmt(best.alpha, 4)} ({spec.objective.aggregate} over layers; "
                  f"|alpha - target| = {_fmt(best.alpha_error, 3)})")
    console.print(f"  {'phase':<{w}} {best.phase or '-'}")
    if is_regression(rows):
        console.print(f"  {'test loss':<{w}} {_fmt(best.test_loss, 4)}")
        console.print(f"  {'R²':<{w}} {_fmt(best.test_r2, 4)}")
    else:
        console.print(f"  {'test acc':<{w}} {_fmt(best.test_acc, 4)}")
    if spec.objective.multi_objective:
        front = pareto_front(rows)
        console.print(f"Pareto front (|alpha - target| vs test error): {len(front)} trials")
        for r in front:
            console.print(f"  #{r.number:<3} |a-t|={_fmt(r.alpha_error)}  test err={_fmt(1 - r.test_acc)}  "
                          f"{format_params(r.params)}")
    if correlations:
        print_correlations(meta, spec, rows, console=console)
    return best


def print_correlations(meta: SweepMeta, spec: SweepSpec, rows: list[TrialRow], *, console=None) -> Any:
    """Print which model-level spectral metric ranks the finished trials by generalization.

    Returns the :class:`sweeps.trial_data.GeneralizationTable` (None when MLflow has no spectra).
    """
    from htsweep.sweeps.trial_data import generalization

    console = console or make_console()
    try:
        table = generalization(meta, spec, rows)
    except Exception as exc:  # noqa: BLE001 - the best trial is already printed
        console.print(f"[yellow]metric ↔ generalization table unavailable: {exc}[/yellow]")
        return None
    if not table.trials:
        console.print("[yellow]metric ↔ generalization: no finished trial has spectra in MLflow yet[/yellow]")
        return table
    console.print()
    console.print(correlation_table(table))
    return table


def _local_ray_address(driver_pid: int | None) -> str | None:
    """GCS address of the private local Ray that the sweep's driver process started (Linux /proc).

    ``htsweep run`` without ``--address`` starts Ray inside the driver, so its ``gcs_server`` is a
    child process of the driver; its session directory holds the port the server bound.
    """
    if not driver_pid:
        return None
    proc = Path("/proc")
    for entry in proc.glob("[0-9]*"):
        try:
            stat = (entry / "stat").read_text()
            if int(stat.rsplit(")", 1)[1].split()[1]) != driver_pid:
                continue
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError, IndexError):
            continue
        if not argv or not argv[0].endswith(b"gcs_server"):
            continue
        opts = dict(a.decode(errors="replace").lstrip("-").split("=", 1) for a in argv[1:] if b"=" in a)
        session, ip = opts.get("session-dir"), opts.get("node-ip-address")
        if not session or not ip:
            continue
        for port_file in Path(session).glob("gcs_server_port_*"):
            port = port_file.read_text().strip()
            if port.isdigit():
                return f"{ip}:{port}"
    return None


class EsdActorProbe:
    """Reads the sweep's ESD actor's load (queue depth, time per matrix) while the sweep runs.

    Connects this process to the sweep's Ray (the driver's local instance, or the cluster in
    ``sweep.json``'s ``address``) on first use and asks the actor for ``stats()``; ``close()``
    disconnects. Every failure is reported as text instead of raised: the table matters more.
    """

    def __init__(self, meta: SweepMeta, *, timeout: float = 3.0) -> None:
        self.meta = meta
        self.timeout = timeout
        self._handle: Any = None
        self._connected = False
        self._reason = ""

    def _connect(self) -> None:
        import os

        local = self.meta.address in (None, "local")
        if local:
            # A local ray.init() turns token authentication on unless RAY_AUTH_MODE says otherwise,
            # while a joining driver leaves it off; Ray reads the mode once, when it is imported.
            os.environ.setdefault("RAY_AUTH_MODE", "token")
        import ray

        from htsweep.services.esd_actor import DEFAULT_NAME

        address = _local_ray_address(self.meta.driver_pid) if local else self.meta.address
        if address is None:
            raise RuntimeError("no Ray instance of this sweep's driver found on this host")
        if not ray.is_initialized():
            ray.init(address=address, namespace=self.meta.esd_namespace, log_to_driver=False,
                     configure_logging=False, logging_level="ERROR")
            self._connected = True
        self._handle = ray.get_actor(DEFAULT_NAME, namespace=self.meta.esd_namespace)

    def stats(self) -> dict[str, Any] | str:
        """The actor's ``stats()`` dict, or a one-line reason why it cannot be read."""
        if self._reason:
            return self._reason
        try:
            if self._handle is None:
                self._connect()
            import ray

            return dict(ray.get(self._handle.stats.remote(), timeout=self.timeout))
        except Exception as exc:  # noqa: BLE001 - shown in place of the numbers
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            self._handle = None
            if not isinstance(exc, TimeoutError) and "GetTimeoutError" not in type(exc).__name__:
                self._reason = first[:160]  # no actor / no cluster: do not reconnect every refresh
            return first[:160]

    def close(self) -> None:
        """Disconnect from Ray if :meth:`stats` connected."""
        if self._connected:
            import ray

            ray.shutdown()
            self._connected = False


def esd_actor_line(stats: dict[str, Any] | str) -> str:
    """One line about the ESD actor: queue depth, time per matrix, matrices and batches so far."""
    if isinstance(stats, str):
        return f"[dim]ESD actor: {stats}[/dim]"
    tpm = float(stats.get("time_per_matrix_s", 0.0))
    return (f"ESD actor ({stats.get('device', '?')}): queue depth {stats.get('queue_depth', 0)} "
            f"(max {stats.get('queue_depth_max', 0)}), {tpm * 1e3:.1f} ms per matrix, "
            f"{stats.get('matrices', 0)} matrices in {stats.get('batches', 0)} batches "
            f"(mean batch {float(stats.get('batch_size_mean', 0.0)):.1f}), "
            f"{stats.get('in_flight', 0)} request(s) in flight")


def watch_status(workdir: str | Path | None = None, *, interval: float = 5.0, console=None,
                 max_updates: int | None = None, probe: EsdActorProbe | None = None) -> list[TrialRow]:
    """Refresh the trial table and the ESD actor's load in place until the sweep stops (``--watch``).

    Parameters
    ----------
    workdir : path-like, optional
        The sweep (default: the latest under ``runs/``).
    interval : float, default=5.0
        Seconds between refreshes.
    console : rich.console.Console, optional
    max_updates : int, optional
        Stop after this many refreshes (None: until the sweep is no longer running or Ctrl-C).
    probe : EsdActorProbe, optional
        Reads the actor; default one for this sweep (closed at the end).

    Returns
    -------
    list of TrialRow
        The trials at the last refresh.
    """
    import time

    from rich.console import Group
    from rich.live import Live

    if interval <= 0:
        raise ValueError(f"--interval must be > 0 seconds, got {interval:g}")
    console = console or make_console()
    path = find_workdir(workdir)
    own_probe = probe is None
    probe = probe or EsdActorProbe(SweepMeta.load(path))
    rows: list[TrialRow] = []

    def frame() -> tuple[Group, bool]:
        nonlocal rows
        meta, spec, rows = load_trials(path)
        running = meta.status == "running" and meta.driver_alive()
        title = _title(meta, spec, rows)
        actor = esd_actor_line(probe.stats()) if running else "[dim]ESD actor: sweep not running[/dim]"
        footer = (f"[dim]refreshing every {interval:g} s — Ctrl-C to stop[/dim]" if running
                  else "[dim]the sweep is not running; final state[/dim]")
        return Group(trials_table(spec, rows, best=best_trial(rows), title=title), actor, footer), running

    updates = 0
    try:
        view, running = frame()
        with Live(view, console=console, auto_refresh=False, transient=False) as live:
            while running and (max_updates is None or updates < max_updates):
                time.sleep(interval)
                view, running = frame()
                live.update(view, refresh=True)
                updates += 1
    except KeyboardInterrupt:
        pass
    finally:
        if own_probe:
            probe.close()
    return rows
