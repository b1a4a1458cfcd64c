"""Start and stop a local ``mlflow server`` (tracking API + UI) bound to 127.0.0.1.

The server runs in its own process group (``mlflow server`` forks several worker processes), so
stopping it ends every process it started and nothing else. :func:`serve_ui` is the body of the
``htsweep ui`` command: it serves a sweep's store, prints the URL and blocks until Ctrl-C.

Examples
--------
>>> with start_server("runs/quickstart", port=0) as server:  # doctest: +SKIP
...     print(server.url)
http://127.0.0.1:41234
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["MlflowServer", "check_port_free", "free_port", "serve_ui", "start_server", "wait_for_health"]

LOCALHOST = "127.0.0.1"


def free_port(host: str = LOCALHOST) -> int:
    """Return a TCP port on ``host`` that is free right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def check_port_free(port: int, host: str = LOCALHOST) -> None:
    """Raise ``RuntimeError`` if ``host:port`` cannot be bound (0 always can).

    A taken port otherwise shows only as the server exiting before ``/health``, after seconds of
    startup and with the reason buried in its log.
    """
    if not port:
        return
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, int(port)))
        except OSError:
            raise RuntimeError(f"port {port} is in use; try --port 0") from None


def wait_for_health(url: str, *, timeout: float = 60.0, process: subprocess.Popen | None = None) -> None:
    """Poll ``<url>/health`` until it answers 200.

    Parameters
    ----------
    url : str
        Base URL of the server, e.g. ``"http://127.0.0.1:5000"``.
    timeout : float, default=60.0
        Seconds to wait before giving up.
    process : subprocess.Popen, optional
        The server process; if it exits while we wait, fail at once.

    Raises
    ------
    TimeoutError
        The server did not become healthy within ``timeout`` seconds.
    RuntimeError
        ``process`` exited before the server became healthy.
    """
    deadline = time.monotonic() + timeout
    health = url.rstrip("/") + "/health"
    while True:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"mlflow server exited with code {process.returncode} before {health} answered")
        try:
            with urllib.request.urlopen(health, timeout=2.0) as resp:  # noqa: S310 - loopback only
                if resp.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"mlflow server at {url} not healthy after {timeout:.0f} s")
        time.sleep(0.25)


