"""Sweep directories written before the ``htsweep`` namespace (htsweep < 0.3) still resume.

Ray Tune pickles the searcher, the scheduler and the callbacks into the sweep's ``tune/`` folder
(``tuner.pkl``, ``searcher-state-*.pkl``); pickles written before the four packages moved under
``htsweep`` name them by their old top-level names (``sweeps.search.ResumableOptunaSearch``). While
such a sweep resumes, :func:`old_module_names` answers ``import sweeps.search`` with the module
``htsweep.sweeps.search`` itself (the same object, not a second copy), so the pickles load; Tune
saves them again under the new names. Trainer checkpoints hold tensors only (``weights_only``)
and need nothing.

Only the driver reads these pickles, and a sweep that old cannot name user code, so the aliases
never stand in for a user's own ``analysis`` or ``models`` package.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import pickletools
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["OLD_PACKAGES", "names_old_modules", "old_module_names"]

#: The packages' top-level names before htsweep 0.3.
OLD_PACKAGES = ("analysis", "trainers", "services", "sweeps")
_OLD_NAME = re.compile(rf"^(?:{'|'.join(OLD_PACKAGES)})(?:\.\w+)+(?: \w+)?$")


def names_old_modules(tune_path: str | Path) -> bool:
    """True if a pickle of Tune's state in ``tune_path`` names a module by its pre-0.3 name.

    The pickles are read opcode by opcode (``pickletools.genops``), never loaded.
    """
    for path in sorted(Path(tune_path).glob("*.pkl")):
        try:
            for _, arg, _ in pickletools.genops(path.read_bytes()):
                if isinstance(arg, str) and _OLD_NAME.match(arg):
                    return True
        except (OSError, ValueError):  # unreadable or truncated: Tune's restore reports it
            continue
    return False


class _Alias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds ``sweeps.x`` as the already-importable ``htsweep.sweeps.x`` module object."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname.split(".")[0] not in OLD_PACKAGES:
            return None
        if importlib.util.find_spec(f"htsweep.{fullname}") is None:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec: Any) -> Any:
        return importlib.import_module(f"htsweep.{spec.name}")

    def exec_module(self, module: Any) -> None:  # already executed under its htsweep name
        pass


@contextmanager
def old_module_names() -> Iterator[None]:
    """While inside, ``analysis``/``trainers``/``services``/``sweeps`` (and submodules) import as ours.

    Examples
    --------
    >>> import htsweep.sweeps.search
    >>> with old_module_names():
    ...     import sweeps.search
    >>> sweeps.search is htsweep.sweeps.search, "sweeps.search" in sys.modules
    (True, False)
    """
    finder = _Alias()
    sys.meta_path.insert(0, finder)
    before = set(sys.modules)
    try:
        yield
    finally:
        sys.meta_path.remove(finder)
        for name in set(sys.modules) - before:
            if name.split(".")[0] in OLD_PACKAGES:
                del sys.modules[name]
