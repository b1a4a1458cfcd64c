"""Acceptance: the user's own training loop (``trainable: "resnets.loop:train"``) from a project folder.

``examples/user_project`` is copied next to the project's own ``analysis/`` and ``models/`` packages
(which raise on import) and ``specs/own_loop.yaml`` runs from that folder with no PYTHONPATH
through the installed ``htsweep`` command: 2 trials of the project's DataLoader + SGD loop, which
calls ``session.monitor`` every 40 steps, ``session.save_checkpoint`` and ``session.report``. One
trial's worker is SIGKILLed after a report; Tune retries it and the loop resumes from its saved state.
Then: both trials COMPLETE with Optuna values, ``alpha/<layer>`` at every monitored step exactly
once and ``phase.<layer>`` tags for the user's layers in MLflow.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sweep_helpers import study_trials, sweep_user_project

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(1800)]

NAME = "own_loop"
N_TRIALS, STEPS, EVERY = 2, 120, 40


def _trials(workdir: Path) -> list:
    return study_trials(workdir, NAME)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    def edit(spec: dict) -> None:
        spec["train"].update(steps=STEPS, monitor_every=EVERY)
        spec.update(num_samples=N_TRIALS, max_failures=1,
                    objective={"target_alpha": 2.0, "min_test_accuracy": 0.3})

    return sweep_user_project(tmp_path_factory.mktemp("user"), "specs/own_loop.yaml", edit, every=EVERY,
                              steps=STEPS)


def test_both_trials_complete_with_optuna_values(sweep):
    from optuna.trial import TrialState

    assert sweep["code"] == 0, sweep["output"][-4000:]
    trials = _trials(sweep["workdir"])
    assert len(trials) == N_TRIALS and all(t.state == TrialState.COMPLETE for t in trials), sweep["output"][-3000:]
    accs = [t.user_attrs.get("test_acc") for t in trials]
    assert all(t.value is not None for t in trials) and all(a > 0.15 for a in accs), accs  # 10 classes: chance 0.1


def test_alpha_at_every_monitored_step_once_and_phase_tags(sweep):
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{sweep['workdir']}/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name(NAME).experiment_id],
                              filter_string="tags.`htsweep.role` = 'trial'")
    assert len(runs) == N_TRIALS
    for run in runs:
        for layer in ("blocks.0.conv1", "blocks.1.conv2", "fc"):
            steps = [m.step for m in client.get_metric_history(run.info.run_id, f"alpha/{layer}")]
            assert steps == list(range(EVERY, STEPS + 1, EVERY)), (run.data.tags["trial_id"], layer, steps)
            assert run.data.tags[f"phase.{layer}"]
        assert run.info.status == "FINISHED"


def test_the_killed_trial_resumed_from_its_saved_state(sweep):
    workdir, victim = sweep["workdir"], sweep["victim"]
    trial_dirs = [d for d in (workdir / "tune").iterdir() if d.is_dir() and victim in d.name]
    assert len(trial_dirs) == 1
    reported = [json.loads(line)["step"] for line in (trial_dirs[0] / "result.json").read_text().splitlines()]
    # the retry went on from the checkpoint of its last report instead of starting over
    assert reported.count(EVERY) == 1 and reported[-1] == STEPS, reported
    assert sweep["victim_step"] < STEPS and sweep["victim_step"] + EVERY in reported, reported
