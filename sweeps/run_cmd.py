"""Bodies of ``htsweep run`` and ``htsweep resume``: run the sweep, then print what came of it.

After the sweep: the trial table, the best configuration with its alpha and phase, where the
HTML report is, and how to browse the trials in MLflow (``htsweep ui``). An interrupted sweep
prints how to resume it instead.

Exit codes: 0 finished, 1 finished but every trial errored (a summary of the errors is printed),
2 a user error (one line, from the CLI), 130 interrupted. ``htsweep sync`` (:func:`sync_command`)
sends MLflow writes that trials journaled during a tracking outage.
"""

from __future__ import annotations

import logging
import os
import shlex
from pathlib import Path

from htsweep.sweeps.code_paths import code_roots
from htsweep.sweeps.spec import SweepSpec

__all__ = ["run_command", "resume_command", "summarize", "sync_command", "exit_code"]

#: ``htsweep run``/``resume`` exit code when the sweep finished but every trial errored.
ALL_ERRORED = 1


def _quiet_libraries() -> None:
    # Ray Tune's table is replaced by sweeps.progress; keep the driver's console readable.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    for name in ("ray", "ray.tune", "ray.train", "optuna", "mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.ERROR)
    except ImportError:  # pragma: no cover
        pass


def summarize(workdir: Path, *, status: str, elapsed_s: float | None = None, report: bool = True) -> None:
    """Print the trial table, the best trial, the report location and the ``htsweep ui`` command."""
    from htsweep.sweeps.status import make_console, print_best, print_status

    console = make_console()
    console.print()
    print_status(workdir, console=console)
    console.print()
    where = shlex.quote(str(workdir))
    if status == "interrupted":
        console.print(f"[yellow]Sweep interrupted.[/yellow] Continue it with:  htsweep resume {where}")
        return
    print_best(workdir, console=console)
    if report:
        from htsweep.sweeps.report import make_report

        try:
            index = make_report(workdir)
            console.print(f"\nReport:     {index}")
        except Exception as exc:  # noqa: BLE001 - the sweep itself succeeded
            console.print(f"\n[yellow]report failed: {exc}[/yellow]  (retry: htsweep report {where})")
    took = f" in {elapsed_s:.0f} s" if elapsed_s is not None else ""
    console.print(f"Sweep dir:  {workdir}  (finished{took})")
    console.print(f"Browse:     htsweep ui {where}     (MLflow UI on http://127.0.0.1:5000)")


def exit_code(outcome, console=None) -> int:
    """0 finished, 130 interrupted, 1 when every trial errored (printing one line per error)."""
    if outcome.status != "finished":
        return 130
    if outcome.n_trials and outcome.n_errors >= outcome.n_trials:
        if console is not None:
            console.print(f"[red]All {outcome.n_trials} trials errored[/red]; nothing was learned:")
            for line in outcome.errors[:10]:
                console.print(f"  {line}", markup=False, highlight=False)
            if len(outcome.errors) > 10:
                console.print(f"  ... and {len(outcome.errors) - 10} more")
        return ALL_ERRORED
    return 0


def _aborted(console, workdir: Path) -> int:
    console.print(f"\n[yellow]Sweep aborted.[/yellow] Continue it with:  htsweep resume {shlex.quote(str(workdir))}")
    return 130


