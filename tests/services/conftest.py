"""Fixtures for the services tests: tight MLflow HTTP settings and a tracking config in tmp_path."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _tight_mlflow_http(monkeypatch: pytest.MonkeyPatch) -> None:
    # MLflow's defaults (7 retries, 120 s timeout) make a call to a stopped server block ~4 min.
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("HTSWEEP_TRACKING_URI", raising=False)


@pytest.fixture()
def tiny_train_config():
    """Factory: an MLP3 (width 48) on scikit-learn digits; a few dozen steps take well under a second."""

    def make(**overrides):
        from htsweep.trainers.train import TrainConfig

        values = dict(model="mlp3", dataset="digits", steps=20, eval_every=10, spectral_every=10, batch_size=32,
                      lr=0.05, seed=0, device="cpu", threads=1, eval_samples=256, model_kwargs={"width": 48})
        values.update(overrides)
        return TrainConfig(**values)

    return make


@pytest.fixture()
def layer_set():
    """Factory: LayerMatrix records of Gaussian and Student-t (heavy-tailed) weights."""

    def make(seed: int, shapes: list[tuple[int, int]], *, prefix: str) -> list:
        import numpy as np
        import torch

        from htsweep.analysis.layers import LayerMatrix

        rng = np.random.default_rng(seed)
        out = []
        for i, (r, c) in enumerate(shapes):
            w = rng.standard_t(3, size=(r, c)) if i % 2 else rng.standard_normal((r, c))
            out.append(LayerMatrix.from_tensor(f"{prefix}.l{i}", "linear", torch.tensor(w, dtype=torch.float32)))
        return out

    return make


@pytest.fixture(scope="session")
def _migrated_db(tmp_path_factory):
    """One freshly migrated MLflow sqlite store per session (migrations take seconds on 2 cores)."""
    from htsweep.services.tracking import init_store

    path = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    init_store(f"sqlite:///{path}")
    return path


@pytest.fixture()
def sqlite_uri(tmp_path, _migrated_db):
    """A real, empty, already migrated sqlite tracking store in ``tmp_path/mlflow.db``."""
    import shutil

    shutil.copyfile(_migrated_db, tmp_path / "mlflow.db")
    return f"sqlite:///{tmp_path / 'mlflow.db'}"
