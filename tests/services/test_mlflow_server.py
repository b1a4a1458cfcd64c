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


def test_serve_ui_prints_url_serves_and_stops_on_ctrl_c(tmp_path):
    code = ("from pathlib import Path; from services.mlflow_server import serve_ui; "
            f"serve_ui(Path({str(tmp_path)!r}), port=0)")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True)
    try:
        line = proc.stdout.readline()  # blocks until the server answered /health
        match = re.search(r"(http://127\.0\.0\.1:(\d+))", line)
        assert match, line
        url, port = match.group(1), int(match.group(2))
        with urllib.request.urlopen(url + "/health", timeout=10) as resp:
            assert resp.status == 200
        with urllib.request.urlopen(url + "/", timeout=10) as resp:  # the UI itself
            assert resp.status == 200 and b"<html" in resp.read(4096).lower()
        assert (tmp_path / "mlflow.db").exists() and (tmp_path / "mlartifacts").is_dir()
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        assert proc.wait(timeout=30) == 0
        assert not _port_open(port)  # the server's whole process group went with it
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
