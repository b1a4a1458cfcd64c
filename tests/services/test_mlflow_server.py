"""``serve_ui`` (the body of ``htsweep ui``): a real ``mlflow server`` on 127.0.0.1 until Ctrl-C."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import urllib.request

import pytest

pytest.importorskip("mlflow")


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1.0)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _sweep_dir(tmp_path, tracking_uri):
    """A sweep directory as `htsweep run` leaves it (spec.yaml + sweep.json), tracking to ``tracking_uri``."""
    from htsweep.sweeps.spec import SweepSpec
    from htsweep.sweeps.workdir import SweepMeta

    work = tmp_path / "sweep"
    work.mkdir()
    SweepSpec.from_dict({"name": "ui", "model": "mlp3", "dataset": "digits", "train": {"steps": 10},
                         "search": {"lr": {"type": "loguniform", "low": 0.01, "high": 0.1}}}).to_yaml(work / "spec.yaml")
    SweepMeta(name="ui", workdir=str(work), tracking_uri=tracking_uri, optuna_storage=f"sqlite:///{work}/optuna.db",
              storage_path=str(work), experiment="ui", status="finished").save()
    return work


def _htsweep(*args):
    return [sys.executable, "-m", "htsweep.sweeps.cli", *map(str, args)]


def test_ui_on_a_taken_port_fails_in_one_line(tmp_path):
    work = _sweep_dir(tmp_path, f"sqlite:///{tmp_path / 'sweep' / 'mlflow.db'}")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(_htsweep("ui", work, "--port", port), capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == f"error: port {port} is in use; try --port 0"
    assert "Traceback" not in done.stdout + done.stderr


def test_ui_of_a_remote_tracking_server_prints_its_url_without_the_password(tmp_path):
    import os

    secret_uri = "http://alice:s3cret@10.0.0.7:5000"
    work = _sweep_dir(tmp_path, secret_uri)  # sweep.json keeps it masked; the password comes from the env
    assert "s3cret" not in (work / "sweep.json").read_text()
    done = subprocess.run(_htsweep("ui", work), capture_output=True, text=True, timeout=120,
                          env={**os.environ, "HTSWEEP_TRACKING_URI": secret_uri})
    assert done.returncode == 0 and "http://alice:***@10.0.0.7:5000" in done.stdout
    assert "s3cret" not in done.stdout + done.stderr


@pytest.mark.integration
def test_ui_serves_the_sweeps_own_tracking_store_and_stops_on_ctrl_c(tmp_path):
    """`htsweep ui` prints its URL once MLflow answers, serves the UI and the store sweep.json names
    (not <workdir>/mlflow.db), and Ctrl-C takes the server's whole process group down."""
    import json

    from htsweep.services.tracking import init_store

    store = f"sqlite:///{tmp_path / 'elsewhere' / 'store.db'}"
    init_store(store)
    import mlflow

    mlflow.MlflowClient(store).create_experiment("only-in-elsewhere",
                                                 artifact_location=(tmp_path / "art").as_uri())
    work = _sweep_dir(tmp_path, store)
    proc = subprocess.Popen(_htsweep("ui", work, "--port", 0), stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    try:
        line = proc.stdout.readline()  # blocks until the server answered /health
        match = re.search(r"(http://127\.0\.0\.1:(\d+))", line)
        assert match, line
        url, port = match.group(1), int(match.group(2))
        with urllib.request.urlopen(url + "/health", timeout=10) as resp:
            assert resp.status == 200
        with urllib.request.urlopen(url + "/", timeout=10) as resp:  # the UI itself
            assert resp.status == 200 and b"<html" in resp.read(4096).lower()
        req = urllib.request.Request(url + "/api/2.0/mlflow/experiments/get-by-name"
                                     "?experiment_name=only-in-elsewhere")
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert json.load(resp)["experiment"]["name"] == "only-in-elsewhere"
        assert not (work / "mlflow.db").exists()
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        assert proc.wait(timeout=30) == 0
        assert not _port_open(port)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