@dataclass
class MlflowServer:
    """A running ``mlflow server`` started by :func:`start_server`.

    Attributes
    ----------
    url : str
        ``http://127.0.0.1:<port>``; use it as the tracking URI.
    port : int
        The TCP port it listens on.
    backend_store_uri : str
        Where runs are stored (e.g. ``sqlite:///<workdir>/mlflow.db``).
    artifacts_destination : str
        Where proxied artifacts are stored.
    process : subprocess.Popen
        The server's leader process (its pid is also its process-group id).
    log_path : Path or None
        File receiving the server's stdout and stderr.
    """

    url: str
    port: int
    backend_store_uri: str
    artifacts_destination: str
    process: subprocess.Popen = field(repr=False)
    log_path: Path | None = None

    @property
    def running(self) -> bool:
        """True while the leader process has not exited."""
        return self.process.poll() is None

    def stop(self, *, timeout: float = 10.0) -> None:
        """Stop the whole process group: SIGTERM, then SIGKILL after ``timeout`` seconds."""
        pgid = self.process.pid  # start_new_session=True makes the leader's pid the group id
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(pgid, sig)
            except ProcessLookupError:
                break
            try:
                self.process.wait(timeout=wait)
            except subprocess.TimeoutExpired:
                continue
            break
        # The leader is gone; make sure no worker of the group outlives it.
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            try:
                os.killpg(pgid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                return
            time.sleep(0.05)

    def __enter__(self) -> MlflowServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_server(
    workdir: str | Path | None = None,
    *,
    backend_store_uri: str | None = None,
    artifacts_destination: str | Path | None = None,
    port: int = 0,
    host: str = LOCALHOST,
    workers: int = 1,
    timeout: float = 90.0,
    log_path: str | Path | None = None,
) -> MlflowServer:
    """Start ``mlflow server`` in its own process group and wait for ``/health``.

    Parameters
    ----------
    workdir : path-like, optional
        A sweep directory; gives the defaults ``sqlite:///<workdir>/mlflow.db`` and
        ``<workdir>/mlartifacts``.
    backend_store_uri : str, optional
        Overrides the backend store derived from ``workdir``.
    artifacts_destination : path-like or str, optional
        Overrides the artifact root derived from ``workdir``.
    port : int, default=0
        TCP port; 0 picks a free one.
    host : str, default='127.0.0.1'
        Interface to bind. Keep the loopback default unless the network is trusted.
    workers : int, default=1
        Server worker processes.
    timeout : float, default=90.0
        Seconds to wait for ``/health`` (a new sqlite store takes ~9 s on 2 cores).
    log_path : path-like, optional
        File for the server's output; default ``<workdir>/mlflow-server.log`` or DEVNULL.

    Returns
    -------
    MlflowServer
        Handle with ``url`` and ``stop()``; also a context manager.
    """
    if workdir is None and backend_store_uri is None:
        raise ValueError("start_server needs a workdir or a backend_store_uri")
    work = Path(workdir).resolve() if workdir is not None else None
    if work is not None:
        work.mkdir(parents=True, exist_ok=True)
    if backend_store_uri is None:
        backend_store_uri = f"sqlite:///{work / 'mlflow.db'}"
    if artifacts_destination is None:
        artifacts_destination = (work / "mlartifacts") if work is not None else Path("mlartifacts").resolve()
    dest = str(artifacts_destination)
    if "://" not in dest:
        Path(dest).mkdir(parents=True, exist_ok=True)
    if backend_store_uri.startswith("sqlite:///"):
        # Run migrations here, once, rather than racing inside the server's workers.
        from htsweep.services.tracking import init_store

        init_store(backend_store_uri)
    port = port or free_port(host)
    if log_path is None and work is not None:
        log_path = work / "mlflow-server.log"
    cmd = [
        sys.executable, "-m", "mlflow", "server",
        "--host", host, "--port", str(port),
        "--backend-store-uri", backend_store_uri,
        "--artifacts-destination", dest,
        "--workers", str(workers),
    ]
    env = dict(os.environ)
    # The job runner (for GenAI evaluation jobs) is a pool of extra processes we never use.
    env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    log_file = open(log_path, "ab") if log_path is not None else subprocess.DEVNULL  # noqa: SIM115
    try:
        process = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
            cmd, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
            start_new_session=True,
        )
    finally:
        if log_path is not None:
            log_file.close()
    server = MlflowServer(
        url=f"http://{host}:{port}", port=port, backend_store_uri=backend_store_uri,
        artifacts_destination=dest, process=process,
        log_path=Path(log_path) if log_path is not None else None,
    )
    try:
        wait_for_health(server.url, timeout=timeout, process=process)
    except BaseException:
        server.stop()
        raise
    return server


def serve_ui(workdir: Path, *, port: int = 5000, open_browser: bool = False,
             backend_store_uri: str | None = None, page: str = "") -> None:
    """Serve the MLflow UI for a sweep's store on 127.0.0.1 until Ctrl-C (``htsweep ui``).

    Parameters
    ----------
    workdir : Path
        The sweep directory (``mlartifacts/``, and ``mlflow.db`` unless ``backend_store_uri``).
    port : int, default=5000
        TCP port; 0 picks a free one.
    open_browser : bool, default=False
        Open the URL in the default web browser once the server is up.
    backend_store_uri : str, optional
        The sweep's tracking store (``sweep.json``'s ``tracking_uri``); default
        ``sqlite:///<workdir>/mlflow.db``.
    page : str, default=''
        Path appended to the server's URL for the page printed and opened (e.g. the runs table
        of :func:`services.tracking.runs_table_url`).

    Raises
    ------
    RuntimeError
        ``port`` is in use, or the server exited before it answered.
    TimeoutError
        The server did not answer in time.
    """
    workdir = Path(workdir)
    backend_store_uri = backend_store_uri or f"sqlite:///{workdir.resolve() / 'mlflow.db'}"
    check_port_free(port)
    if backend_store_uri.startswith("sqlite:///") and not Path(backend_store_uri[len("sqlite:///"):]).exists():
        print(f"note: {backend_store_uri[len('sqlite:///'):]} does not exist yet; starting an empty store",
              file=sys.stderr)
    server = start_server(workdir, backend_store_uri=backend_store_uri, port=port)
    print(f"MLflow UI for {workdir}: {server.url}{page}  (Ctrl-C to stop)", flush=True)
    if open_browser:
        import webbrowser

        webbrowser.open(server.url + page)
    try:
        while server.running:
            time.sleep(0.5)
        print(f"mlflow server exited with code {server.process.returncode}", file=sys.stderr)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop(timeout=3.0)  # a UI server has nothing to flush: Ctrl-C should not keep the user waiting
