"""End to end (slow): a real sweep whose Optuna searcher picks ``alpha_balance`` settings; every
trial trains with them and its MLflow run records each layer's lr factor over steps."""

from __future__ import annotations

import pytest
from sweep_helpers import cli_env, run_cli, tiny_spec, write_spec

pytestmark = [pytest.mark.slow, pytest.mark.integration, pytest.mark.timeout(900)]


def test_sweep_searches_alpha_balance_and_logs_lr_factors(tmp_path):
    import mlflow
    import optuna

    spec = tiny_spec("ab", num_samples=3, sampler={"type": "random"},
                     train={"model_kwargs": {"width": 48}, "alpha_balance": {"exclude_first": False}},
                     search={"lr": {"type": "loguniform", "low": 0.02, "high": 0.2},
                             "alpha_balance.method": {"type": "choice",
                                                      "values": ["tempbalance", "proportional"]},
                             "alpha_balance.max_factor": {"type": "uniform", "low": 1.5, "high": 3.0}})
    workdir = tmp_path / "sweep"
    proc = run_cli("run", write_spec(tmp_path / "ab.yaml", spec), "--workdir", workdir, "--quiet", env=cli_env())
    assert proc.returncode == 0, proc.stdout[-4000:]

    study = optuna.load_study(study_name="ab", storage=f"sqlite:///{workdir}/optuna.db")
    trials = study.get_trials()
    assert len(trials) == 3
    client = mlflow.MlflowClient(f"sqlite:///{workdir}/mlflow.db")
    for t in trials:
        assert {"alpha_balance.method", "alpha_balance.max_factor"} <= set(t.params)
        run = client.get_run(t.user_attrs["mlflow_run_id"])
        assert run.data.params["train.alpha_balance.method"] == t.params["alpha_balance.method"]
        for layer in ("fc1", "fc2", "fc3"):
            history = client.get_metric_history(run.info.run_id, f"lr_factor/{layer}")
            assert sorted(m.step for m in history) == [20, 40], layer  # every report after the first update
            assert all(0.5 <= m.value <= t.params["alpha_balance.max_factor"] + 1e-12 for m in history)
