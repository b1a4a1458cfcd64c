"""Body of ``htsweep analyze PATH``: per-layer spectral analysis of a checkpoint, model folder or matrix file.

Plans the layers from the checkpoint's metadata (``--list`` prints that plan and stops), then
analyzes them (one layer per core) behind a progress bar with an ETA (on stderr; a model estimated to
take more than ``LARGE_SECONDS`` first gets a one-line summary: layers, parameters, biggest
matrix, estimated time), and prints either a rich table or one JSON object per layer (stdout,
each as soon as its layer is done). ``--plot DIR`` writes one two-panel ESD figure per layer. Bad
input ends with a one-line ``error: ...`` on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import typer

__all__ = ["LARGE_SECONDS", "format_row_json", "run_analyze"]

#: Estimated run time (s) from which a summary line is printed before the analysis starts.
LARGE_SECONDS = 30.0
# only models of at least this many flops (seconds on one core) are worth the 0.1 s speed probe
_PROBE_FLOPS = 5e10

_TABLE_COLUMNS = (
    ("name", "layer"), ("kind", "kind"), ("shape", "N×M"), ("alpha", "α"), ("alpha_hill", "α_hill"),
    ("D", "D"), ("n_spikes", "spikes"), ("lambda_plus", "λ+"), ("lambda_max", "λmax"),
    ("stable_rank", "stable rank"), ("mp_soft_rank", "MP soft rank"), ("phase", "phase"), ("warning", "warning"),
)


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code=2)


def format_row_json(row: dict[str, Any]) -> str:
    """One metrics row as a strict JSON object (no ``eigs``; NaN/Inf become ``null``)."""
    from htsweep.analysis.analyze import json_safe

    return json.dumps(json_safe({k: v for k, v in row.items() if k != "eigs"}), allow_nan=False)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "—" if math.isnan(value) else f"{value:.3g}"
    return str(value)


def _wide_console() -> Any:
    from rich.console import Console

    console = Console()
    return console if console.is_terminal else Console(width=200)  # piped: no 80-column squeeze


def _table(rows: list[dict[str, Any]], title: str) -> Any:
    from rich.table import Table

    table = Table(title=title, show_lines=False)
    keys = list(_TABLE_COLUMNS)
    if rows and "alpha_farms" in rows[0]:
        keys[5:5] = [("alpha_farms", "α_FARMS"), ("alpha_hill_farms", "α_hill FARMS")]
    if rows and "tail_law" in rows[0]:
        keys.insert(-2, ("tail_law", "tail law"))
    if rows and "n_traps" in rows[0]:
        keys.insert(-2, ("n_traps", "traps"))
    for key, header in keys:
        table.add_column(header, justify="left" if key in ("name", "kind", "phase", "warning") else "right",
                         overflow="fold")
    for row in rows:
        cells = []
        for key, _ in keys:
            if key == "shape":
                cells.append(f"{row['n']}×{row['m']}")
            elif key == "phase":
                cells.append(f"{row['phase']} ({row['phase_confidence']:.2f})")
            else:
                cells.append(_fmt(row[key]))
        table.add_row(*cells)
    return table


def _plot_name(index: int, name: str) -> str:
    return f"{index:03d}_{re.sub(r'[^A-Za-z0-9_.-]+', '_', name).strip('_') or 'layer'}.png"


def _human(n: float) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return f"{int(n)}"


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def _print_plan(plan: Any, *, json_out: bool) -> None:
    if json_out:
        for info in plan.layers:
            typer.echo(json.dumps({"name": info.name, "kind": info.kind, "shape": list(info.shape), "n": info.n,
                                   "m": info.m, "dtype": str(info.dtype).removeprefix("torch."),
                                   "sources": list(info.sources), "tied": list(info.tied)}))
        return
    from rich.table import Table

    table = Table(title=f"{plan.source}: {len(plan.layers)} layers, "
                  f"{_human(sum(i.numel for i in plan.layers))} weights")
    for header in ("layer", "kind", "shape", "N×M", "eigs", "dtype", "tied"):
        table.add_column(header, justify="right" if header in ("shape", "N×M", "eigs") else "left", overflow="fold")
    for info in plan.layers:
        table.add_row(info.name, info.kind, "×".join(str(s) for s in info.shape), f"{info.n}×{info.m}",
                      str(info.n_eigs), str(info.dtype).removeprefix("torch."), ", ".join(info.tied))
    _wide_console().print(table)


def _set_threads(threads: int | None) -> int:
    """Use ``threads`` (default: every core this process may run on) for torch and the BLAS."""
    import torch

    if threads:
        n = threads
    elif hasattr(os, "sched_getaffinity"):
        n = len(os.sched_getaffinity(0))
    else:  # pragma: no cover - macOS / Windows
        n = os.cpu_count() or 1
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(int(n))
    threadpool_limits(int(n))
    return int(n)


@contextmanager
def _runner(address: str | None) -> Iterator[Any]:
    """The row iterator: local (``iter_analysis``), or Ray tasks on the cluster at ``address``."""
    from htsweep.analysis.analyze import iter_analysis

    if address is None:
        yield iter_analysis
        return
    from htsweep.sweeps.analyze_cluster import iter_analysis_ray
    from htsweep.sweeps.lifecycle import own_ray
    from htsweep.sweeps.spec import SpecError

    stack = ExitStack()
    try:
        stack.enter_context(own_ray(address))
    except SpecError as exc:
        raise _fail(str(exc).splitlines()[0]) from None
    with stack:
        yield iter_analysis_ray


def run_analyze(
    path: str | Path,
    *,
    json_out: bool = False,
    plot_dir: str | Path | None = None,
    conv: str = "reshape",
    localization: bool = False,
    precision: str | None = None,
    trust_pickle: bool = False,
    include: list[str] | None = None,
    exclude: list[str] | None = None,
    kinds: list[str] | None = None,
    exclude_kinds: list[str] | None = None,
    min_dim: int = 2,
    max_dim: int | None = None,
    list_only: bool = False,
    threads: int | None = None,
    traps: int = 0,
    farms: bool = False,
    farms_windows: int | None = None,
    tail_law: bool = False,
    address: str | None = None,
) -> list[dict[str, Any]]:
    """Analyze the weight matrices in ``path`` and print the results.

    Parameters
    ----------
    path : str or Path
        A checkpoint file, sharded index or model folder (see
        :func:`analysis.checkpoints.open_checkpoint`), or a ``.npy``/``.npz`` file.
    json_out : bool, default=False
        Print one JSON object per layer (strict JSON, NaN as null) instead of a table.
    plot_dir : str or Path, optional
        Folder for one PNG per layer (created if missing).
    conv : {'reshape', 'kernel', 'pooled'}, default='reshape'
    localization : bool, default=False
        Add eigenvector localization metrics.
    precision : {'float32', 'float64'}, optional
        Default :data:`analysis.analyze.DEFAULT_PRECISION`.
    trust_pickle : bool, default=False
        Allow torch files that need full unpickling (runs code from the file).
    include, exclude, kinds, exclude_kinds, min_dim, max_dim
        Layer selection (:func:`analysis.layers.plan_layers`).
    list_only : bool, default=False
        Print the planned layers (name, kind, shape, dtype, tied tensors) and stop.
    threads : int, optional
        CPU threads for torch and the BLAS (default: all cores).
    traps : int, default=0
        Shuffles per layer for the correlation-trap metrics (0: off; each costs about one float64
        analysis of the layer).
    farms : bool, default=False
        Add ``alpha_farms`` / ``alpha_hill_farms`` (:mod:`analysis.farms`; several times the cost
        of the ESD on layers up to 2000 wide).
    farms_windows : int, optional
        FARMS window offsets per dimension (needs ``farms``; default
        :data:`analysis.farms.FARMS_WINDOWS`, the paper's 10; 2 costs about one analysis, see
        :mod:`analysis.farms`).
    tail_law : bool, default=False
        Add the likelihood-ratio tests of the tail against truncated power law, lognormal and
        exponential and a verdict (:mod:`analysis.tail_law`; about 0.1–1 s per layer).
    address : str, optional
        A Ray cluster (``"auto"``, ``"HOST:PORT"``): one task per layer there
        (:mod:`sweeps.analyze_cluster`), rows identical to the local run's, in the same order,
        with the same progress bar and ``--json`` lines. ``path`` must be readable at the same
        place on every node. A process already connected to Ray uses its connection.

    Returns
    -------
    list of dict
        The metrics rows (with ``eigs``); empty with ``list_only``.

    Raises
    ------
    typer.Exit
        Code 2 after printing ``error: <reason>`` for unreadable files, unsafe pickles, non-2-D
        arrays, NaN/Inf weights, an empty selection, bad options or a cluster that cannot be
        joined.
    """
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from htsweep.analysis.analyze import DEFAULT_PRECISION, estimate_seconds
    from htsweep.analysis.farms import FARMS_WINDOWS
    from htsweep.analysis.layers import CONV_MODES, plan_layers
    from htsweep.analysis.spectrum import PRECISIONS

    precision = precision or DEFAULT_PRECISION
    if conv not in CONV_MODES:
        raise _fail(f"--conv must be one of {', '.join(CONV_MODES)}; got {conv!r}")
    if precision not in PRECISIONS:
        raise _fail(f"--precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")
    if traps < 0:
        raise _fail(f"--traps must be >= 0; got {traps}")
    if farms_windows is not None and not farms:
        raise _fail("--farms-windows needs --farms")
    if farms_windows is not None and farms_windows < 1:
        raise _fail(f"--farms-windows must be >= 1; got {farms_windows}")
    farms_windows = FARMS_WINDOWS if farms_windows is None else farms_windows
    if min_dim < 1 or (max_dim is not None and max_dim < min_dim):
        raise _fail(f"--min-dim/--max-dim must satisfy 1 <= min <= max; got {min_dim}, {max_dim}")
    try:
        plan = plan_layers(path, conv=conv, trust_pickle=trust_pickle, include=include, exclude=exclude,
                           kinds=kinds, exclude_kinds=exclude_kinds, min_dim=min_dim, max_dim=max_dim)
    except ValueError as exc:
        raise _fail(str(exc).splitlines()[0]) from None
    if not plan.layers:
        raise _fail(f"{path}: no weight matrices found" + (" (after layer selection)" if (
            include or exclude or kinds or exclude_kinds or max_dim) else ""))
    if list_only:
        _print_plan(plan, json_out=json_out)
        return []

    n_threads = _set_threads(threads)
    err_console = Console(stderr=True, highlight=False, soft_wrap=True)
    total = sum(info.flops for info in plan.layers)
    eta = (estimate_seconds(plan, precision=precision, workers=n_threads)
           if total >= _PROBE_FLOPS and address is None else 0.0)
    if eta >= LARGE_SECONDS:
        big = max(plan.layers, key=lambda i: i.numel)
        err_console.print(
            f"Large model: {len(plan.layers)} layers, {_human(sum(i.numel for i in plan.layers))} weights, biggest "
            f"matrix {big.name} {'×'.join(str(s) for s in big.shape)}; estimated {_duration(eta)} at {precision} "
            f"on {n_threads} thread(s).")

    rows: list[dict[str, Any]] = []
    columns = (TextColumn("[progress.description]{task.description}"), BarColumn(),
               TextColumn("{task.fields[done]}/{task.fields[count]} layers"), TimeElapsedColumn(),
               TextColumn("ETA"), TimeRemainingColumn())
    with Progress(*columns, console=err_console, transient=True,
                  disable=not err_console.is_terminal) as progress:
        task = progress.add_task("analyzing", total=total, done=0, count=len(plan.layers))
        pending: list[Any] = []

        def on_layer(info: Any) -> None:
            pending.append(info)
            progress.update(task, description=f"analyzing {info.name}")

        try:
            with _runner(address) as runner:
                # locally, on the CPU: one layer per core, each single-threaded (see iter_analysis)
                for row in runner(plan, localization=localization, precision=precision, traps=traps, farms=farms,
                                  farms_windows=farms_windows, tail_law=tail_law, workers=n_threads,
                                  on_layer=on_layer):
                    rows.append(row)
                    progress.update(task, advance=pending.pop(0).flops, done=len(rows))
                    if json_out:
                        typer.echo(format_row_json(row))
        except ValueError as exc:
            raise _fail(str(exc).splitlines()[0]) from None

    if plot_dir is not None:
        from htsweep.analysis.plots import plot_layer

        out_dir = Path(plot_dir)
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
            for i, row in enumerate(rows):
                plot_layer(row, out_dir / _plot_name(i, row["name"]))
        except OSError as exc:
            raise _fail(f"cannot write plots to {out_dir}: {exc.strerror or exc}") from None

    if not json_out:
        _wide_console().print(_table(rows, title=str(path)))
        if plot_dir is not None:
            typer.echo(f"wrote {len(rows)} figure(s) to {plot_dir}")
    return rows
