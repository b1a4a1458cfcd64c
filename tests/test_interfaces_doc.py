"""docs/interfaces.md keeps up with the code: its index names exactly each module's ``__all__``."""

from __future__ import annotations

import importlib
import pkgutil
import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "interfaces.md"
PACKAGES = ("analysis", "trainers", "services", "sweeps")
INDEX_HEADING = "## Public names by module"


def _public_modules() -> list[str]:
    """Every package and its modules, without the private ``_name`` ones."""
    names = []
    for pkg in PACKAGES:
        names.append(pkg)
        path = importlib.import_module(pkg).__path__
        names += [f"{pkg}.{m.name}" for m in pkgutil.iter_modules(path) if not m.name.startswith("_")]
    return names


def _label(module: str) -> str:
    """How the index names a module: the package by name, a module by its file."""
    return module if "." not in module else module.replace(".", "/") + ".py"


def _exported() -> dict[str, set[str]]:
    out = {}
    for module in _public_modules():
        names = getattr(importlib.import_module(module), "__all__", None)
        if names is not None:
            out[_label(module)] = set(names)
    return out


def _index() -> dict[str, set[str]]:
    """Module label → names, from the index table at the end of interfaces.md."""
    text = DOC.read_text(encoding="utf-8")
    assert INDEX_HEADING in text, f"{DOC.name} lost its {INDEX_HEADING!r} section"
    section = text.split(INDEX_HEADING, 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `([^`]+)` \| (.*) \|$", section, flags=re.MULTILINE)
    return {label: set(re.findall(r"`([^`]+)`", names)) for label, names in rows}


def test_every_module_with_an_all_has_one_index_row():
    exported, index = _exported(), _index()
    assert sorted(set(exported) - set(index)) == [], "modules missing from the index"
    assert sorted(set(index) - set(exported)) == [], "index rows for modules that are gone or have no __all__"


def test_each_index_row_names_exactly_the_modules_all():
    exported, index = _exported(), _index()
    drift = {label: {"missing": sorted(names - index.get(label, set())),
                     "stale": sorted(index.get(label, set()) - names)}
             for label, names in exported.items() if names != index.get(label)}
    assert drift == {}, f"update the rows in {DOC.name}: {drift}"


def test_every_module_file_has_no_missing_all_but_the_cli():
    # A new public module declares its interface; the two without one are named in the doc.
    without = sorted(m for m in _public_modules() if not hasattr(importlib.import_module(m), "__all__"))
    assert without == ["sweeps", "sweeps.cli"]
    text = DOC.read_text(encoding="utf-8")
    assert "`sweeps/__init__.py` and `sweeps/cli.py`" in text
