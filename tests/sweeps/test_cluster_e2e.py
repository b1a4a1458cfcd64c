"""Slow: a sweep on a two-node local Ray cluster (``ray start --head`` + ``ray start --address``,
1 CPU and a custom resource each, one token for head, worker and driver): ``htsweep run --address``
runs trials on both nodes and every trial reaches MLflow.

(The hard kill of the driver and the loss of a node mid-sweep run in the default suite:
``test_driver_faults.py`` and ``test_node_loss.py``.)
"""

from __future__ import annotations

import pytest
from sweep_helpers import run_cli, tiny_spec, write_spec

pytestmark = [pytest.mark.slow, pytest.mark.integration, pytest.mark.timeout(900)]


def test_sweep_on_two_node_cluster(two_node_cluster, tmp_path):
    import mlflow
    import optuna
    from optuna.trial import TrialState

    address, env = two_node_cluster.address, two_node_cluster.env
    spec = write_spec(tmp_path / "cluster.yaml", tiny_spec("cluster"))
    workdir = tmp_path / "sweep"
    proc = run_cli("run", spec, "--address", address, "--workdir", workdir, "--quiet", "--no-report", env=env)
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert f"Ray at {address}" in proc.stdout

    trials = optuna.load_study(study_name="cluster", storage=f"sqlite:///{workdir}/optuna.db").get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 4
    nodes = {t.user_attrs["node_id"] for t in trials}
    assert len(nodes) == 2, nodes  # 1 CPU per node, 2 concurrent 1-CPU trials: both nodes work

    client = mlflow.MlflowClient(f"sqlite:///{workdir}/mlflow.db")
    exp = client.get_experiment_by_name("cluster")
    runs = [r for r in client.search_runs([exp.experiment_id]) if r.data.tags.get("htsweep.role") == "trial"]
    assert sorted(r.data.tags["trial_id"] for r in runs) == sorted(t.user_attrs["tune_trial_id"] for t in trials)
    for run in runs:
        assert run.info.status == "FINISHED"
        assert "alpha/fc2" in run.data.metrics and "phase" in run.data.tags
        assert any(f.path.endswith(".npz") for f in client.list_artifacts(run.info.run_id, "esd"))
