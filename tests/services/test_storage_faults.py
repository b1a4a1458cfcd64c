"""Storage faults: a hung MLflow server (accepts, never answers), a refused one, the end-of-sweep flush
under one deadline, `htsweep sync` replaying journals, and a full disk (ENOSPC) under a trial.

Real parts: a real socket that never answers, a loopback port nobody listens on, real training with
the real monitor and logger, a real sqlite MLflow store to replay into, and a real tmpfs of a few KiB
(mounted in a private mount namespace with ``unshare``, so no privilege is needed where user
namespaces are allowed).
"""

from __future__ import annotations

import json
import math
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

mlflow = pytest.importorskip("mlflow")

from htsweep.services.buffer import BufferedClient, flush_journals  # noqa: E402
from htsweep.services.mlflow_server import free_port  # noqa: E402
from htsweep.services.tracking import END_REASON_TAG, TrackingConfig  # noqa: E402
from htsweep.sweeps.trial_logger import MlflowTrialLogger  # noqa: E402
from htsweep.trainers.monitor import SpectralMonitor  # noqa: E402
from htsweep.trainers.train import Trainer  # noqa: E402

HTTP_TIMEOUT_S = 1  # MLFLOW_HTTP_REQUEST_TIMEOUT for these tests (no retries: see conftest)


