"""`status` / `best` views: the ESD actor's load for `--watch` (a real actor on a local Ray) and
the regression columns (test loss and R² instead of test accuracy)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch
from rich.console import Console

from htsweep.sweeps.spec import SweepSpec
from htsweep.sweeps.status import (
    EsdActorProbe,
    TrialRow,
    _local_ray_address,
    esd_actor_line,
    is_regression,
    trials_table,
)
from htsweep.sweeps.workdir import SweepMeta


def _meta(tmp_path, namespace: str) -> SweepMeta:
    return SweepMeta(name="w", workdir=str(tmp_path), tracking_uri=f"sqlite:///{tmp_path}/mlflow.db",
                     optuna_storage=f"sqlite:///{tmp_path}/optuna.db", storage_path=str(tmp_path / "tune"),
                     experiment="w", driver_pid=os.getpid(), esd_namespace=namespace)


@pytest.mark.integration
def test_probe_finds_the_drivers_ray_and_reads_queue_depth_and_time_per_matrix(ray_local, tmp_path):
    from htsweep.analysis.layers import LayerMatrix
    from htsweep.services.esd_actor import DEFAULT_NAME, ActorAnalyzer, get_esd_service, shutdown_esd_service

    # This process started the local Ray, as `htsweep run` does: its GCS is our child process.
    assert _local_ray_address(os.getpid()) == ray_local.get_runtime_context().gcs_address
    assert _local_ray_address(None) is None
    namespace = f"probe-{uuid.uuid4().hex[:8]}"
    handle = get_esd_service(DEFAULT_NAME, namespace=namespace)
    try:
        rng = np.random.default_rng(0)
        layers = [LayerMatrix.from_tensor(f"l{i}", "linear", torch.from_numpy(rng.normal(size=(96, 48))))
                  for i in range(3)]
        ActorAnalyzer(handle, fallback=False)(layers, 0)
        probe = EsdActorProbe(_meta(tmp_path, namespace))
        stats = probe.stats()
        assert isinstance(stats, dict), stats
        assert stats["queue_depth"] == 0 and stats["matrices"] == 3 and stats["time_per_matrix_s"] > 0
        line = esd_actor_line(stats)
        assert "queue depth 0" in line and f"{stats['time_per_matrix_s'] * 1e3:.1f} ms per matrix" in line
        assert "3 matrices" in line
        probe.close()  # this process owned its Ray connection already: close leaves it alone
        assert ray_local.is_initialized()
        # What `htsweep status --watch` does: another process joins the driver's Ray and reads the actor.
        code = ("import json, sys\n"
                "from sweeps.status import EsdActorProbe\n"
                "from sweeps.workdir import SweepMeta\n"
                "probe = EsdActorProbe(SweepMeta(**json.loads(sys.argv[1])))\n"
                "s = probe.stats(); probe.close()\n"
                "print(json.dumps(s if isinstance(s, str) else {k: s[k] for k in ('matrices', 'queue_depth')}))\n")
        meta = _meta(tmp_path, namespace)
        fields = {k: getattr(meta, k) for k in ("name", "workdir", "tracking_uri", "optuna_storage", "storage_path",
                                                 "experiment", "driver_pid", "esd_namespace")}
        # a fresh shell's environment: Ray's auth mode is not inherited from this process's ray.init
        env = {k: v for k, v in os.environ.items() if k not in ("RAY_AUTH_MODE", "RAY_ADDRESS")}
        out = subprocess.run([sys.executable, "-c", code, json.dumps(fields)], capture_output=True, text=True,
                             timeout=180, cwd=Path(__file__).resolve().parents[2], env=env)
        assert json.loads(out.stdout.strip().splitlines()[-1]) == {"matrices": 3, "queue_depth": 0}, out.stderr[-2000:]
    finally:
        shutdown_esd_service(DEFAULT_NAME, namespace=namespace)
        del handle


@pytest.mark.integration
def test_probe_reports_a_missing_actor_as_text(ray_local, tmp_path):
    probe = EsdActorProbe(_meta(tmp_path, f"none-{uuid.uuid4().hex[:8]}"))
    first = probe.stats()
    assert isinstance(first, str) and "htsweep-esd" in first
    assert probe.stats() == first  # not looked up again at every refresh
    assert esd_actor_line(first).startswith("[dim]ESD actor: ")


def _spec() -> SweepSpec:
    return SweepSpec.model_validate({
        "name": "ts", "model": "student", "dataset": "teacher_student", "train": {"steps": 10},
        "search": {"lr": {"type": "loguniform", "low": 0.01, "high": 1.0}},
        "objective": {"target_alpha": 2.0}, "num_samples": 2,
    })


def test_regression_sweeps_show_test_loss_and_r2():
    rows = [TrialRow(number=0, state="COMPLETE", params={"lr": 0.1}, alpha=3.0, alpha_error=1.0, phase="bulk_decay",
                     test_loss=0.2512, test_r2=0.6134, values=(1.0,)),
            TrialRow(number=1, state="RUNNING", params={"lr": 0.5})]
    assert is_regression(rows)
    console = Console(record=True, width=160)
    console.print(trials_table(_spec(), rows))
    out = console.export_text()
    assert "test loss" in out and "R²" in out and "test acc" not in out
    assert "0.251" in out and "0.613" in out
    classification = [TrialRow(number=0, state="COMPLETE", params={}, test_acc=0.9, test_loss=0.3)]
    assert not is_regression(classification) and not is_regression([])
    assert math.isnan(rows[1].test_r2)
