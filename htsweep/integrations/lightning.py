"""Spectral monitoring in a Lightning ``Trainer``: ``SpectralCallback(every_n_steps=...)``.

Every ``every_n_steps`` optimizer steps (and at the end of training) the callback analyzes the
LightningModule's weight matrices and logs, through each of the Trainer's loggers at the global
step, the aggregates (``alpha_mean``, ``frac_heavy_tailed``, ...) and the per-layer series
``alpha/<layer>``, ``phase_code/<layer>``, ...; an ``MLFlowLogger``'s run also gets the
``phase.<layer>`` and ``phase`` tags. Inside an htsweep trial (the sweep runs your function
trainable) it monitors through the trial's session instead: the shared ESD actor and the trial's
MLflow run, and the validation metrics go to ``session.report``.

Needs the ``lightning`` package (``pip install 'htsweep[lightning]'``).

Examples
--------
::

    import lightning as L
    from htsweep.integrations.lightning import SpectralCallback

    trainer = L.Trainer(max_steps=400, logger=L.pytorch.loggers.MLFlowLogger(...),
                        callbacks=[SpectralCallback(every_n_steps=50)])
    trainer.fit(module, train_loader)
"""

from __future__ import annotations

from typing import Any

try:
    from lightning.pytorch import Callback
except ImportError:  # pragma: no cover - depends on the installed extras
    raise ImportError("htsweep.integrations.lightning needs the lightning package: "
                      "pip install 'htsweep[lightning]'") from None

from htsweep.analysis.aggregate import spectral_aggregates
from htsweep.analysis.farms import FARMS_WINDOWS
from htsweep.integrations._common import active_session, check_every, chunks, engine
from htsweep.trainers.monitor import SpectralSnapshot

__all__ = ["SpectralCallback"]


class SpectralCallback(Callback):
    """Log per-layer α, phase and the spectral aggregates every ``every_n_steps`` optimizer steps.

    Parameters
    ----------
    every_n_steps : int, default=50
        Analyze when the Trainer's ``global_step`` is a multiple of this, and once at the end.
    conv : {'reshape', 'kernel'}, default='reshape'
        How conv weights become matrices.
    min_dim : int, default=2
        Skip matrices whose smaller side is below this.
    device : str, optional
        Device for the eigendecompositions outside a trial (default: CUDA when available).
    farms : bool, default=False
        Add the FARMS α (``alpha_farms``, ``alpha_hill_farms``; ``htsweep.analysis.farms``) to every
        row and so to the aggregates; outside a trial (inside one, the spec's ``monitor`` decides).
    farms_windows : int, default=10
        FARMS window offsets per dimension (the paper's 10 cost 4–6× the analysis on CPU; 2 about 1×).
    tail_law : bool, default=False
        Add the tail-law verdict and likelihood ratios (``htsweep.analysis.tail_law``) to every row
        (about 0.01–0.06 s per layer); outside a trial (inside one, the spec's ``monitor`` decides).

    Attributes
    ----------
    last : SpectralSnapshot or None
        The latest analysis.
    """

    def __init__(self, every_n_steps: int = 50, *, conv: str = "reshape", min_dim: int = 2,
                 device: str | None = None, farms: bool = False,
                 farms_windows: int = FARMS_WINDOWS, tail_law: bool = False) -> None:
        self.every_n_steps = check_every(every_n_steps)
        self._engine = engine(conv=conv, min_dim=min_dim, device=device, farms=farms,
                              farms_windows=farms_windows, tail_law=tail_law)
        self.last: SpectralSnapshot | None = None
        self._last_step = -1

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        """Analyze at every multiple of ``every_n_steps``."""
        step = int(trainer.global_step)
        if step % self.every_n_steps == 0 and step != self._last_step:
            self._measure(trainer, pl_module, step)

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        """Analyze the final weights (unless the last step was just analyzed)."""
        step = int(trainer.global_step)
        if step != self._last_step:
            self._measure(trainer, pl_module, step)

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        """Inside a trial: report the validation metrics (``test_acc``, ...) to the session."""
        session = active_session()
        if session is not None and not trainer.sanity_checking:
            metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if getattr(v, "numel", lambda: 1)() == 1}
            if metrics:
                session.report(metrics, step=int(trainer.global_step))

    def _measure(self, trainer: Any, pl_module: Any, step: int) -> None:
        self._last_step = step
        session = active_session()
        if session is not None:
            session.monitor(pl_module, step)
            self.last = session.spectral
            return
        self.last = snapshot = self._engine.analyze(pl_module, step)
        if trainer.global_rank != 0:
            return
        metrics = spectral_aggregates(snapshot.rows)
        for logger in trainer.loggers:
            if _is_mlflow(logger):  # its run also gets the phase tags: one log_batch per 1000 metrics
                from htsweep.services.tracking import log_snapshot

                log_snapshot(snapshot.rows, step, run_id=logger.run_id, client=logger.experiment)
                continue
            for part in chunks(metrics):
                logger.log_metrics(part, step=step)

    def state_dict(self) -> dict[str, Any]:
        return {"last_step": self._last_step}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._last_step = int(state_dict.get("last_step", -1))


def _is_mlflow(logger: Any) -> bool:
    from lightning.pytorch.loggers import MLFlowLogger

    return isinstance(logger, MLFlowLogger)