@pytest.fixture()
def hung_server():
    """``http://127.0.0.1:PORT`` of a server that accepts every connection and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        sock.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(sock.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    sock.close()


@pytest.fixture()
def fast_http(monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", str(HTTP_TIMEOUT_S))


def _down_uri(kind: str, hung: str) -> str:
    return hung if kind == "hung" else f"http://127.0.0.1:{free_port()}"


def _sweep_dir(tmp_path: Path, sqlite_uri: str, experiment: str) -> Path:
    """A minimal sweep directory whose store is ``sqlite_uri`` (what `htsweep sync` reads)."""
    from htsweep.sweeps.workdir import SweepMeta

    workdir = tmp_path / "sweep"
    workdir.mkdir()
    SweepMeta(name=experiment, workdir=str(workdir), tracking_uri=sqlite_uri, optuna_storage="sqlite:///unused.db",
              storage_path=str(workdir), experiment=experiment).save()
    # Artifacts of the replayed experiment go to tmp_path, not to MLflow's default ./mlruns.
    mlflow.MlflowClient(sqlite_uri).create_experiment(experiment, artifact_location=(tmp_path / "art").as_uri())
    return workdir


@pytest.mark.parametrize("kind", ["hung", "refused"])
def test_trial_against_a_dead_server_trains_on_journals_and_sync_replays_everything(
        kind, hung_server, fast_http, tmp_path, sqlite_uri, tiny_train_config):
    from typer.testing import CliRunner

    from htsweep.sweeps.cli import app

    uri = _down_uri(kind, hung_server)
    workdir = _sweep_dir(tmp_path, sqlite_uri, "outage")
    # One call to the dead server costs at most the HTTP timeout (retries are off here).
    probe = BufferedClient(uri, journal=tmp_path / "probe.jsonl", retry_interval=60.0)
    t0 = time.monotonic()
    assert not probe.submit({"op": "ensure_run", "ref": "local:p", "experiment": "outage", "match": ["trial_id", "p"]})
    call_s = time.monotonic() - t0
    assert call_s < HTTP_TIMEOUT_S + 1.5, call_s
    if kind == "hung":
        assert call_s >= HTTP_TIMEOUT_S * 0.9  # it did wait for an answer that never came

    cfg = TrackingConfig(uri, experiment="outage", buffer_dir=str(workdir / "mlbuffer"), retry_interval=0.5,
                         flush_timeout=1.0)
    logger = MlflowTrialLogger(cfg, trial_id="trial_down", params={"lr": 0.05})
    trainer = Trainer(tiny_train_config(steps=40), callbacks=[SpectralMonitor(), logger])
    t0 = time.monotonic()
    trainer.fit()  # the outage never fails the trial
    took = time.monotonic() - t0
    # The server was tried once per back-off window (0.5, 1, 2, 4 ... s), plus the final flush (1 s),
    # each attempt costing at most one call: the trial never waits per write.
    attempts = logger._buffer.n_attempts_failed
    assert 1 <= attempts <= 2 + math.log2(1 + took / 0.5) + 2, (attempts, took)
    n_ops = logger.pending
    assert n_ops >= 12 and logger.run_id is None  # ensure_run, params, 4 reports, 4 npz, figures, summary, end
    journal = workdir / "mlbuffer" / "trial_down.jsonl"
    assert len(journal.read_text().splitlines()) == n_ops

    # The end-of-sweep flush: one deadline for every journal, not one per journal.
    for extra in "abc":
        shutil.copy(journal, journal.with_name(f"copy_{extra}.jsonl"))
    t0 = time.monotonic()
    assert flush_journals(uri, workdir / "mlbuffer", timeout=1.5) == (0, 4 * n_ops)
    assert time.monotonic() - t0 < 1.5 + HTTP_TIMEOUT_S + 2.0
    for extra in "abc":
        journal.with_name(f"copy_{extra}.jsonl").unlink()

    # The server is still down: `htsweep sync --tracking-uri <down>` keeps everything, exit 1.
    runner = CliRunner()
    still = runner.invoke(app, ["sync", str(workdir), "--timeout", "0", "--tracking-uri", uri])
    assert still.exit_code == 1 and f"{n_ops} still pending" in still.output
    # Sent to the sweep's own store: everything arrives, exactly once.
    if kind == "refused":  # as on a worker node: the journals under the same path, no sweep.json
        meta_file = workdir / "sweep.json"
        hidden = meta_file.rename(tmp_path / "sweep.json.hidden")
        refused = runner.invoke(app, ["sync", str(workdir)])
        assert refused.exit_code == 2 and "pass --tracking-uri" in refused.output, refused.output
        done = runner.invoke(app, ["sync", str(workdir), "--tracking-uri", sqlite_uri])
        hidden.rename(meta_file)
    else:
        done = runner.invoke(app, ["sync", str(workdir)])
    assert done.exit_code == 0, done.output
    assert f"Sent {n_ops} operation(s) from 1 journal(s)" in done.output
    assert not journal.exists()
    client = mlflow.MlflowClient(sqlite_uri)
    runs = client.search_runs([client.get_experiment_by_name("outage").experiment_id])
    assert [r.data.tags["trial_id"] for r in runs] == ["trial_down"]
    run = runs[0]
    assert run.info.status == "FINISHED" and run.data.tags[END_REASON_TAG] == "completed"
    assert run.data.params["lr"] == "0.05"
    layer = trainer.spectral.rows[0]["name"]
    for key in ("alpha_mean", f"alpha/{layer}", "test_acc", "train_loss"):
        assert [m.step for m in client.get_metric_history(run.info.run_id, key)] == [10, 20, 30, 40], key
    assert {a.path for a in client.list_artifacts(run.info.run_id, "esd")} >= {f"esd/step_{s}.npz" for s in (10, 20, 30, 40)}
    again = runner.invoke(app, ["sync", str(workdir)])
    assert again.exit_code == 0 and "Nothing to sync" in again.output


# -- ENOSPC --------------------------------------------------------------------------------------------------------
ENOSPC_SCRIPT = Path(__file__).with_name("enospc_trial.py")
TMPFS_KIB = 64


def _run_on_tiny_tmpfs(mountpoint: Path, *args: str) -> subprocess.CompletedProcess:
    """Run the ENOSPC script with a TMPFS_KIB tmpfs on ``mountpoint`` (private mount namespace)."""
    if shutil.which("unshare") is None:
        pytest.skip("ENOSPC test needs util-linux `unshare` to mount a private tmpfs")
    mount = f'mount -t tmpfs -o size={TMPFS_KIB}k htsweep-enospc "$0" && exec "$@"'
    cmd = ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", mount, str(mountpoint),
           sys.executable, str(ENOSPC_SCRIPT), str(mountpoint), *args]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)
    if proc.returncode == 97:  # the script's code for "the mount did not happen"
        pytest.skip(f"this machine forbids mounting a private tmpfs: {proc.stdout.strip()[-300:]}")
    if proc.returncode != 0 and ("unshare failed" in proc.stdout or "Operation not permitted" in proc.stdout):
        pytest.skip(f"this machine forbids user/mount namespaces: {proc.stdout.strip()[-300:]}")
    return proc


def test_disk_full_keeps_training_keeps_what_fits_and_reports_what_was_dropped(tmp_path, sqlite_uri):
    mountpoint = tmp_path / "tiny"
    mountpoint.mkdir()
    art = tmp_path / "art"
    mlflow.MlflowClient(sqlite_uri).create_experiment("enospc", artifact_location=art.as_uri())
    proc = _run_on_tiny_tmpfs(mountpoint, sqlite_uri, f"http://127.0.0.1:{free_port()}")
    assert proc.returncode == 0, proc.stdout[-4000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])

    # Staging artifacts on the full disk: training went on, every metric arrived, the small .npz files fit.
    assert report["steps"] == 40 and report["pending"] == 0
    client = mlflow.MlflowClient(sqlite_uri)
    run = client.get_run(report["run_id"])
    assert run.info.status == "FINISHED" and run.data.tags[END_REASON_TAG] == "completed"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "alpha_mean")] == [10, 20, 30, 40]
    esd = sorted(a.path for a in client.list_artifacts(run.info.run_id, "esd"))
    assert [p for p in esd if p.endswith(".npz")] == [f"esd/step_{s}.npz" for s in (10, 20, 30, 40)]
    # The final ESD figures did not fit: dropped, counted, named in the run's tag; warned once.
    dropped = run.data.tags["htsweep.dropped"]
    assert dropped.startswith(f"{report['n_dropped']} artifact(s), disk full: ") and report["n_dropped"] >= 1
    assert all(name.startswith("esd/final/") and name.endswith(".png") for name in report["dropped"])
    assert "esd/final" not in esd
    assert report["staging_warnings"] == 1

    # Journaling on the full disk while the server is down: no error, what fits is journaled (a valid
    # prefix), the rest waits in memory; when the server answers, all 150 points arrive.
    assert report["journal"]["unsaved"] > 0 and report["journal"]["warnings"] == 1
    assert 0 < report["journal"]["lines_on_disk"] < 151
    assert report["journal"]["lines_valid"] == report["journal"]["lines_on_disk"]
    assert report["journal"]["pending_before"] == 151 and report["journal"]["pending_after"] == 0
    history = client.get_metric_history(report["journal"]["run_id"], "m")
    assert [m.step for m in history] == list(range(150))
