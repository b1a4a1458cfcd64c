"""Live progress of a running sweep: a Ray Tune callback that prints one rich line per event.

Ray Tune's own table is switched off (``verbose=0``); instead every trial start, result (step,
alpha aggregate, phase, test accuracy, objective), completion and error is printed as it happens,
with a running count. The callback is pickled into Tune's experiment state, so it keeps no
console or other unpicklable object between runs (it re-creates them in ``setup``).
"""

from __future__ import annotations

import math
import os
import time
from typing import Any

from ray import tune

__all__ = ["QUIET_ENV", "ProgressCallback"]

#: ``"1"``/``"0"`` overrides ``quiet`` when the callback is set up; the sweep's driver sets it on
#: every run and resume, since ``Tuner.restore`` unpickles the callback with its old ``quiet``.
QUIET_ENV = "HTSWEEP_QUIET"


def _f(value: Any, fmt: str = ".3g") -> str:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return format(value, fmt)
    return "-"


def _generalization(result: dict) -> str:
    """``test acc`` for classification; ``test loss`` and ``R²`` for regression (no accuracy)."""
    if _f(result.get("test_acc")) == "-" and _f(result.get("test_loss")) != "-":
        return f"test loss {_f(result.get('test_loss'))}  R² {_f(result.get('test_r2'))}"
    return f"test acc {_f(result.get('test_acc'))}"


class ProgressCallback(tune.Callback):
    """Print trial events as they happen.

    Parameters
    ----------
    num_samples : int
        Planned number of trials (for the ``[done/total]`` counter).
    param_names : list of str
        Hyperparameters shown when a trial starts.
    quiet : bool, default=False
        Only starts, completions and errors (no per-report lines); ``$HTSWEEP_QUIET`` overrides it
        at :meth:`setup`.
    """

    def __init__(self, num_samples: int, param_names: list[str], *, quiet: bool = False) -> None:
        self.num_samples = num_samples
        self.param_names = list(param_names)
        self.quiet = quiet
        self._console: Any = None
        self._done: set[str] = set()
        self._t0 = time.monotonic()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_console"] = None
        return state

    def setup(self, stop: Any = None, num_samples: int | None = None, total_num_samples: int | None = None,
              **info: Any) -> None:
        """Create the console (also after a restore) and read ``$HTSWEEP_QUIET``."""
        from htsweep.sweeps.status import make_console

        env = os.environ.get(QUIET_ENV)
        if env is not None:
            self.quiet = env.strip() not in ("", "0")
        self._console = make_console()
        self._t0 = time.monotonic()

    def _print(self, msg: str) -> None:
        if self._console is None:
            self.setup()
        elapsed = time.monotonic() - self._t0
        self._console.print(f"[dim]{elapsed:6.1f}s[/dim] [{len(self._done)}/{self.num_samples}] {msg}")

    def _params(self, trial: Any) -> str:
        cfg = getattr(trial, "config", {}) or {}
        parts = []
        for name in self.param_names:
            v = cfg.get(name)
            parts.append(f"{name}={_f(v) if isinstance(v, float) else v}")
        return " ".join(parts)

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        """A trial process started (or was restored)."""
        self._print(f"[cyan]start[/cyan]  {trial.trial_id}  {self._params(trial)}")

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        """One ``tune.report`` of a trial."""
        if self.quiet:
            return
        self._print(f"report {trial.trial_id}  step {result.get('step', '-')}  "
                    f"alpha {_f(result.get('alpha_agg'))}  phase {result.get('phase', '-')}  "
                    f"{_generalization(result)}  objective {_f(result.get('objective'))}")

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        """A trial finished normally."""
        self._done.add(trial.trial_id)
        r = trial.last_result or {}
        self._print(f"[green]done[/green]   {trial.trial_id}  alpha {_f(r.get('alpha_agg'))}  "
                    f"phase {r.get('phase', '-')}  {_generalization(r)}  "
                    f"objective {_f(r.get('objective'))}")

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        """A trial raised (after its retries)."""
        self._done.add(trial.trial_id)
        where = getattr(trial, "error_file", None) or getattr(trial, "path", "")
        self._print(f"[red]error[/red]  {trial.trial_id}  see {where}")
