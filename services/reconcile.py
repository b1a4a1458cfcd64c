"""Close the MLflow trial runs that killed processes left open, each with a final status and a reason.

A trial run is ended by its own process (:class:`services.tracking.TrialRunLogger`). When that
process dies first (the driver was SIGKILLed with trials running, a trial worker was killed for
good), the run would stay RUNNING forever. At the end of a run or resume no trial of the sweep runs
any more, so every trial run still RUNNING is orphaned; :func:`close_open_runs` ends it according
to what Optuna recorded for its trial:

========================================  ==========  =============================================
Optuna trial (by Tune trial id)           status      ``htsweep.end_reason``
========================================  ==========  =============================================
COMPLETE                                  FINISHED    ``completed; its process ended before ...``
FAIL, marked stale (driver killed)        KILLED      ``orphaned: the driver was killed ...``
FAIL (an error)                           FAILED      ``error: the trial's process died ...``
PRUNED                                    KILLED      ``stopped by the scheduler``
none (Tune never recorded the trial)      KILLED      ``orphaned: ... never recorded``
========================================  ==========  =============================================

Runs that ended on their own but carry no reason (older sweeps) get one from their status.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from htsweep.services.buffer import _require_mlflow
from htsweep.services.tracking import END_REASON_TAG, ROLE_TAG, TrackingConfig

__all__ = ["ClosedRun", "close_open_runs", "final_status"]

#: Optuna outcome of a trial as :func:`sweeps.search.optuna_outcomes` gives it.
COMPLETE, FAIL, STALE, PRUNED = "COMPLETE", "FAIL", "STALE", "PRUNED"


@dataclass(frozen=True)
class ClosedRun:
    """One trial run this module ended.

    Attributes
    ----------
    run_id, trial_id : str
    status : str
        ``FINISHED``, ``FAILED`` or ``KILLED``.
    reason : str
        The ``htsweep.end_reason`` tag it got.
    """

    run_id: str
    trial_id: str
    status: str
    reason: str


def final_status(outcome: str | None) -> tuple[str, str]:
    """The MLflow status and reason for an open run whose trial ended as ``outcome`` in Optuna."""
    if outcome == COMPLETE:
        return "FINISHED", "completed; its process ended before it could close this run"
    if outcome == STALE:
        return "KILLED", "orphaned: the driver was killed while this trial ran; the resumed sweep replaced it"
    if outcome == FAIL:
        return "FAILED", "error: the trial's process died without closing this run (see the Tune trial's error)"
    if outcome == PRUNED:
        return "KILLED", "stopped by the scheduler"
    return "KILLED", "orphaned: the driver was killed before Ray Tune recorded this trial; it was never resumed"


def close_open_runs(config: TrackingConfig, parent_run_id: str, outcomes: Mapping[str, str]) -> list[ClosedRun]:
    """End every trial run of the sweep that is still RUNNING; give reasonless ended runs a reason.

    Call it only when no trial of the sweep is running (end of a run or resume).

    Parameters
    ----------
    config : TrackingConfig
        The sweep's tracking settings.
    parent_run_id : str
        The sweep's run; its nested trial runs are reconciled.
    outcomes : mapping of str to str
        Tune trial id → Optuna outcome (``COMPLETE``, ``FAIL``, ``STALE``, ``PRUNED``).

    Returns
    -------
    list of ClosedRun
        The runs that were RUNNING, now ended.
    """
    _require_mlflow()
    import mlflow
    from mlflow.entities import RunTag

    config.configure_http()
    client = mlflow.MlflowClient(config.tracking_uri)
    exp = client.get_experiment_by_name(config.experiment)
    if exp is None:
        return []
    closed: list[ClosedRun] = []
    for run in _trial_runs(client, exp.experiment_id, parent_run_id):
        tags = run.data.tags
        trial_id = tags.get("trial_id", "")
        if run.info.status == "RUNNING":
            status, reason = final_status(outcomes.get(trial_id))
            client.log_batch(run.info.run_id, tags=[RunTag(END_REASON_TAG, reason)], synchronous=True)
            client.set_terminated(run.info.run_id, status=status)
            closed.append(ClosedRun(run.info.run_id, trial_id, status, reason))
        elif END_REASON_TAG not in tags:
            reason = {"FINISHED": "completed", "FAILED": "error (no reason recorded)"}.get(run.info.status,
                                                                                           "killed")
            client.log_batch(run.info.run_id, tags=[RunTag(END_REASON_TAG, reason)], synchronous=True)
    return closed


def _trial_runs(client: Any, experiment_id: str, parent_run_id: str) -> list[Any]:
    query = f"tags.`mlflow.parentRunId` = '{parent_run_id}' and tags.`{ROLE_TAG}` = 'trial'"
    runs, token = [], None
    while True:
        page = client.search_runs([experiment_id], filter_string=query, max_results=1000, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs
