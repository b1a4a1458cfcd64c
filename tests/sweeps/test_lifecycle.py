"""The driver's lifecycle around ``Tuner.fit()``: what it records, restores and shuts down, in which order.

Ray, the ESD actor and the Tuner are stand-ins that note what the driver looks like when each is
torn down (their real teardown runs in the integration tests of test_sweep_failures and
test_driver_faults); ``sweep.json`` and the MLflow store (sqlite) are real.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any

import pytest
from sweep_helpers import tiny_spec

mlflow = pytest.importorskip("mlflow")

from htsweep.sweeps import tune_runner  # noqa: E402
from htsweep.sweeps.lifecycle import SweepLifecycle, scoped_env  # noqa: E402
from htsweep.sweeps.progress import QUIET_ENV  # noqa: E402
from htsweep.sweeps.spec import SpecError, SweepSpec  # noqa: E402
from htsweep.sweeps.workdir import SweepMeta  # noqa: E402


class _Results(list):
    """What the driver reads of a ``ResultGrid``."""

    num_errors = 0


@pytest.fixture()
def driver(tmp_path, monkeypatch):
    """Run ``_execute`` with a stand-in Ray, ESD actor and Tuner whose ``fit`` the test gives.

    Returns ``(run, meta, events)``; each event is ``(what, sweep.json status, SIGINT handler is the
    one from before the sweep, $HTSWEEP_QUIET)``.
    """
    for var in (QUIET_ENV, "MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_TIMEOUT"):
        monkeypatch.setenv(var, "x")  # recorded, so whatever the driver sets is undone after
        monkeypatch.delenv(var)
    events: list[tuple[str, str, bool, str | None]] = []
    sigint_before = signal.getsignal(signal.SIGINT)

    def seen(what: str) -> None:
        status = json.loads((tmp_path / "sweep.json").read_text())["status"]
        events.append((what, status, signal.getsignal(signal.SIGINT) is sigint_before, os.environ.get(QUIET_ENV)))

    @contextmanager
    def ray(address: str | None, **kwargs: object) -> Iterator[bool]:
        try:
            yield True
        finally:
            seen("ray down")

    @contextmanager
    def esd(namespace: str, *, cpu: float, gpu: float) -> Iterator[object]:
        try:
            yield object()
        finally:
            seen("esd down")

    def finish(self: SweepLifecycle, *, interrupted: bool, all_errored: bool = False) -> None:
        seen(f"finish interrupted={interrupted}")
        self.meta.status = "interrupted" if interrupted else "finished"

    monkeypatch.setattr(tune_runner, "own_ray", ray)
    monkeypatch.setattr(tune_runner, "esd_actor", esd)
    monkeypatch.setattr(tune_runner, "check_cluster_resources", lambda spec, address: None)
    monkeypatch.setattr(tune_runner, "_warn_node_local", lambda meta, spec: None)
    monkeypatch.setattr(SweepLifecycle, "note_private_ray", lambda self: seen("ray noted"))
    monkeypatch.setattr(SweepLifecycle, "finish", finish)
    meta = SweepMeta(name="life", workdir=str(tmp_path), tracking_uri=f"sqlite:///{tmp_path}/mlflow.db",
                     optuna_storage=f"sqlite:///{tmp_path}/optuna.db", storage_path=str(tmp_path), experiment="life")
    spec = SweepSpec.from_dict(tiny_spec("life", num_samples=1))

    def run(fit: Callable[[], Any]) -> tune_runner.SweepOutcome:
        def in_fit() -> Any:
            seen("fit")
            return fit()

        monkeypatch.setattr(tune_runner, "_make_tuner", lambda *a, **k: SimpleNamespace(fit=in_fit))
        return tune_runner._execute(meta, spec, restore=False, address=None, quiet=False)

    return run, meta, events


def _parent_status(meta: SweepMeta) -> str:
    return mlflow.MlflowClient(meta.tracking_uri).get_run(meta.parent_run_id).info.status


def test_an_error_in_fit_marks_the_sweep_failed_before_teardown_then_restores_signals_before_ray_goes(driver):
    run, meta, events = driver

    def fit() -> None:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        run(fit)
    assert events == [("ray noted", "running", False, "0"), ("fit", "running", False, "0"),
                      ("esd down", "failed", True, None), ("ray down", "failed", True, None)]
    assert _parent_status(meta) == "FAILED"
    assert QUIET_ENV not in os.environ


def test_ctrl_c_in_fit_marks_the_sweep_interrupted_and_leaves_the_parent_run_open(driver):
    run, meta, events = driver

    def fit() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(fit)
    assert [e[:2] for e in events] == [("ray noted", "running"), ("fit", "running"), ("esd down", "interrupted"),
                                       ("ray down", "interrupted")]
    assert _parent_status(meta) == "RUNNING"  # a resume re-opens it
    assert SweepMeta.load(meta.workdir).status == "interrupted"


def test_a_returning_fit_is_recorded_after_the_teardown(driver):
    run, meta, events = driver
    outcome = run(lambda: _Results([SimpleNamespace(error=None)]))
    assert [e[0] for e in events] == ["ray noted", "fit", "esd down", "ray down", "finish interrupted=False"]
    assert events[-1][2:] == (True, None)  # signal handlers and $HTSWEEP_QUIET restored before the outcome
    assert (outcome.status, outcome.n_trials, outcome.n_errors, outcome.errors) == ("finished", 1, 0, ())
    history = SweepMeta.load(meta.workdir).history
    assert [h["event"] for h in history] == ["run"]


def test_a_store_that_cannot_be_opened_marks_the_sweep_failed_without_ending_a_run(driver, tmp_path, monkeypatch):
    run, meta, events = driver
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    meta.tracking_uri = f"sqlite:///{blocker}/mlflow.db"
    ended = []
    monkeypatch.setattr(SweepLifecycle, "end_parent_run", lambda self, status, metrics=None: ended.append(status))
    with pytest.raises(SpecError, match="cannot open the MLflow tracking store"):
        run(lambda: pytest.fail("no Tuner without a store"))
    assert events == [] and ended == []  # nothing was started, and there is no run to end
    assert SweepMeta.load(meta.workdir).status == "failed"


def test_scoped_env_restores_the_value_or_the_absence(monkeypatch):
    monkeypatch.setenv(QUIET_ENV, "1")
    with scoped_env(QUIET_ENV, "0"):
        assert os.environ[QUIET_ENV] == "0"
    assert os.environ[QUIET_ENV] == "1"
    monkeypatch.delenv(QUIET_ENV)
    with pytest.raises(ValueError), scoped_env(QUIET_ENV, "0"):
        raise ValueError
    assert QUIET_ENV not in os.environ