def run_command(spec_path: Path, *, address: str | None, workdir: Path | None, target_alpha: float | None,
                smoke_test: bool, report: bool, quiet: bool, overwrite: bool = False,
                warm_start: list[Path] | None = None) -> int:
    """``htsweep run``: returns the process exit code (0 finished, 130 interrupted)."""
    from htsweep.sweeps.status import make_console

    spec = SweepSpec.from_yaml(spec_path)
    _quiet_libraries()
    from htsweep.sweeps.tune_runner import run_sweep
    from htsweep.sweeps.workdir import choose_workdir

    console = make_console()
    target = target_alpha if target_alpha is not None else spec.objective.target_alpha
    console.print(f"[bold]htsweep[/bold] sweep [bold]{spec.name}[/bold]: {spec.subject}, "
                  f"{spec.num_samples if not smoke_test else 'smoke-test'} trials "
                  f"({spec.max_concurrent_trials} at a time), target alpha {target:g}, sampler {spec.sampler_type}"
                  + (f", Ray at {address}" if address else ", local Ray"))
    # Chosen here, once: the resume hint after an abort must name the directory run_sweep used.
    workdir = choose_workdir(spec, workdir)
    try:
        outcome = run_sweep(spec, address=address, workdir=workdir, target_alpha=target_alpha,
                            smoke_test=smoke_test, quiet=quiet, overwrite=overwrite,
                            code_roots=code_roots(spec_path), warm_start=warm_start or ())
    except KeyboardInterrupt:
        return _aborted(console, workdir)
    summarize(outcome.workdir, status=outcome.status, elapsed_s=outcome.elapsed_s, report=report)
    return exit_code(outcome, console)


def resume_command(workdir: Path, *, address: str | None, report: bool, quiet: bool) -> int:
    """``htsweep resume``: returns the process exit code (0 finished, 130 interrupted again)."""
    from htsweep.sweeps.status import make_console
    from htsweep.sweeps.workdir import SweepMeta

    meta = SweepMeta.load(workdir)
    _quiet_libraries()
    from htsweep.sweeps.tune_runner import resume_sweep

    console = make_console()
    console.print(f"[bold]htsweep[/bold] resuming sweep [bold]{meta.name}[/bold] in {meta.workdir} "
                  f"(was {meta.status})")
    try:
        outcome = resume_sweep(workdir, address=address, quiet=quiet)
    except KeyboardInterrupt:
        return _aborted(console, workdir)
    summarize(outcome.workdir, status=outcome.status, elapsed_s=outcome.elapsed_s, report=report)
    return exit_code(outcome, console)


def sync_command(workdir: Path, *, timeout: float, tracking_uri: str | None = None) -> int:
    """``htsweep sync``: send the journaled MLflow writes of a sweep; 0 when none is left, else 1."""
    from htsweep.services.buffer import flush_journals
    from htsweep.services.redact import redact
    from htsweep.sweeps.spec import SpecError
    from htsweep.sweeps.status import make_console
    from htsweep.sweeps.workdir import META_FILE, SweepMeta

    if not (Path(workdir) / META_FILE).is_file():
        # a worker node: its trials journaled under the same path, but sweep.json lives on the head
        if tracking_uri is None:
            raise SpecError(f"{workdir}: no {META_FILE} here; on a worker node of the sweep pass --tracking-uri URI "
                            "(the sweep's tracking server) to send this node's journals")
        root, experiment = Path(workdir), "sync"  # unused: each journaled op names its own experiment
    else:
        meta = SweepMeta.load(workdir)
        root, experiment, tracking_uri = Path(meta.workdir), meta.experiment, tracking_uri or meta.tracking_uri
    _quiet_libraries()
    from htsweep.services.tracking import TrackingConfig

    config = TrackingConfig.for_workdir(root, experiment=experiment, tracking_uri=tracking_uri)
    console = make_console()
    journals = [j for j in config.resolved_buffer_dir().glob("*.jsonl") if not j.name.endswith(".rejected.jsonl")]
    if not journals:
        console.print(f"Nothing to sync: no journals under {config.resolved_buffer_dir()}")
        return 0
    config.configure_http()
    sent, left = flush_journals(config.tracking_uri, config.resolved_buffer_dir(), timeout=timeout)
    where = redact(config.tracking_uri)
    if left:
        console.print(f"[yellow]Sent {sent} operation(s) to {where}; {left} still pending[/yellow] in "
                      f"{config.resolved_buffer_dir()} (server unreachable?); run `htsweep sync` again later")
        return 1
    console.print(f"Sent {sent} operation(s) from {len(journals)} journal(s) to {where}; nothing left")
    return 0
