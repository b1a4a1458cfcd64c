"""The `htsweep` command line: parses flags and hands off to the module that does the work."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(
    name="htsweep",
    help="Hyperparameter sweeps that map how training shapes the spectra of neural-network weights.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _fail(exc: Exception) -> None:
    """Print a user error (bad spec, not a sweep dir ...) on one block and exit with code 2."""
    from rich.console import Console
    from rich.markup import escape

    Console(stderr=True, highlight=False, soft_wrap=True).print(f"[red]error:[/red] {escape(str(exc))}")
    raise typer.Exit(code=2)


@app.command()
def analyze(
    path: Path = typer.Argument(..., help="A .safetensors / .pt / .bin checkpoint, a sharded *.index.json, a Hugging "
                                "Face model folder, or a .npy / .npz matrix file."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object per layer instead of a table."),
    plot: Path | None = typer.Option(None, "--plot", help="Write one ESD figure per layer into this folder."),
    conv: str = typer.Option("reshape", help="Conv layers: 'reshape' (out, in*k), 'kernel' (one matrix per "
                             "position) or 'pooled' (positions pooled into one ESD, as WeightWatcher)."),
    localization: bool = typer.Option(False, help="Also compute eigenvector localization metrics."),
    precision: str | None = typer.Option(None, help="Working precision, 'float32' or 'float64' (default float32; "
                                         "rank-collapse spectra are redone in float64)."),
    trust_pickle: bool = typer.Option(False, "--trust-pickle", help="Allow torch files that need full unpickling. "
                                      "This runs code from the file: only for files you trust."),
    include: list[str] | None = typer.Option(None, "--include", help="Only layers whose name matches this glob "
                                             "(repeatable), e.g. '*.self_attn.*'."),
    exclude: list[str] | None = typer.Option(None, "--exclude", help="Drop layers whose name matches (repeatable)."),
    kind: list[str] | None = typer.Option(None, "--kind", help="Only layers of this kind (repeatable; globs)."),
    exclude_kind: list[str] | None = typer.Option(None, "--exclude-kind", help="Drop layers of this kind."),
    min_dim: int = typer.Option(2, "--min-dim", help="Skip matrices whose smaller side is below this."),
    max_dim: int | None = typer.Option(None, "--max-dim", help="Skip matrices whose smaller side is above this."),
    list_only: bool = typer.Option(False, "--list", help="List the layers (shapes, kinds, tied tensors) and stop."),
    threads: int | None = typer.Option(None, "--threads", help="CPU threads (default: all cores)."),
    traps: int = typer.Option(0, "--traps", help="Correlation traps: shuffle each matrix this many times and count "
                              "the outliers that survive (0: off; each shuffle costs about one float64 analysis)."),
    farms: bool = typer.Option(False, "--farms", help="Also fit alpha on the pooled ESD of square windows (FARMS: "
                               "no aspect-ratio bias); several times the cost of the analysis."),
    farms_windows: int | None = typer.Option(None, "--farms-windows", help="FARMS window offsets per dimension "
                                             "(with --farms; default the paper's 10, 4-6x the analysis' CPU time; 2: "
                                             "about 1x, alpha_hill_farms within 0.01)."),
    tail_law: bool = typer.Option(False, "--tail-law", help="Also test the tail's power law against truncated power "
                                  "law, lognormal and exponential (likelihood ratios, a verdict; ~0.1-1 s per layer)."),
    address: str | None = typer.Option(None, "--address", help="Spread the layers over a Ray cluster ('auto', "
                                       "'HOST:PORT'), one task per layer; PATH must be readable at the same place "
                                       "on every node."),
) -> None:
    """Analyze the weight matrices in PATH: alpha, MP fit, metrics and phase per layer."""
    from htsweep.sweeps.analyze_cmd import run_analyze

    run_analyze(path, json_out=json_out, plot_dir=plot, conv=conv, localization=localization, precision=precision,
                trust_pickle=trust_pickle, include=include, exclude=exclude, kinds=kind, exclude_kinds=exclude_kind,
                min_dim=min_dim, max_dim=max_dim, list_only=list_only, threads=threads, traps=traps,
                farms=farms, farms_windows=farms_windows, tail_law=tail_law, address=address)


@app.command()
def run(
    spec: Path = typer.Argument(..., help="Sweep spec (YAML), e.g. sweeps/examples/quickstart.yaml."),
    address: str | None = typer.Option(None, "--address", help="Ray cluster address ('auto', 'HOST:PORT'); "
                                       "default: a local Ray."),
    target_alpha: float | None = typer.Option(None, "--target-alpha", help="Override objective.target_alpha."),
    workdir: Path | None = typer.Option(None, "--workdir", help="Sweep directory (default runs/<name>)."),
    smoke_test: bool = typer.Option(False, "--smoke-test", help="Run a tiny version (2 trials, 40 steps)."),
    report: bool = typer.Option(True, "--report/--no-report", help="Write the HTML report at the end."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print trial starts/ends only, not every report."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a finished/interrupted sweep in --workdir."),
    warm_start: list[Path] | None = typer.Option(None, "--warm-start", help="An earlier sweep directory with the "
                                                 "same search space (repeatable): its finished trials start the "
                                                 "search, re-evaluated for this objective, and are never trained "
                                                 "again."),
) -> None:
    """Launch a sweep: Ray Tune trials, Optuna toward the target alpha, MLflow tracking."""
    from htsweep.sweeps.run_cmd import run_command
    from htsweep.sweeps.spec import SpecError

    try:
        code = run_command(spec, address=address, workdir=workdir, target_alpha=target_alpha,
                           smoke_test=smoke_test, report=report, quiet=quiet, overwrite=overwrite,
                           warm_start=warm_start)
    except SpecError as exc:
        _fail(exc)
    raise typer.Exit(code=code)


@app.command()
def resume(
    workdir: Path = typer.Argument(..., help="The sweep directory of an interrupted sweep."),
    address: str | None = typer.Option(None, "--address", help="Ray address (default: the one used by run)."),
    report: bool = typer.Option(True, "--report/--no-report", help="Write the HTML report at the end."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print trial starts/ends only, not every report."),
) -> None:
    """Continue an interrupted sweep (same Ray Tune state, same Optuna study)."""
    from htsweep.sweeps.run_cmd import resume_command
    from htsweep.sweeps.spec import SpecError

    try:
        code = resume_command(workdir, address=address, report=report, quiet=quiet)
    except SpecError as exc:
        _fail(exc)
    raise typer.Exit(code=code)


@app.command()
def sync(
    workdir: Path = typer.Argument(..., help="Sweep directory whose MLflow outage journals (mlbuffer/) to send."),
    timeout: float = typer.Option(60.0, "--timeout", help="Seconds to keep trying, for all journals together."),
    tracking_uri: str | None = typer.Option(None, "--tracking-uri", help="Send there instead of the sweep's store."),
) -> None:
    """Replay MLflow writes that trials journaled while the tracking server was unreachable."""
    from htsweep.sweeps.run_cmd import sync_command
    from htsweep.sweeps.spec import SpecError

    try:
        code = sync_command(workdir, timeout=timeout, tracking_uri=tracking_uri)
    except SpecError as exc:
        _fail(exc)
    raise typer.Exit(code=code)


@app.command()
def status(
    workdir: Path | None = typer.Argument(None, help="Sweep directory (default: the latest under runs/)."),
    watch: bool = typer.Option(False, "--watch", "-w", help="Refresh the table (and the ESD actor's queue depth "
                               "and time per matrix) while the sweep runs; Ctrl-C to stop."),
    interval: float = typer.Option(5.0, "--interval", help="Seconds between refreshes with --watch."),
) -> None:
    """Table of trials: hyperparameters, alpha, phase, test accuracy, objective, state."""
    from htsweep.sweeps.spec import SpecError
    from htsweep.sweeps.status import print_status, watch_status

    try:
        if watch:
            watch_status(workdir, interval=interval)
        else:
            print_status(workdir)
    except (SpecError, ValueError) as exc:
        _fail(exc)


@app.command()
def best(
    workdir: Path | None = typer.Argument(None, help="Sweep directory (default: the latest under runs/)."),
    correlations: bool = typer.Option(True, "--correlations/--no-correlations",
                                      help="Also print which spectral metric tracks test accuracy across the trials."),
    target_alpha: float | None = typer.Option(None, "--target-alpha", help="Re-target: recompute feasibility, "
                                              "objective, best trial and best step for this alpha from what "
                                              "was logged (nothing is trained again)."),
    min_test_accuracy: float | None = typer.Option(None, "--min-test-accuracy", help="Re-target with this "
                                                   "accuracy floor."),
    aggregate: str | None = typer.Option(None, "--aggregate", help="Re-target with this alpha aggregate: "
                                         "mean, median or last."),
) -> None:
    """The feasible trial with alpha closest to the target, and which spectral metric predicts generalization."""
    from htsweep.sweeps.spec import SpecError
    from htsweep.sweeps.status import print_best

    changes = {"target_alpha": target_alpha, "min_test_accuracy": min_test_accuracy, "aggregate": aggregate}
    if any(v is not None for v in changes.values()):
        from htsweep.sweeps.retarget import print_retargeted

        try:
            found = print_retargeted(workdir, changes)
        except SpecError as exc:
            _fail(exc)
        if found is None:
            raise typer.Exit(code=1)
        return
    try:
        found = print_best(workdir, correlations=correlations)
    except SpecError as exc:
        _fail(exc)
    if found is None:
        raise typer.Exit(code=1)


@app.command()
def ui(
    workdir: Path | None = typer.Argument(None, help="Sweep directory (default: the latest under runs/)."),
    port: int | None = typer.Option(None, "--port", help="Port on 127.0.0.1 (default 5000, 8080 with --optuna; "
                                    "0: any free port)."),
    open_browser: bool = typer.Option(False, "--open", help="Open the UI in a web browser."),
    optuna: bool = typer.Option(False, "--optuna", help="Serve optuna-dashboard on the sweep's Optuna study "
                                "instead (pip install 'htsweep[dashboard]')."),
) -> None:
    """Serve the MLflow UI (or Optuna's dashboard) for a sweep on 127.0.0.1 until Ctrl-C.

    Prints the URL of the trial runs table: alpha, phase, test accuracy and objective as columns.
    """
    from htsweep.services.mlflow_server import check_port_free, serve_ui
    from htsweep.sweeps.spec import SpecError
    from htsweep.sweeps.ui_cmd import mlflow_runs_page, remote_runs_page, serve_optuna_dashboard
    from htsweep.sweeps.workdir import SweepMeta, find_workdir

    try:
        path = find_workdir(workdir)
        meta = SweepMeta.load(path)
    except SpecError as exc:
        _fail(exc)
    import signal

    def _stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # serve_ui stops the server's process group on Ctrl-C; same for SIGTERM

    # SIGINT too: a process started in the background (``cmd &``, nohup, some CI runners) inherits
    # SIGINT ignored, and Python then never raises KeyboardInterrupt, so Ctrl-C would do nothing
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _stop)
    if optuna:
        try:
            serve_optuna_dashboard(meta, port=8080 if port is None else port, open_browser=open_browser)
        except SpecError as exc:
            _fail(exc)
        return
    if not meta.tracking_uri.startswith("sqlite:"):  # a server or database someone else runs
        where = remote_runs_page(meta)
        from htsweep.services.redact import redact

        typer.echo(f"This sweep tracks to {redact(meta.tracking_uri)}; open that server's UI instead"
                   + (f": {redact(where)}" if where else "."))
        raise typer.Exit(code=0)
    port = 5000 if port is None else port
    try:
        check_port_free(port)  # before touching the store: a busy port is a one-line error
        page = mlflow_runs_page(meta) if Path(meta.tracking_uri.removeprefix("sqlite:///")).exists() else ""
        serve_ui(path, port=port, open_browser=open_browser, backend_store_uri=meta.tracking_uri, page=page)
    except (RuntimeError, TimeoutError) as exc:  # port taken, server died or never answered
        _fail(exc)


@app.command()
def report(
    workdir: Path | None = typer.Argument(None, help="Sweep directory (default: the latest under runs/)."),
    out: Path | None = typer.Option(None, "--out", help="Output folder (default <workdir>/report)."),
) -> None:
    """Write an HTML report with PNGs: ESD grids, alpha and phase vs hyperparameters, Optuna plots."""
    from htsweep.sweeps.report import make_report
    from htsweep.sweeps.spec import SpecError
    from htsweep.sweeps.workdir import find_workdir

    try:
        index = make_report(find_workdir(workdir), outdir=out)
    except SpecError as exc:
        _fail(exc)
    typer.echo(f"Report: {index}")


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
