"""Body of ``htsweep analyze PATH``: per-layer spectral analysis of a checkpoint or matrix file.

Loads the weight matrices (``.pt`` state dict / checkpoint / pickled module, ``.npy``, ``.npz``),
analyzes them one layer at a time behind a progress bar (on stderr), and prints either a rich
table or one JSON object per layer (stdout). ``--plot DIR`` writes one two-panel ESD figure per
layer. Bad input ends with a one-line ``error: ...`` on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import typer

__all__ = ["format_row_json", "run_analyze"]

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
    from analysis.analyze import json_safe

    return json.dumps(json_safe({k: v for k, v in row.items() if k != "eigs"}), allow_nan=False)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "—" if math.isnan(value) else f"{value:.3g}"
    return str(value)


def _table(rows: list[dict[str, Any]], title: str) -> Any:
    from rich.table import Table

    table = Table(title=title, show_lines=False)
    for key, header in _TABLE_COLUMNS:
        table.add_column(header, justify="left" if key in ("name", "kind", "phase", "warning") else "right",
                         overflow="fold")
    for row in rows:
        cells = []
        for key, _ in _TABLE_COLUMNS:
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


def run_analyze(
    path: str | Path,
    *,
    json_out: bool = False,
    plot_dir: str | Path | None = None,
    conv: str = "reshape",
    localization: bool = False,
) -> list[dict[str, Any]]:
    """Analyze the weight matrices in ``path`` and print the results.

    Parameters
    ----------
    path : str or Path
        A ``.pt``/``.pth``/``.ckpt`` state dict, checkpoint or module, or a ``.npy``/``.npz`` file.
    json_out : bool, default=False
        Print one JSON object per layer (strict JSON, NaN as null) instead of a table.
    plot_dir : str or Path, optional
        Folder for one PNG per layer (created if missing).
    conv : {'reshape', 'kernel'}, default='reshape'
    localization : bool, default=False
        Add eigenvector localization metrics.

    Returns
    -------
    list of dict
        The metrics rows (with ``eigs``).

    Raises
    ------
    typer.Exit
        Code 2 after printing ``error: <reason>`` for unreadable files, non-2-D arrays, NaN/Inf
        weights or bad options.
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from analysis.analyze import analyze_layers
    from analysis.layers import load_matrices

    if conv not in ("reshape", "kernel"):
        raise _fail(f"--conv must be 'reshape' or 'kernel', got {conv!r}")
    try:
        layers = load_matrices(path, conv=conv)
    except ValueError as exc:
        raise _fail(str(exc).splitlines()[0]) from None

    err_console = Console(stderr=True)
    rows: list[dict[str, Any]] = []
    columns = (TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())
    with Progress(*columns, console=err_console, transient=True,
                  disable=not err_console.is_terminal) as progress:
        task = progress.add_task("analyzing layers", total=len(layers))
        for layer in layers:
            progress.update(task, description=f"analyzing {layer.name}")
            try:
                rows.extend(analyze_layers([layer], localization=localization))
            except ValueError as exc:
                raise _fail(str(exc).splitlines()[0]) from None
            progress.advance(task)

    if plot_dir is not None:
        from analysis.plots import plot_layer

        out_dir = Path(plot_dir)
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
            for i, row in enumerate(rows):
                plot_layer(row, out_dir / _plot_name(i, row["name"]))
        except OSError as exc:
            raise _fail(f"cannot write plots to {out_dir}: {exc.strerror or exc}") from None

    if json_out:
        for row in rows:
            typer.echo(format_row_json(row))
    else:
        console = Console()
        if not console.is_terminal:  # piped / captured: do not squeeze the table into 80 columns
            console = Console(width=200)
        console.print(_table(rows, title=str(path)))
        if plot_dir is not None:
            typer.echo(f"wrote {len(rows)} figure(s) to {plot_dir}")
    return rows
