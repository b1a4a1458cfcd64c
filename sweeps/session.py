"""The session a user's own training loop gets in a sweep: ``train(config, session)``.

A spec naming ``trainable: "pkg.module:train"`` instead of a model and dataset makes every trial
call the user's function with the trial's config and a :class:`TrialSession`. The session gives
that loop what htsweep's own ``Trainer`` has: spectral monitoring through the shared ESD actor
(breaker and in-process fallback as in the built-in loop), reports to Ray Tune / Optuna (with the
objective terms) and to the trial's MLflow run, and checkpoints that a killed trial resumes from.

It drives the same parts as the built-in loop through a view of itself as the ``Trainer`` they
observe (``step``, ``total_steps``, ``spectral``, ``config``, ``save_checkpoint(path)``): the
``trainers.monitor.SpectralMonitor`` engine, the ``MlflowTrialLogger`` (MLflow) and the
``TuneReporter`` (Tune).

When what is logged
-------------------
``monitor(model, step)`` analyzes now; the analysis is logged to MLflow at its ``step`` together
with the next ``report`` at that same step (so the headline objective uses that report's
``test_acc``), or on its own before a report at another step or at the end. Tune and Optuna see
the aggregates of the last analysis in every later ``report``; an analysis that no report
followed is reported once more at the end, so the study's value uses the final spectra.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from htsweep.analysis.aggregate import spectral_aggregates
from htsweep.analysis.metric_names import ReportKey

if TYPE_CHECKING:
    import pandas as pd
    from torch import nn

    from htsweep.trainers.monitor import SpectralSnapshot

__all__ = ["SESSION_FILE", "TrialSession", "current"]

#: The file of a function trainable's Tune checkpoint: ``{"user": state, "session": ...}``.
SESSION_FILE = "session.pt"

_CURRENT: TrialSession | None = None


def current() -> TrialSession | None:
    """The session of the trial running in this process (None outside a function trainable)."""
    return _CURRENT


class TrialSession:
    """What ``train(config, session)`` uses to monitor, report and checkpoint.

    Made by the sweep (``sweeps.trainable.train_trial``), never by the user.

    Attributes
    ----------
    config : dict
        The trial's settings: the spec's ``train`` section with the sampled hyperparameters applied.
    trial_id : str
    trial_dir : Path
        The trial's own directory (Tune's); write scratch files here.
    device : str
        ``"cuda"`` when Ray gave the trial a GPU (share), else ``"cpu"``.
    spectral : SpectralSnapshot or None
        The last analysis (per-layer rows with eigenvalues).
    step : int
        The last reported step.
    """

    def __init__(self, config: dict[str, Any], *, objective: Any, trial_id: str, trial_dir: Path, device: str,
                 monitor: Any, logger: Any = None, reporter: Any = None) -> None:
        self.config = config
        self.trial_id, self.trial_dir, self.device = trial_id, Path(trial_dir), device
        self.objective = objective
        self.spectral: SpectralSnapshot | None = None
        self.step = 0
        self.n_reports = 0
        self._monitor, self._logger, self._reporter = monitor, logger, reporter
        self._user: dict[str, float] = {}  # the last report's metrics
        self._spectral_metrics: dict[str, float] = {}
        self._unlogged: SpectralSnapshot | None = None  # analyzed, not yet in MLflow
        self._untold = False  # analyzed after the last Tune report
        self._pending_state: Any = None
        self._has_pending_state = False
        self.trainer_view = _TrainerView(self)
        if logger is not None:
            logger.headline = functools.partial(_headline, self, objective)

    # -- the user's API -------------------------------------------------------------------------------
    def monitor(self, model: nn.Module, step: int) -> pd.DataFrame:
        """Analyze ``model``'s weight spectra now: one row per layer (α, phase, MP fit, ...).

        Runs on the sweep's shared ESD actor (in this process when it is unavailable), as the
        built-in loop does. The per-layer ``alpha/<layer>``, ``phase_code/<layer>``, ... and the
        aggregates go to MLflow at ``step`` with the ``phase.<layer>`` tags and the ESDs
        (``esd/step_<k>.npz``), and the aggregates feed the objective of later reports.

        Raises
        ------
        TypeError
            ``model`` is not a ``torch.nn.Module``, or ``step`` not an int.
        FloatingPointError
            A weight matrix holds NaN or Inf (the trial is recorded as diverged).
        """
        step = _check_step(step, "monitor")
        self._flush_unlogged()
        snapshot = self._monitor.analyze(model, step)
        self.spectral, self._unlogged, self._untold = snapshot, snapshot, True
        self._spectral_metrics = spectral_aggregates(snapshot.rows)
        return snapshot.to_frame()

    def report(self, metrics: Mapping[str, Any], step: int) -> None:
        """Report ``metrics`` at ``step`` to Tune, Optuna and MLflow.

        ``test_acc`` / ``test_loss`` (and the spectral aggregates of the last :meth:`monitor`) make
        the objective, the accuracy constraint and what ASHA compares. A state given to
        :meth:`save_checkpoint` since the last report is saved with this one.

        Raises
        ------
        TypeError
            A value is not a number (or a one-element tensor / array), or ``step`` not an int.
        """
        step = _check_step(step, "report")
        user = _numbers(metrics)
        if self._unlogged is not None and self._unlogged.step != step:
            self._flush_unlogged()
        self._user, self.step = user, step
        merged = {**self._spectral_metrics, **user}
        if self._logger is not None:
            self._logger.on_report(self.trainer_view, None, step, merged)
            self._unlogged = None
        self._tell(merged, step)

    def save_checkpoint(self, state: dict[str, Any]) -> None:
        """Keep ``state`` (anything ``torch.save`` takes) for the trial's checkpoint.

        It is written with the next :meth:`report` (Tune checkpoints travel with results), so call
        it before reporting. After a kill or a retry, :meth:`load_checkpoint` returns the last
        state saved this way; MLflow never gets a metric twice for the same step.
        """
        if not isinstance(state, dict):
            raise TypeError(f"session.save_checkpoint: state must be a dict, got {type(state).__name__}")
        self._pending_state, self._has_pending_state = copy.copy(state), True

    def load_checkpoint(self) -> dict[str, Any] | None:
        """The state of the checkpoint this trial resumes from (None on a fresh start)."""
        return self._restored

    # -- the sweep's side -----------------------------------------------------------------------------
    _restored: dict[str, Any] | None = None

    def restore(self, path: Path) -> None:
        """Load a checkpoint directory written by :meth:`save_checkpoint` (before the user runs)."""
        import torch

        saved = torch.load(Path(path) / SESSION_FILE, map_location="cpu", weights_only=False)
        self._restored = saved["user"]
        self._pending_state, self._has_pending_state = saved["user"], False
        state = saved["session"]
        self.step, self.n_reports = int(state["step"]), int(state["n_reports"])
        self._user = dict(state.get("user_metrics", {}))
        self._spectral_metrics = dict(state.get("spectral_metrics", {}))
        self._monitor.load_state_dict(state["monitor"])
        if self._logger is not None and state.get("logger"):
            self._logger.load_state_dict(state["logger"])

    def finish(self) -> None:
        """After the user's function returned: log and report what is left.

        Raises
        ------
        RuntimeError
            The function never called :meth:`report` (Tune and Optuna would have no result).
        """
        if self.n_reports == 0:
            raise RuntimeError(f"the trainable returned without calling session.report(metrics, step) "
                               f"(trial {self.trial_id}): Tune and Optuna got no result")
        self._flush_unlogged()
        if self._untold and self.spectral is not None:  # the final spectra reach the objective
            self._tell({**self._spectral_metrics, **self._user}, max(self.step, self.spectral.step))

    def _tell(self, merged: dict[str, Any], step: int) -> None:
        if self._reporter is not None:
            self._reporter.checkpoint = self._has_pending_state
            self._reporter.on_report(self.trainer_view, None, step, merged)
        self._has_pending_state = False
        self._untold = False
        self.n_reports += 1

    def _flush_unlogged(self) -> None:
        """An analysis no report at its step took to MLflow: log it alone, at its step."""
        if self._unlogged is None or self._logger is None:
            self._unlogged = None
            return
        self._logger.on_report(self.trainer_view, None, self._unlogged.step, dict(self._spectral_metrics))
        self._unlogged = None

    def _state(self) -> dict[str, Any]:
        return {"step": self.step, "n_reports": self.n_reports + 1,  # counting the report it travels with
                "user_metrics": dict(self._user), "spectral_metrics": dict(self._spectral_metrics),
                "monitor": self._monitor.state_dict(),
                "logger": self._logger.state_dict() if self._logger is not None else None}

    def __enter__(self) -> TrialSession:
        global _CURRENT
        _CURRENT = self
        return self

    def __exit__(self, *exc: Any) -> None:
        global _CURRENT
        _CURRENT = None


class _TrainerView:
    """The session as the ``Trainer`` that ``MlflowTrialLogger`` and ``TuneReporter`` observe."""

    def __init__(self, session: TrialSession) -> None:
        self._session = session

    @property
    def step(self) -> int:
        return self._session.step

    @property
    def total_steps(self) -> int:
        """``config["steps"]`` when the spec sets it (a report at or past it is fully trained), else 0."""
        steps = self._session.config.get("steps")
        return int(steps) if isinstance(steps, int) and not isinstance(steps, bool) else 0

    @property
    def spectral(self) -> SpectralSnapshot | None:
        return self._session.spectral

    @property
    def config(self) -> dict[str, Any]:
        return self._session.config

    def save_checkpoint(self, path: str | Path) -> None:
        """Write the user's last saved state and the session's own next to ``path``."""
        import torch

        session = self._session
        torch.save({"user": session._pending_state, "session": session._state()}, Path(path).with_name(SESSION_FILE))


def _headline(session: TrialSession, objective: Any, metrics: Mapping[str, Any]) -> dict[str, float]:
    """The MLflow headline (``alpha``, ``alpha_error``, ``objective``) with the last report's
    ``test_acc`` when an analysis is logged on its own."""
    from htsweep.sweeps.trainable import headline_metrics

    return headline_metrics({**session._user, **metrics}, objective)


def _check_step(step: Any, what: str) -> int:
    if isinstance(step, bool) or not hasattr(step, "__index__"):
        raise TypeError(f"session.{what}: step must be an int, got {type(step).__name__} {step!r}")
    if int(step) < 0:
        raise ValueError(f"session.{what}: step must be >= 0, got {step}")
    return int(step)


def _numbers(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The reported values as floats; a one-line ``TypeError`` naming the first that is not a number."""
    if not isinstance(metrics, Mapping):
        raise TypeError(f"session.report: metrics must be a dict of numbers, got {type(metrics).__name__}")
    out = {}
    for key, value in metrics.items():
        if key == ReportKey.STEP:
            continue
        size = value.numel() if hasattr(value, "numel") else getattr(value, "size", None)
        if hasattr(value, "item") and size == 1:  # a one-element tensor or array, a numpy scalar
            value = value.item()
        if not isinstance(value, int | float):
            raise TypeError(f"session.report: metric {key!r} must be a number, got {type(value).__name__} "
                            f"{str(value)[:40]!r}")
        out[str(key)] = float(value)
    return out
