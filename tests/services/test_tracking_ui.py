"""What the MLflow UI shows first: the experiment kind, the saved trial-runs view, the short
top-level metrics and description of each trial run, and the parent run's summary tables
(real sqlite store, real training)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

mlflow = pytest.importorskip("mlflow")

from htsweep.services.tracking import (  # noqa: E402
    EXPERIMENT_KIND,
    EXPERIMENT_KIND_TAG,
    NOTE_TAG,
    TRIALS_VIEW,
    VIEW_TAG_PREFIX,
    TrackingConfig,
    configure_experiment_ui,
    init_store,
    log_sweep_summary,
    run_description,
    runs_table_url,
    start_sweep_run,
)
from htsweep.sweeps.trial_logger import MlflowTrialLogger  # noqa: E402
from htsweep.trainers.monitor import SpectralMonitor  # noqa: E402
from htsweep.trainers.train import Trainer  # noqa: E402


@pytest.fixture()
def cfg(tmp_path, sqlite_uri):
    config = TrackingConfig.for_workdir(tmp_path, experiment="ui-test")
    init_store(config.tracking_uri)
    return config


def test_sweep_experiment_opens_on_the_trial_runs_with_alpha_and_phase_columns(cfg):
    parent = start_sweep_run(cfg, params={"description": "a sweep", "search": {"lr": {}, "model_kwargs.width": {}}})
    client = mlflow.MlflowClient(cfg.tracking_uri)
    exp = client.get_experiment_by_name("ui-test")
    assert exp.tags[EXPERIMENT_KIND_TAG] == EXPERIMENT_KIND == "custom_model_development"
    assert exp.tags[NOTE_TAG] == "a sweep"
    view = json.loads(exp.tags[VIEW_TAG_PREFIX + TRIALS_VIEW])
    assert view["name"].startswith("htsweep") and isinstance(view["createdAt"], int)
    state = json.loads(view["state"])
    cols = state["selectedColumns"]
    assert cols[:2] == ["metrics.`alpha`", "tags.`phase`"]
    assert {"metrics.`test_acc`", "metrics.`objective`", "params.`lr`", "params.`model_kwargs.width`"} <= set(cols)
    assert state["columnOrder"] == cols
    assert state["searchFilter"] == "tags.`htsweep.role` = 'trial'"
    assert (state["orderByKey"], state["orderByAsc"]) == ("metrics.`objective`", True)
    # the view's filter is valid MLflow search syntax: it finds trial runs and not the parent
    assert client.search_runs([exp.experiment_id], filter_string=state["searchFilter"]) == []
    assert client.get_run(parent).data.tags["htsweep.role"] == "sweep"
    url = runs_table_url("http://127.0.0.1:5000/", exp.experiment_id)
    assert url == (f"http://127.0.0.1:5000/#/experiments/{exp.experiment_id}/runs"
                   f"?viewStateShareKey={TRIALS_VIEW}&workflowType=machine_learning")


def test_configure_keeps_what_the_user_changed_and_rejects_unknown_experiments(cfg):
    start_sweep_run(cfg)
    client = mlflow.MlflowClient(cfg.tracking_uri)
    exp_id = client.get_experiment_by_name("ui-test").experiment_id
    client.set_experiment_tag(exp_id, EXPERIMENT_KIND_TAG, "genai_development")  # chosen in the UI
    client.set_experiment_tag(exp_id, NOTE_TAG, "my notes")
    assert configure_experiment_ui(cfg.tracking_uri, "ui-test", param_names=["lr"], description="other") == exp_id
    tags = client.get_experiment(exp_id).tags
    assert tags[EXPERIMENT_KIND_TAG] == "genai_development" and tags[NOTE_TAG] == "my notes"
    assert "params.`lr`" in json.loads(json.loads(tags[VIEW_TAG_PREFIX + TRIALS_VIEW])["state"])["selectedColumns"]
    with pytest.raises(ValueError, match=r"MLflow experiment 'nope' does not exist at sqlite:///"):
        configure_experiment_ui(cfg.tracking_uri, "nope")


def test_trial_run_gets_headline_metrics_and_a_description(cfg, tiny_train_config):
    def headline(metrics):
        return {"alpha": metrics["alpha_mean"], "objective": abs(metrics["alpha_mean"] - 2.0)}

    logger = MlflowTrialLogger(cfg, trial_id="t-headline", params={"lr": 0.05}, headline=headline)
    trainer = Trainer(tiny_train_config(steps=20), callbacks=[SpectralMonitor(), logger])
    trainer.fit()
    run = mlflow.MlflowClient(cfg.tracking_uri).get_run(logger.run_id)
    m = run.data.metrics
    assert m["alpha"] == pytest.approx(m["alpha_mean"], rel=1e-12)
    assert m["objective"] == pytest.approx(abs(m["alpha_mean"] - 2.0), rel=1e-12)
    history = mlflow.MlflowClient(cfg.tracking_uri).get_metric_history(logger.run_id, "alpha")
    assert sorted(h.step for h in history) == [10, 20]  # with every spectral analysis, not in between
    note = run.data.tags[NOTE_TAG]
    assert note == run_description({**m, "step": 20}, run.data.tags["phase"])
    assert note.startswith(f"α {m['alpha']:.3g} · {run.data.tags['phase']} · test acc {m['test_acc']:.3g}")
    assert note.endswith("(step 20)")


def test_run_description_for_regression_shows_loss_and_r2():
    text = run_description({"alpha_mean": 3.21, "test_loss": 0.125, "test_r2": 0.5, "step": 7}, "bulk_decay")
    assert text == "α (mean) 3.21 · bulk_decay · test loss 0.125 · R² 0.5 (step 7)"


def test_sweep_summary_tables_replace_rather_than_append(cfg, tmp_path):
    parent = start_sweep_run(cfg)
    (tmp_path / "rep").mkdir()
    (tmp_path / "rep" / "index.html").write_text("<html></html>")
    trials = pd.DataFrame({"trial": [0, 1, 2], "alpha": [2.1, 3.4, 5.0], "phase": ["heavy_tailed", "bulk_decay", "random_like"]})
    for _ in range(2):  # the report is rebuilt: the table must not double
        log_sweep_summary(cfg, parent, tables={"trials": trials}, description="**best** #0",
                          artifacts=tmp_path / "rep")
    client = mlflow.MlflowClient(cfg.tracking_uri)
    run = client.get_run(parent)
    assert run.data.tags[NOTE_TAG] == "**best** #0"
    assert json.loads(run.data.tags["mlflow.loggedArtifacts"]) == [{"path": "trials.json", "type": "table"}]
    back = pd.read_json(client.download_artifacts(parent, "trials.json", str(tmp_path)), orient="split")
    pd.testing.assert_frame_equal(back, trials)
    assert [f.path for f in client.list_artifacts(parent, "report")] == ["report/index.html"]
    # MLflow's own reader understands the layout (it searches through the global tracking URI)
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(cfg.tracking_uri)
    try:
        loaded = client.load_table(run.info.experiment_id, "trials.json", run_ids=[parent])
    finally:
        mlflow.set_tracking_uri(previous)
    assert list(loaded["alpha"]) == [2.1, 3.4, 5.0]
