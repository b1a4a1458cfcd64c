"""The outage journal: ordered replay, idempotent run creation, permanent rejections, chunking, and
deferred batches (journaled at once, coalesced by the background sender, replayed after a SIGKILL).

A tracking URI on a loopback port nobody listens on stands in for a server that is down; the
journal is then replayed into a real sqlite store, the way a restarted process would flush it.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

mlflow = pytest.importorskip("mlflow")

from mlflow.exceptions import MlflowException  # noqa: E402
from mlflow.protos.databricks_pb2 import INTERNAL_ERROR, INVALID_PARAMETER_VALUE  # noqa: E402

from htsweep.services.buffer import BufferedClient, ensure_run, is_transient  # noqa: E402
from htsweep.services.mlflow_server import free_port  # noqa: E402


@pytest.fixture()
def sqlite_uri(tmp_path, sqlite_uri):
    uri = sqlite_uri
    # Experiments made here get artifacts in tmp_path, not MLflow's default ./mlruns in the cwd.
    mlflow.MlflowClient(uri).create_experiment("exp", artifact_location=(tmp_path / "art").as_uri())
    return uri


def test_is_transient_classification():
    assert is_transient(MlflowException("API request failed", error_code=INTERNAL_ERROR))
    assert is_transient(ConnectionError("refused"))
    assert not is_transient(MlflowException("changed param", error_code=INVALID_PARAMETER_VALUE))
    assert not is_transient(FileNotFoundError("gone"))


def test_journal_replays_in_order_after_outage(tmp_path, sqlite_uri):
    journal = tmp_path / "buf" / "t1.jsonl"
    down = BufferedClient(f"http://127.0.0.1:{free_port()}", journal=journal, retry_interval=60.0)
    assert not down.submit({"op": "ensure_run", "ref": "local:t1", "experiment": "exp",
                            "match": ["trial_id", "t1"], "tags": {"k": "v"}, "run_name": "t1"})
    for step in range(5):
        down.submit({"op": "log_batch", "run": "local:t1", "metrics": [["loss", 1.0 / (step + 1), 1000 + step, step]]})
    art = tmp_path / "a.txt"
    art.write_text("payload")
    down.submit({"op": "log_artifact", "run": "local:t1", "path": str(art), "artifact_path": "files",
                 "delete_after": True})
    down.submit({"op": "set_terminated", "run": "local:t1", "status": "FINISHED"})
    assert down.pending == 8 and down.run_ids == {}
    assert len(journal.read_text().splitlines()) == 8

    # A new process (or the driver's flush_buffers) picks the journal up and sends it all.
    up = BufferedClient(sqlite_uri, journal=journal)
    assert up.pending == 8
    assert up.flush()
    assert up.pending == 0 and not journal.exists()
    run_id = up.resolve("local:t1")
    client = mlflow.MlflowClient(sqlite_uri)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["trial_id"] == "t1" and run.data.tags["k"] == "v"
    hist = sorted((m.step, m.value) for m in client.get_metric_history(run_id, "loss"))
    assert hist == [(s, 1.0 / (s + 1)) for s in range(5)]
    assert [a.path for a in client.list_artifacts(run_id, "files")] == ["files/a.txt"]
    assert not art.exists()  # staged file removed once uploaded

    # Replaying again is idempotent: the run is found by its trial_id tag, metrics not duplicated.
    again = BufferedClient(sqlite_uri, journal=tmp_path / "again.jsonl")
    again.submit({"op": "ensure_run", "ref": "local:t1", "experiment": "exp", "match": ["trial_id", "t1"]})
    again.submit({"op": "log_batch", "run": "local:t1", "metrics": [["loss", 1.0, 1000, 0]]})
    assert again.resolve("local:t1") == run_id
    assert len(client.get_metric_history(run_id, "loss")) == 5


def test_permanent_errors_are_set_aside_not_retried(tmp_path, sqlite_uri):
    buf = BufferedClient(sqlite_uri, journal=tmp_path / "t.jsonl")
    buf.submit({"op": "ensure_run", "ref": "local:t", "experiment": "exp", "match": ["trial_id", "t"]})
    assert buf.submit({"op": "log_batch", "run": "local:t", "params": [["lr", "0.1"]]})
    # MLflow refuses to change a logged param: rejected for good, recorded, and the queue moves on.
    assert buf.submit({"op": "log_batch", "run": "local:t", "params": [["lr", "0.2"]]})
    assert buf.submit({"op": "log_batch", "run": "local:t", "metrics": [["m", 1.0, 1, 0]]})
    assert buf.n_rejected == 1 and buf.pending == 0
    rejected = [json.loads(line) for line in buf.rejected_path.read_text().splitlines()]
    assert rejected[0]["op"]["params"] == [["lr", "0.2"]]
    run = mlflow.MlflowClient(sqlite_uri).get_run(buf.resolve("local:t"))
    assert run.data.params["lr"] == "0.1" and run.data.metrics["m"] == 1.0


def test_large_batches_are_chunked_to_mlflow_limits(tmp_path, sqlite_uri):
    buf = BufferedClient(sqlite_uri, journal=tmp_path / "t.jsonl")
    buf.submit({"op": "ensure_run", "ref": "local:t", "experiment": "exp", "match": ["trial_id", "t"]})
    metrics = [[f"m{i}", float(i), 1, 3] for i in range(2500)]
    params = [[f"p{i}", str(i)] for i in range(250)]
    assert buf.submit({"op": "log_batch", "run": "local:t", "metrics": metrics, "params": params})
    run = mlflow.MlflowClient(sqlite_uri).get_run(buf.resolve("local:t"))
    assert len(run.data.metrics) == 2500 and len(run.data.params) == 250


def test_ensure_run_reopens_finished_run(tmp_path, sqlite_uri):
    client = mlflow.MlflowClient(sqlite_uri)
    rid = ensure_run(client, experiment="exp", match=("trial_id", "x"), run_name="x",
                     artifact_location=(tmp_path / "art").as_uri())
    client.set_terminated(rid, status="FAILED")
    assert ensure_run(client, experiment="exp", match=("trial_id", "x")) == rid
    assert client.get_run(rid).info.status == "RUNNING"


def test_flush_buffers_sends_journals_left_by_finished_trials(tmp_path, sqlite_uri):
    from htsweep.services.tracking import TrackingConfig, flush_buffers

    down = TrackingConfig(f"http://127.0.0.1:{free_port()}", experiment="exp", buffer_dir=str(tmp_path / "buf"))
    for trial in ("a", "b"):
        buf = BufferedClient(down.tracking_uri, journal=tmp_path / "buf" / f"{trial}.jsonl", retry_interval=60.0)
        buf.submit({"op": "ensure_run", "ref": f"local:{trial}", "experiment": "exp", "match": ["trial_id", trial]})
        buf.submit({"op": "log_batch", "run": f"local:{trial}", "metrics": [["m", 1.0, 5, 7]]})
        buf.submit({"op": "set_terminated", "run": f"local:{trial}", "status": "FINISHED"})
    assert flush_buffers(down) == 6  # still down: nothing sent, nothing lost
    up = TrackingConfig(sqlite_uri, experiment="exp", buffer_dir=str(tmp_path / "buf"))
    assert flush_buffers(up) == 0
    client = mlflow.MlflowClient(sqlite_uri)
    runs = client.search_runs([client.get_experiment_by_name("exp").experiment_id])
    assert sorted(r.data.tags["trial_id"] for r in runs) == ["a", "b"]
    assert all(r.info.status == "FINISHED" and r.data.metrics["m"] == 1.0 for r in runs)
    assert list((tmp_path / "buf").glob("*.jsonl")) == []


def _history(uri: str, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in mlflow.MlflowClient(uri).get_metric_history(run_id, key))


def test_deferred_batches_are_coalesced_by_the_background_sender(tmp_path, sqlite_uri):
    buf = BufferedClient(sqlite_uri, journal=tmp_path / "t.jsonl", flush_interval=0.3)
    assert buf.submit({"op": "ensure_run", "ref": "local:t", "experiment": "exp", "match": ["trial_id", "t"]})
    for step in range(30):
        tags = [["phase", f"p{step}"]] if step % 10 == 0 else []
        assert not buf.submit({"op": "log_batch", "run": "local:t", "metrics": [["loss", step / 10, 1000 + step, step]],
                               "tags": tags})
    assert buf.pending == 30 and len(buf.journal.read_text().splitlines()) == 30  # journaled before any send
    deadline = time.monotonic() + 30
    while buf.pending and time.monotonic() < deadline:
        time.sleep(0.05)
    assert buf.pending == 0 and not buf.journal.exists()  # sent by the thread, without a flush
    assert buf.n_sent == 31 and buf.n_requests <= 3  # ensure_run + the 30 batches in one or two requests
    run_id = buf.resolve("local:t")
    assert _history(sqlite_uri, run_id, "loss") == [(s, s / 10) for s in range(30)]
    assert mlflow.MlflowClient(sqlite_uri).get_run(run_id).data.tags["phase"] == "p20"  # the last value set wins
    buf.close()
    assert buf.submit({"op": "log_batch", "run": "local:t", "metrics": [["loss", 9.0, 2000, 30]]})  # closed: sent now


def test_a_rejected_batch_among_coalesced_ones_is_set_aside_alone(tmp_path, sqlite_uri):
    buf = BufferedClient(sqlite_uri, journal=tmp_path / "t.jsonl", flush_interval=3600.0)
    buf.submit({"op": "ensure_run", "ref": "local:t", "experiment": "exp", "match": ["trial_id", "t"]})
    buf.submit({"op": "log_batch", "run": "local:t", "metrics": [["m", 1.0, 1, 0]]})
    buf.submit({"op": "log_batch", "run": "local:t", "metrics": [["bad\nkey", 2.0, 1, 1]]})  # an illegal key
    buf.submit({"op": "log_batch", "run": "local:t", "metrics": [["m", 3.0, 1, 2]]})
    assert buf.send_now()
    assert buf.n_rejected == 1 and buf.n_sent == 3  # ensure_run and the two good batches
    assert json.loads(buf.rejected_path.read_text())["op"]["metrics"][0][0] == "bad\nkey"
    assert _history(sqlite_uri, buf.resolve("local:t"), "m") == [(0, 1.0), (2, 3.0)]


_KILLED_WRITER = """
import sys, time
from htsweep.services.buffer import BufferedClient
buf = BufferedClient(sys.argv[1], journal=sys.argv[2], flush_interval=3600.0)
buf.submit({"op": "ensure_run", "ref": "local:k", "experiment": "exp", "match": ["trial_id", "k"]})
for step in range(5):
    buf.submit({"op": "log_batch", "run": "local:k", "metrics": [["loss", float(step), 1000 + step, step]]})
