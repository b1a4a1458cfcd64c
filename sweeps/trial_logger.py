"""The MLflow trial logger as a trainers callback: the one place MLflow tracking meets the trainer.

``services.tracking.TrialRunLogger`` holds the MLflow logic and knows no trainer;
:class:`MlflowTrialLogger` adds ``trainers.callbacks.Callback`` (the no-op hooks it leaves alone
and ``state_key``), so ``services`` keeps importing only ``analysis``. Imported lazily by
``sweeps.trainable.train_trial``: importing MLflow costs seconds that a trial without tracking
should not pay.
"""

from __future__ import annotations

from htsweep.services.tracking import TrialRunLogger
from htsweep.trainers.callbacks import Callback

__all__ = ["MlflowTrialLogger"]


class MlflowTrialLogger(TrialRunLogger, Callback):
    """Records one trial as a nested MLflow run; a trainers callback.

    Same parameters and attributes as ``services.tracking.TrialRunLogger``. Its checkpoint state
    stays under ``state_key`` ``"MlflowTrialLogger"``, so checkpoints written before the split
    resume.
    """
