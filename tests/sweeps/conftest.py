"""Fixtures shared by the sweep tests: one small finished sweep for every read-only assertion."""

from __future__ import annotations

import pytest
from sweep_helpers import cli_env, run_cli, tiny_spec, write_spec


@pytest.fixture(scope="session")
def finished(tmp_path_factory):
    """One completed sweep of 4 trials (`htsweep run` in a subprocess): (workdir, CompletedProcess).

    Session-scoped so the end-to-end checks, the report and the MLflow UI tests read the same
    sweep instead of training it again; tests must not modify it.
    """
    tmp = tmp_path_factory.mktemp("e2e")
    spec = write_spec(tmp / "tiny.yaml", tiny_spec("e2e"))
    workdir = tmp / "sweep"
    proc = run_cli("run", spec, "--workdir", workdir, "--quiet", env=cli_env())
    return workdir, proc
