"""Doctests of the package folders, run against the modules htsweep actually imports.

``analysis/``, ``trainers/``, ``services/`` and ``sweeps/`` install as ``htsweep.analysis`` ... (the
``package-dir`` mapping in pyproject.toml). pytest's own ``--doctest-modules`` would import each file
a second time under its folder's name (``analysis.spectrum``); here every ``.py`` file of a package
folder named on the command line is collected for its doctests from ``htsweep.<folder>.<module>``.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import pytest
from _pytest.doctest import DoctestModule

_ROOT = Path(__file__).resolve().parent
_FOLDERS = {"htsweep": "htsweep", "analysis": "htsweep.analysis", "trainers": "htsweep.trainers",
            "services": "htsweep.services", "sweeps": "htsweep.sweeps"}


def _module_name(path: Path) -> str | None:
    """``analysis/spectrum.py`` -> ``htsweep.analysis.spectrum``; None outside the package folders."""
    try:
        parts = path.resolve().relative_to(_ROOT).parts
    except ValueError:
        return None
    if len(parts) < 2 or parts[0] not in _FOLDERS or path.suffix != ".py" or path.name == "conftest.py":
        return None
    if not all((_ROOT.joinpath(*parts[:i]) / "__init__.py").is_file() for i in range(1, len(parts))):
        return None  # a data folder inside a package (trainers/corpus/), not a module
    names = [_FOLDERS[parts[0]], *parts[1:-1]]
    return ".".join(names if path.stem == "__init__" else [*names, path.stem])


class _InstalledDoctestModule(DoctestModule):
    def _getobj(self) -> Any:
        return importlib.import_module(_module_name(self.path))


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if _module_name(file_path) is not None:
        return _InstalledDoctestModule.from_parent(parent, path=file_path)
    return None
