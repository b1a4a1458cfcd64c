"""Shared pytest setup: the `slow` gate and a private local Ray for integration tests."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import textwrap
import uuid

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Slow tests are opt-in so the default suite stays within CI's budget on 2 cores.
    if os.environ.get("HTSWEEP_SLOW", "0") not in ("", "0"):
        return
    skip = pytest.mark.skip(reason="slow: set HTSWEEP_SLOW=1 (or `make test-slow`) to run")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def ray_local():
    """A real local Ray (2 CPUs) in a temp dir of its own, shared by the whole test session."""
    ray = pytest.importorskip("ray")
    # Short path: Ray's unix sockets live under the temp dir and have a ~107 char limit.
    temp_dir = tempfile.mkdtemp(prefix="htsr-", dir="/tmp")
    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=2, include_dashboard=False, _temp_dir=temp_dir, log_to_driver=False,
             configure_logging=False)
    yield ray
    ray.shutdown()
    shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.fixture()
def one_torch_thread():
    """Torch single-threaded for the test: suites share the box's 2 cores, and oversubscribed OpenMP
    threads make small CPU training runs many times slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _tracking_uri_does_not_leak():
    """``mlflow.set_tracking_uri`` also sets ``MLFLOW_TRACKING_URI``: a test that points MLflow at its
    store (or restores MLflow's default, ``./mlflow.db``) must not redirect the next test's runs."""
    keys = ("MLFLOW_TRACKING_URI", "HTSWEEP_TRACKING_URI")
    saved = {key: os.environ.get(key) for key in keys}
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture
def user_pkg(tmp_path, monkeypatch):
    """A fresh package (unique name) on sys.path; yields ``write(module, source) -> "pkg.module"``."""
    name = f"upkg_{uuid.uuid4().hex[:8]}"
    root = tmp_path / name
    root.mkdir()
    (root / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))

    def write(module: str, source: str) -> str:
        (root / f"{module}.py").write_text(textwrap.dedent(source))
        return f"{name}.{module}"

    yield write
    for mod in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
        del sys.modules[mod]
