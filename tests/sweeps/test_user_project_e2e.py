"""Acceptance: a user's own project, outside the repository, swept with ``htsweep run``.

``examples/user_project`` (a residual CNN with batch norm, augmented digit Datasets) is copied to a
temporary folder next to the project's own ``analysis/`` and ``models/`` packages, which raise on
import, and run from that folder with no PYTHONPATH through the installed ``htsweep`` command. One
trial's worker is SIGKILLed mid-training; Ray Tune retries it from its checkpoint. Then: every
trial COMPLETE in Optuna, one MLflow run per trial with ``alpha/<layer>`` metrics and
``phase.<layer>`` tags under the user's layer names, test accuracy well above chance.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sweep_helpers import study_trials, sweep_user_project

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(1800)]

NAME = "resnet_digits"
N_TRIALS, STEPS, EVERY = 4, 240, 80  # the shipped spec's length
LAYERS = ("stem", "blocks.0.conv1", "blocks.0.conv2", "blocks.1.conv1", "blocks.1.conv2", "fc", "head")


def _trials(workdir: Path) -> list:
    return study_trials(workdir, NAME)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    def edit(spec: dict) -> None:
        spec["train"].update(steps=STEPS)
        spec["monitor"] = {"eval_every": EVERY, "spectral_every": EVERY}
        spec.update(num_samples=N_TRIALS, max_failures=1)

    return sweep_user_project(tmp_path_factory.mktemp("user"), "specs/resnet_digits.yaml", edit, every=EVERY,
                              steps=STEPS)


def test_every_trial_completes_in_optuna(sweep):
    from optuna.trial import TrialState

    assert sweep["code"] == 0, sweep["output"][-4000:]
    trials = _trials(sweep["workdir"])
    assert len(trials) == N_TRIALS and all(t.state == TrialState.COMPLETE for t in trials), sweep["output"][-3000:]


def test_mlflow_trial_runs_have_the_users_layer_names(sweep):
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{sweep['workdir']}/mlflow.db")
    exp = client.get_experiment_by_name(NAME)
    runs = [r for r in client.search_runs([exp.experiment_id]) if "trial_id" in r.data.tags]
    assert len(runs) == N_TRIALS
    for run in runs:
        alphas = {k.removeprefix("alpha/") for k in run.data.metrics if k.startswith("alpha/")}
        phases = {k.removeprefix("phase.") for k in run.data.tags if k.startswith("phase.")}
        assert {"blocks.0.conv1", "blocks.1.conv2", "fc"} <= alphas and set(LAYERS) >= alphas
        assert {"blocks.0.conv1", "blocks.1.conv2", "fc"} <= phases
        assert run.data.metrics["test_acc"] > 0.3  # 10 classes: chance is 0.1
        assert run.info.status == "FINISHED"
    assert max(run.data.metrics["test_acc"] for run in runs) > 0.8


def test_the_killed_trial_resumed_from_its_checkpoint(sweep):
    import mlflow

    workdir, victim = sweep["workdir"], sweep["victim"]
    trial_dirs = [d for d in (workdir / "tune").iterdir() if d.is_dir() and victim in d.name]
    assert len(trial_dirs) == 1
    reported = [json.loads(line)["step"] for line in (trial_dirs[0] / "result.json").read_text().splitlines()]
    # it went on after its last checkpoint instead of starting over: the first report step appears once
    assert reported.count(EVERY) == 1 and STEPS in reported and sweep["victim_step"] + EVERY in reported, reported
    client = mlflow.MlflowClient(f"sqlite:///{workdir}/mlflow.db")
    run = client.search_runs([client.get_experiment_by_name(NAME).experiment_id],
                             filter_string=f"tags.trial_id = '{victim}'")
    assert len(run) == 1
    steps = [m.step for m in client.get_metric_history(run[0].info.run_id, "alpha/fc")]
    assert steps == sorted(set(steps)) and steps[-1] == STEPS
