"""``services`` sits above ``analysis`` only: importing it must not pull in the trainer stack."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

_PROBE = """
import importlib, pkgutil, sys
from htsweep import services
for info in pkgutil.iter_modules(services.__path__):
    importlib.import_module("htsweep.services." + info.name)
leaked = sorted(m for m in sys.modules if m == "htsweep.trainers" or m.startswith("htsweep.trainers."))
assert not leaked, f"services imports the trainer stack: {leaked}"
assert "htsweep.services.tracking" in sys.modules
"""


def test_importing_every_services_module_does_not_import_trainers():
    # A fresh interpreter: in this one the test session has imported trainers already. torch is
    # not checked: analysis (which services uses) needs it.
    proc = subprocess.run([sys.executable, "-c", _PROBE], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_the_trainers_callback_adapter_keeps_its_checkpoint_key():
    from htsweep.services.tracking import TrackingConfig, TrialRunLogger
    from htsweep.sweeps.trial_logger import MlflowTrialLogger
    from htsweep.trainers.callbacks import Callback

    logger = MlflowTrialLogger(TrackingConfig("sqlite:///unused.db"), trial_id="t0")
    assert isinstance(logger, Callback) and isinstance(logger, TrialRunLogger)
    assert logger.state_key == "MlflowTrialLogger"  # checkpoints written before the split resume
    assert type(logger).on_report is TrialRunLogger.on_report
    assert not issubclass(TrialRunLogger, Callback)
