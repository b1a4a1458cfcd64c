"""Where the user's code lives, and how the driver and every Ray worker import it.

A spec may name the user's model, dataset or training loop by import path
(``model: "mynets.nets:tiny_resnet"``). ``htsweep run spec.yaml`` makes two folders importable,
with no ``PYTHONPATH`` to set: the folder of the spec and the working directory (the *code roots*).

- On the driver they go to the front of ``sys.path`` (as ``python script.py`` puts the script's
  folder there), so the spec is checked, and one batch pushed through the model, before Ray starts.
- On the workers, through Ray's job-level ``runtime_env`` (see :func:`runtime_env`):

  * by default the workers' ``PYTHONPATH`` holds the same absolute folders. Nothing is shipped:
    right for a local Ray, and for a cluster whose nodes see the project at the same path (shared
    filesystem, same checkout on each node) or have the user's package installed
    (``pip install -e .`` in the image);
  * with ``ship_code: true`` in the spec, Ray uploads the working directory to every node
    (``runtime_env.working_dir``; it skips what ``.gitignore``/``.rayignore`` name, plus
    :data:`NOT_SHIPPED`) and the workers import from their copy; a spec folder outside the working
    directory is then not shipped and must exist on every node. Ray caps the upload at 500 MiB.

Only the ``htsweep`` namespace holds our modules, so a user's folder named ``analysis``,
``models``, ``data`` or ``trainers`` on these roots never shadows them.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["NOT_SHIPPED", "code_roots", "import_on_driver", "runtime_env"]

#: Never uploaded with ``ship_code`` (on top of ``.gitignore``/``.rayignore``): sweep output, stores, envs.
NOT_SHIPPED: tuple[str, ...] = ("runs/", "mlruns/", "*.db", ".venv/", "venv/", ".git/", "__pycache__/",
                                "*.pt", "*.ckpt")


def code_roots(spec_path: str | os.PathLike | None = None, *, cwd: str | os.PathLike | None = None) -> tuple[str, ...]:
    """The folder of ``spec_path`` and the working directory, absolute, without repeats.

    Examples
    --------
    >>> code_roots("/proj/specs/sweep.yaml", cwd="/proj")
    ('/proj/specs', '/proj')
    >>> code_roots(None, cwd="/proj")
    ('/proj',)
    """
    here = Path(cwd if cwd is not None else os.getcwd()).resolve()
    roots = [Path(spec_path).resolve().parent] if spec_path is not None else []
    roots.append(here)
    return tuple(dict.fromkeys(str(r) for r in roots))


def import_on_driver(roots: Sequence[str]) -> None:
    """Put ``roots`` at the front of this process's ``sys.path`` (those not there yet), in order."""
    missing = [r for r in roots if r not in sys.path]
    sys.path[:0] = missing


def runtime_env(roots: Sequence[str], *, ship: bool = False, cwd: str | os.PathLike | None = None,
                exclude: Sequence[str] = ()) -> dict[str, Any]:
    """Ray's job-level ``runtime_env`` that makes ``roots`` importable on every worker.

    Parameters
    ----------
    roots : sequence of str
        Absolute folders (:func:`code_roots`).
    ship : bool, default=False
        Upload ``cwd`` to every node (``working_dir``); a root inside it is then found in the
        node's copy (a relative ``PYTHONPATH`` entry, which Python resolves in the copy, where Ray
        starts the worker); one outside it stays absolute.
    cwd : path-like, optional
        The working directory (default: this process's).
    exclude : sequence of str
        More ``.gitignore``-style patterns not to upload (the sweep directory).

    Returns
    -------
    dict
        ``{"env_vars": {"PYTHONPATH": ...}}``, plus ``working_dir`` and ``excludes`` when shipping.

    Examples
    --------
    >>> runtime_env(["/proj/specs", "/proj"], cwd="/proj")["env_vars"]["PYTHONPATH"].split(os.pathsep)[:2]
    ['/proj/specs', '/proj']
    >>> env = runtime_env(["/proj/specs", "/proj", "/elsewhere"], ship=True, cwd="/proj")
    >>> env["working_dir"], env["env_vars"]["PYTHONPATH"].split(os.pathsep)[:3]
    ('/proj', ['specs', '.', '/elsewhere'])
    """
    here = Path(cwd if cwd is not None else os.getcwd()).resolve()
    entries = []
    for root in roots:
        if ship and Path(root).is_relative_to(here):
            entries.append(str(Path(root).relative_to(here)))
        else:
            entries.append(str(root))
    inherited = os.environ.get("PYTHONPATH", "")
    env: dict[str, Any] = {"env_vars": {"PYTHONPATH": os.pathsep.join(entries + ([inherited] if inherited else []))}}
    if ship:
        env["working_dir"] = str(here)
        env["excludes"] = [*NOT_SHIPPED, *exclude]
    return env
