"""Integration tests train tiny models single-threaded (the CI box has 2 shared cores) and point
MLflow at a sqlite store of their own."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _single_threaded(one_torch_thread):
    yield


@pytest.fixture(scope="session")
def _store(tmp_path_factory) -> str:
    """One sqlite store for the module's tests (its migrations take seconds on a busy box)."""
    from htsweep.services.tracking import init_store

    uri = f"sqlite:///{tmp_path_factory.mktemp('integrations-mlflow') / 'mlflow.db'}"
    init_store(uri)
    return uri


@pytest.fixture()
def mlflow_uri(_store, request, monkeypatch):
    """The shared store as the process's tracking URI, with an experiment of this test's own."""
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", _store)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", request.node.name)
    mlflow.set_tracking_uri(_store)
    mlflow.set_experiment(request.node.name)
    yield _store
    if mlflow.active_run() is not None:
        mlflow.end_run()
    mlflow.set_tracking_uri(None)
