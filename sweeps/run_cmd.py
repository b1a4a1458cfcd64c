"""Bodies of ``htsweep run`` and ``htsweep resume``: run the sweep, then print what came of it.

After the sweep: the trial table, the best configuration with its alpha and phase, where the
HTML report is, and how to browse the trials in MLflow (``htsweep ui``). An interrupted sweep
prints how to resume it instead.
"""

from __future__ import annotations

import logging
import os
import shlex
from pathlib import Path

from sweeps.spec import SweepSpec

__all__ = ["run_command", "resume_command", "summarize"]


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
    from sweeps.status import make_console, print_best, print_status

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
        from sweeps.report import make_report

        try:
            index = make_report(workdir)
            console.print(f"\nReport:     {index}")
        except Exception as exc:  # noqa: BLE001 - the sweep itself succeeded
            console.print(f"\n[yellow]report failed: {exc}[/yellow]  (retry: htsweep report {where})")
    took = f" in {elapsed_s:.0f} s" if elapsed_s is not None else ""
    console.print(f"Sweep dir:  {workdir}  (finished{took})")
    console.print(f"Browse:     htsweep ui {where}     (MLflow UI on http://127.0.0.1:5000)")


def _aborted(console, workdir: Path) -> int:
    console.print(f"\n[yellow]Sweep aborted.[/yellow] Continue it with:  htsweep resume {shlex.quote(str(workdir))}")
    return 130


def run_command(spec_path: Path, *, address: str | None, workdir: Path | None, target_alpha: float | None,
                smoke_test: bool, report: bool, quiet: bool, overwrite: bool = False) -> int:
    """``htsweep run``: returns the process exit code (0 finished, 130 interrupted)."""
    from sweeps.status import make_console

    spec = SweepSpec.from_yaml(spec_path)
    _quiet_libraries()
    from sweeps.tune_runner import run_sweep
    from sweeps.workdir import choose_workdir

    console = make_console()
    target = target_alpha if target_alpha is not None else spec.objective.target_alpha
    console.print(f"[bold]htsweep[/bold] sweep [bold]{spec.name}[/bold]: {spec.model} on {spec.dataset}, "
                  f"{spec.num_samples if not smoke_test else 'smoke-test'} trials "
                  f"({spec.max_concurrent_trials} at a time), target alpha {target:g}, sampler {spec.sampler_type}"
                  + (f", Ray at {address}" if address else ", local Ray"))
    # Chosen here, once: the resume hint after an abort must name the directory run_sweep used.
    workdir = choose_workdir(spec, workdir)
    try:
        outcome = run_sweep(spec, address=address, workdir=workdir, target_alpha=target_alpha,
                            smoke_test=smoke_test, quiet=quiet, overwrite=overwrite)
    except KeyboardInterrupt:
        return _aborted(console, workdir)
    summarize(outcome.workdir, status=outcome.status, elapsed_s=outcome.elapsed_s, report=report)
    return 0 if outcome.status == "finished" else 130


def resume_command(workdir: Path, *, address: str | None, report: bool, quiet: bool) -> int:
    """``htsweep resume``: returns the process exit code (0 finished, 130 interrupted again)."""
    from sweeps.status import make_console
    from sweeps.workdir import SweepMeta

    meta = SweepMeta.load(workdir)
    _quiet_libraries()
    from sweeps.tune_runner import resume_sweep

    console = make_console()
    console.print(f"[bold]htsweep[/bold] resuming sweep [bold]{meta.name}[/bold] in {meta.workdir} "
                  f"(was {meta.status})")
    try:
        outcome = resume_sweep(workdir, address=address, quiet=quiet)
    except KeyboardInterrupt:
        return _aborted(console, workdir)
    summarize(outcome.workdir, status=outcome.status, elapsed_s=outcome.elapsed_s, report=report)
    return 0 if outcome.status == "finished" else 130