print("submitted", flush=True)
time.sleep(600)
"""


def test_deferred_batches_of_a_killed_process_are_sent_by_its_successor_once(tmp_path, sqlite_uri):
    journal = tmp_path / "k.jsonl"
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_WRITER, sqlite_uri, str(journal)], stdout=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout.readline().strip() == "submitted"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    run_id = mlflow.MlflowClient(sqlite_uri).search_runs(
        [mlflow.MlflowClient(sqlite_uri).get_experiment_by_name("exp").experiment_id])[0].info.run_id
    assert _history(sqlite_uri, run_id, "loss") == []  # the run was made, nothing sent before the kill
    # The resumed trial: its client loads the journal and sends it before its own writes; the steps the
    # killed process logged are not logged again when it re-runs them.
    buf = BufferedClient(sqlite_uri, journal=journal)
    buf.submit({"op": "ensure_run", "ref": "local:k", "experiment": "exp", "match": ["trial_id", "k"]})
    for step in range(3, 7):
        buf.submit({"op": "log_batch", "run": "local:k", "metrics": [["loss", 10.0 + step, 5000 + step, step]]})
    assert _history(sqlite_uri, run_id, "loss") == [(0, 0.0), (1, 1.0), (2, 2.0), (3, 3.0), (4, 4.0), (5, 15.0),
                                                    (6, 16.0)]
    assert buf.n_skipped == 2 and not journal.exists()
