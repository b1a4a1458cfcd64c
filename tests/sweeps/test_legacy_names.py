"""Sweep directories written before the htsweep namespace: their pickles name ``sweeps.search`` ...

Measured once on a real pre-0.3 sweep (the quickstart interrupted under commit f9c72dc, resumed by
this code: 12/12 trials complete); here, a pickle of one of our objects under its old module name.
"""

from __future__ import annotations

import pickle
import sys

from htsweep.sweeps.legacy_names import names_old_modules, old_module_names
from htsweep.sweeps.spec import ObjectiveSpec


def _old_pickle(obj) -> bytes:
    new = pickle.dumps(obj, protocol=0)  # protocol 0 spells a class as "c<module>\n<name>\n"
    assert b"chtsweep.sweeps.spec\n" in new
    return new.replace(b"chtsweep.sweeps.spec\n", b"csweeps.spec\n")


def test_old_names_are_found_without_loading_and_load_as_our_modules(tmp_path):
    spec = ObjectiveSpec(target_alpha=2.5)
    (tmp_path / "tuner.pkl").write_bytes(_old_pickle(spec))
    (tmp_path / "new.pkl").write_bytes(pickle.dumps(spec))
    assert names_old_modules(tmp_path)
    (tmp_path / "tuner.pkl").unlink()
    assert not names_old_modules(tmp_path)  # htsweep.sweeps.spec is not an old name
    before = {m for m in sys.modules if m.split(".")[0] == "sweeps"}
    with old_module_names():
        loaded = pickle.loads(_old_pickle(spec))
    # the same class, not a second copy, even where a folder named sweeps/ is on the path (pytest puts
    # the repository root there)
    assert type(loaded) is ObjectiveSpec and loaded == spec
    assert {m for m in sys.modules if m.split(".")[0] == "sweeps"} == before
