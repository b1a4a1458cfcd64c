"""Spectral monitoring in a 🤗 ``transformers.Trainer``: ``SpectralCallback.attach(trainer, ...)``.

Every ``every_n_steps`` optimizer steps (and at the last one) the callback analyzes the
model's weight matrices (GPT-2's ``Conv1D`` and packed ``c_attn`` are split by the layer plan of
``htsweep.analysis``) and hands the aggregates (``alpha_mean``, ...) and the per-layer series
(``alpha/<layer>``, ``phase_code/<layer>``, ...) to ``Trainer.log``, so every reporting integration
of transformers (MLflow, TensorBoard, ...) and ``trainer.state.log_history`` receive them. When an
MLflow run is active (transformers' ``MLflowCallback`` starts one), it also gets the
``phase.<layer>`` and ``phase`` tags. Inside an htsweep trial it monitors through the trial's
session instead (the shared ESD actor and the trial's MLflow run), and the evaluation metrics go to
``session.report``.

Needs ``transformers`` and ``accelerate`` (``pip install 'htsweep[transformers]'``).

Examples
--------
::

    from transformers import Trainer
    from htsweep.integrations.transformers import SpectralCallback

    trainer = Trainer(model=model, args=args, train_dataset=train)
    SpectralCallback.attach(trainer, every_n_steps=50)
    trainer.train()
"""

from __future__ import annotations

import sys
from typing import Any

try:
    from transformers import TrainerCallback
except ImportError:  # pragma: no cover - depends on the installed extras
    raise ImportError("htsweep.integrations.transformers needs transformers and accelerate: "
                      "pip install 'htsweep[transformers]'") from None

from htsweep.analysis.aggregate import spectral_aggregates
from htsweep.analysis.farms import FARMS_WINDOWS
from htsweep.integrations._common import active_session, check_every, chunks, engine
from htsweep.trainers.monitor import SpectralSnapshot

__all__ = ["SpectralCallback"]


class SpectralCallback(TrainerCallback):
    """Log per-layer α, phase and the spectral aggregates through ``Trainer.log``.

    A ``TrainerCallback`` is not given the Trainer, and ``Trainer.log`` is what reaches the
    reporting integrations; so the callback is bound to its Trainer: use :meth:`attach` (or pass
    ``trainer=`` and add the callback yourself).

    Parameters
    ----------
    every_n_steps : int, default=50
        Analyze when ``state.global_step`` is a multiple of this, and at the last step.
    trainer : transformers.Trainer, optional
        The Trainer to log through (set by :meth:`attach`).
    conv : {'reshape', 'kernel'}, default='reshape'
    min_dim : int, default=2
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

    def __init__(self, every_n_steps: int = 50, *, trainer: Any = None, conv: str = "reshape", min_dim: int = 2,
                 device: str | None = None, farms: bool = False,
                 farms_windows: int = FARMS_WINDOWS, tail_law: bool = False) -> None:
        self.every_n_steps = check_every(every_n_steps)
        self.trainer = trainer
        self._engine = engine(conv=conv, min_dim=min_dim, device=device, farms=farms,
                              farms_windows=farms_windows, tail_law=tail_law)
        self.last: SpectralSnapshot | None = None
        self._last_step = -1

    @classmethod
    def attach(cls, trainer: Any, every_n_steps: int = 50, **kwargs: Any) -> SpectralCallback:
        """Make a callback bound to ``trainer`` and add it there; returns it."""
        callback = cls(every_n_steps, trainer=trainer, **kwargs)
        trainer.add_callback(callback)
        return callback

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """Check that the callback can log (it knows its Trainer)."""
        if self.trainer is None and active_session() is None:
            raise RuntimeError("SpectralCallback is not bound to its Trainer: use "
                               "SpectralCallback.attach(trainer, every_n_steps=...)")

    def on_step_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        """Analyze at every multiple of ``every_n_steps`` and at the last step.

        The last step is caught here, not in ``on_train_end``: by then transformers'
        ``MLflowCallback`` has ended its run, and logging would open a new one.
        """
        step = int(state.global_step)
        if (step % self.every_n_steps == 0 or control.should_training_stop) and step != self._last_step:
            self._measure(state, control, model, step)

    def on_evaluate(self, args: Any, state: Any, control: Any, metrics: dict[str, Any] | None = None,
                    **kwargs: Any) -> None:
        """Inside a trial: report the evaluation metrics to the session (``eval_`` prefix dropped)."""
        session = active_session()
        if session is not None and metrics:
            out = {k.removeprefix("eval_"): float(v) for k, v in metrics.items() if isinstance(v, int | float)}
            session.report(out, step=int(state.global_step))

    def _measure(self, state: Any, control: Any, model: Any, step: int) -> None:
        self._last_step = step
        session = active_session()
        if session is not None:
            session.monitor(model, step)
            self.last = session.spectral
            return
        self.last = snapshot = self._engine.analyze(model, step)
        if not state.is_world_process_zero:
            return
        should_log = control.should_log  # Trainer.log clears it: the Trainer's own loss log comes next
        for part in chunks(spectral_aggregates(snapshot.rows)):
            self.trainer.log(part)
        control.should_log = should_log
        mlflow = sys.modules.get("mlflow")  # transformers' MLflowCallback imported it and runs the run
        if mlflow is not None and mlflow.active_run() is not None:
            from htsweep.services.tracking import spectral_tags

            mlflow.set_tags(spectral_tags(snapshot.rows, step))
