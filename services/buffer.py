"""A write-ahead buffer in front of :class:`mlflow.MlflowClient` for unreachable tracking servers.

Every write (create-or-reopen a run, ``log_batch``, ``log_artifact``, ``set_terminated``) is an
*operation*: a small JSON-safe dict. :class:`BufferedClient` sends operations in order; when the
server is unreachable it appends them to a JSON-lines journal on local disk and sends them when
the server answers again, oldest first. Nothing is dropped silently: an operation the server
rejects for good (e.g. a parameter that changed value) goes to ``<journal>.rejected.jsonl``.

A run created while the server is down has no id yet; operations refer to it by a local reference
(``"local:<trial_id>"``) that the create operation resolves. Replaying is idempotent: the create
operation first looks the run up by its ``trial_id`` tag, MLflow ignores a metric logged twice with
the same key, step, timestamp and value, and tags and artifacts overwrite. A run that is re-opened
(a trial retried, or re-run after its driver was killed) never gets a metric point at a step it
already has: points up to the run's last logged step are skipped (:attr:`BufferedClient.n_skipped`).

With ``flush_interval > 0`` metric/param/tag batches (``log_batch``) are *deferred*: journaled at
once (a killed process loses none of them) and sent by a background thread at most
``flush_interval`` seconds later, consecutive ones of a run coalesced into one request. Every other
operation, :meth:`BufferedClient.send_now` (before a checkpoint) and :meth:`BufferedClient.flush`
send what is pending first, in order, so the server sees the same sequence as without deferring.
A training loop then pays a journal line per report instead of a database or HTTP write.

A full disk (``ENOSPC``) never fails the caller: operations that cannot be journaled stay in memory
(sent when the server answers; lost only if the process dies before that), one warning says so,
and :attr:`BufferedClient.n_unsaved` counts them. :func:`flush_journals` sends the journals of
finished trials under one deadline for all of them.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

from htsweep.services.redact import redact

try:
    import mlflow
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import BAD_REQUEST, RESOURCE_DOES_NOT_EXIST
except ImportError:  # pragma: no cover - mlflow is a dependency, but keep the import soft
    mlflow = None
    MlflowException = None  # type: ignore[assignment,misc]

__all__ = ["BufferedClient", "ensure_experiment", "ensure_run", "flush_journals", "is_disk_full", "is_transient",
           "last_logged_step"]

log = logging.getLogger(__name__)

# Error codes that mean "this request will never succeed": replaying it cannot help.
_PERMANENT_CODES = frozenset({
    "INVALID_PARAMETER_VALUE", "RESOURCE_DOES_NOT_EXIST", "RESOURCE_ALREADY_EXISTS", "INVALID_STATE",
    "BAD_REQUEST", "PERMISSION_DENIED", "UNAUTHENTICATED", "MALFORMED_REQUEST",
})
LOCAL_PREFIX = "local:"
# MLflow's per-request limits for log_batch.
MAX_METRICS, MAX_PARAMS, MAX_TAGS, MAX_ENTITIES = 1000, 100, 100, 1000


def _require_mlflow() -> None:
    if mlflow is None:
        raise ImportError("MLflow tracking needs mlflow: pip install 'mlflow>=2.16'")


def is_transient(exc: BaseException) -> bool:
    """Whether a failed tracking call may succeed later (server down, hung, busy, restarting).

    Parameters
    ----------
    exc : BaseException
        The exception a client call raised.

    Returns
    -------
    bool
        False only for errors that replaying cannot fix (MLflow's invalid-parameter, missing
        resource and permission errors, or a local file that is gone).
    """
    if isinstance(exc, FileNotFoundError):
        return False
    if MlflowException is not None and isinstance(exc, MlflowException):
        return exc.error_code not in _PERMANENT_CODES
    return True  # connection errors, timeouts, OSError, sqlite "database is locked", ...


def is_disk_full(exc: BaseException) -> bool:
    """Whether an ``OSError`` means the disk (or the user's quota, or a file size limit) is full."""
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def last_logged_step(client: Any, run_id: str) -> int | None:
    """The largest step of any metric of ``run_id`` (None when it has no metrics yet)."""
    steps = [m.step for m in client.get_run(run_id).to_proto().data.metrics]
    return max(steps) if steps else None


def _chunks(op: dict) -> list[dict]:
    """Split a log_batch operation to respect MLflow's per-request limits."""
    metrics, params, tags = op.get("metrics", []), op.get("params", []), op.get("tags", [])
    if len(metrics) <= MAX_METRICS and len(params) <= MAX_PARAMS and len(tags) <= MAX_TAGS and (
            len(metrics) + len(params) + len(tags) <= MAX_ENTITIES):
        return [op]
    out = []
    for i in range(0, len(params), MAX_PARAMS):
        out.append({"op": "log_batch", "run": op["run"], "params": params[i:i + MAX_PARAMS]})
    for i in range(0, len(tags), MAX_TAGS):
        out.append({"op": "log_batch", "run": op["run"], "tags": tags[i:i + MAX_TAGS]})
    for i in range(0, len(metrics), MAX_METRICS):
        out.append({"op": "log_batch", "run": op["run"], "metrics": metrics[i:i + MAX_METRICS]})
    return out


def _merged(ops: list[dict]) -> dict:
    """One log_batch of consecutive ones of a run; a tag set twice keeps its last value, as in order."""
    tags = {k: v for op in ops for k, v in op.get("tags", [])}
    return {"op": "log_batch", "run": ops[0]["run"], "metrics": [m for op in ops for m in op.get("metrics", [])],
            "tags": [[k, v] for k, v in tags.items()]}


class BufferedClient:
    """Ordered, disk-buffered MLflow writes.

    Parameters
    ----------
    tracking_uri : str
        Any MLflow tracking URI (``sqlite:///…``, ``http://…``, ``postgresql://…``).
    journal : path-like
        JSON-lines file holding operations not yet sent (created on first need). An existing
        journal is loaded, so a restarted process sends what its predecessor could not.
    retry_interval : float, default=5.0
        After a failed send, new operations go straight to the journal for this many seconds
        instead of paying a failed request (a connection timeout) each. The wait doubles with
        every consecutive failure, up to ``max_retry_interval``, and resets on success.
    max_retry_interval : float, default=60.0
    flush_interval : float, default=0.0
        Seconds a ``log_batch`` may wait in the journal to be sent with the ones after it by a
        background thread; 0: sent when submitted.

    Attributes
    ----------
    run_ids : dict of str to str
        Local run references resolved to MLflow run ids.
    n_sent, n_buffered, n_rejected : int
        Operations sent, journaled because the server was unreachable, and rejected for good.
    n_requests : int
        Successful sends: one per operation, or per coalesced run of deferred ``log_batch`` operations.
    n_skipped : int
        Metric points not sent because the re-opened run already had their step.
    n_attempts_failed : int
        Sends that found the server unreachable (each costs at most one client call's timeout).
    n_unsaved : int
        Pending operations that could not be journaled (disk full): kept in memory only.
    """

    def __init__(self, tracking_uri: str, *, journal: str | Path, retry_interval: float = 5.0,
                 max_retry_interval: float = 60.0, flush_interval: float = 0.0) -> None:
        _require_mlflow()
        self.tracking_uri = tracking_uri
        self.journal = Path(journal)
        self.rejected_path = self.journal.with_suffix(".rejected.jsonl")
        self.retry_interval = float(retry_interval)
        self.max_retry_interval = max(float(max_retry_interval), self.retry_interval)
        self.flush_interval = float(flush_interval)
        self._failures = 0
        self.run_ids: dict[str, str] = {}
        self.n_sent = self.n_buffered = self.n_rejected = self.n_skipped = self.n_attempts_failed = 0
        self.n_requests = 0
        self._floors: dict[str, int] = {}  # run id -> last step it had when this client re-opened it
        self._on_disk = 0  # how many of the pending operations the journal holds (a prefix)
        self._sent_since_persist = False
        self._warned_full = False
        self._client = mlflow.MlflowClient(tracking_uri)
        self._lock = threading.RLock()  # the pending list and the journal
        self._send_lock = threading.Lock()  # one sender at a time; held during a call to the server
        self._flusher: threading.Thread | None = None
        self._wake, self._closing = threading.Event(), threading.Event()
        self._retry_at = 0.0
        self._pending: list[dict] = self._load()
        self._on_disk = len(self._pending)

    # -- public -----------------------------------------------------------------------------
    @property
    def pending(self) -> int:
        """Number of operations waiting in the journal."""
        return len(self._pending)

    @property
    def client(self) -> Any:
        """The underlying :class:`mlflow.MlflowClient` (for reads)."""
        return self._client

    def resolve(self, run: str) -> str | None:
        """The MLflow run id for a run reference, or None while it is not created yet."""
        if run.startswith(LOCAL_PREFIX):
            return self.run_ids.get(run)
        return run

    def submit(self, op: dict) -> bool:
        """Send ``op`` after everything still pending, or journal it.

        A ``log_batch`` with ``flush_interval > 0`` is journaled and left to the background sender.

        Returns
        -------
        bool
            True when ``op`` (and everything before it) reached the server.
        """
        new = _chunks(op) if op["op"] == "log_batch" else [op]
        if op["op"] == "log_batch" and self.flush_interval > 0 and not self._closing.is_set():
            with self._lock:
                self._pending.extend(new)
                self._append(new)
            self._wake_flusher()
            return False
        with self._send_lock:
            with self._lock:
                self._pending.extend(new)
                if time.monotonic() < self._retry_at:
                    self._append(new)
                    self.n_buffered += 1
                    return False
            ok = self._drain()
            if not ok:
                self.n_buffered += 1
            return ok

    def send_now(self) -> bool:
        """Send what is pending now, unless backing off after a failed send (as ``submit`` would).

        Returns
        -------
        bool
            True when nothing is pending.
        """
        with self._send_lock:
            with self._lock:
                if not self._pending:
                    return True
                if time.monotonic() < self._retry_at:
                    return False
            return self._drain()

    def close(self) -> None:
        """Stop the background sender (what it has not sent stays pending); later writes are sent
        when submitted."""
        self._closing.set()
        self._wake.set()
        if self._flusher is not None:
            self._flusher.join()

    def flush(self, *, timeout: float = 0.0, interval: float = 1.0) -> bool:
        """Try to send everything pending, retrying for up to ``timeout`` seconds.

        Returns
        -------
        bool
            True when the journal is empty.
        """
        deadline = time.monotonic() + timeout
        while True:
            with self._send_lock:
                if self._drain():
                    return True
            if time.monotonic() + interval > deadline:
                return False
            time.sleep(interval)

    # -- internals --------------------------------------------------------------------------
    def _wake_flusher(self) -> None:
        if self._flusher is None:
            self._flusher = threading.Thread(target=self._run_flusher, name=f"mlflow-sender:{self.journal.stem}",
                                             daemon=True)  # never keeps a finished process alive
            self._flusher.start()
        self._wake.set()

    def _run_flusher(self) -> None:
        while True:
            self._wake.wait()
            if self._closing.wait(self.flush_interval):  # gather what the interval brings; closing: the owner flushes
                return
            self._wake.clear()
            try:
                self.send_now()
            except Exception:  # noqa: BLE001 - the writes stay pending; the owner's flush sends them
                log.exception("sending MLflow writes failed; they stay pending in %s", self.journal)

    def _load(self) -> list[dict]:
        if not self.journal.exists():
            return []
        ops = []
        for line in self.journal.read_text().splitlines():
            if line.strip():
                try:
                    ops.append(json.loads(line))
                except json.JSONDecodeError:  # a torn last line after a crash
                    log.warning("skipping a torn line in %s", self.journal)
        return ops

    def _persist(self) -> None:
        """Rewrite the journal to hold exactly the pending operations (atomic replace)."""
        if not self._pending:
            self.journal.unlink(missing_ok=True)
            self._on_disk = 0
            return
        tmp = self.journal.with_suffix(".tmp")
        try:
            self.journal.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "w") as fh:
                for op in self._pending:
                    fh.write(json.dumps(self._substitute(op)) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.journal)
        except OSError as exc:
            if not is_disk_full(exc):
                raise
            tmp.unlink(missing_ok=True)
            # The journal on disk (if any) keeps what it held; it no longer mirrors the pending list.
            self._on_disk = 0 if self._sent_since_persist else min(self._on_disk, len(self._pending))
            self._disk_full(exc)
            return
        self._on_disk, self._sent_since_persist = len(self._pending), False

    def _append(self, ops: list[dict]) -> None:
        """Append ops to the journal (which mirrors the pending list while it exists)."""
        mirrors = self._on_disk == len(self._pending) - len(ops) and self.journal.exists() == (self._on_disk > 0)
        if not mirrors:
            self._persist()  # a journal that missed operations is rewritten whole, never appended to
            return
        size = self.journal.stat().st_size if self._on_disk else None  # None: this append creates it
        try:
            if size is None:
                self.journal.parent.mkdir(parents=True, exist_ok=True)
            with open(self.journal, "a") as fh:
                fh.write("".join(json.dumps(self._substitute(op)) + "\n" for op in ops))
        except OSError as exc:
            if not is_disk_full(exc):
                raise
            if size is None:
                self.journal.unlink(missing_ok=True)
            else:
                os.truncate(self.journal, size)  # no torn line: the journal stays a clean prefix
            self._disk_full(exc)
            return
        self._on_disk += len(ops)

    @property
    def n_unsaved(self) -> int:
        """Pending operations that are not in the journal (disk full): lost if this process dies."""
        return max(0, len(self._pending) - self._on_disk)

    def _disk_full(self, exc: OSError) -> None:
        if not self._warned_full:
            self._warned_full = True
            log.warning("cannot journal MLflow writes in %s (%s): keeping them in memory until the tracking "
                        "server answers; they are lost if this process dies first", self.journal, exc.strerror)

    def _substitute(self, op: dict) -> dict:
        run = op.get("run")
        if run is not None and run in self.run_ids:
            return {**op, "run": self.run_ids[run]}
        return op

    def _drain(self) -> bool:
        """Send pending operations in order; the caller holds ``_send_lock``. The pending list is
        locked only between calls, so writes can be submitted while a call is in flight."""
        sent_any = False
        single = 0  # after a merged batch was rejected: send its operations one by one
        while True:
            with self._lock:
                if not self._pending:
                    break
                ops = self._pending[:1] if single else self._coalesce()
            try:
                self._execute(ops[0] if len(ops) == 1 else _merged(ops))
            except Exception as exc:  # noqa: BLE001 - classified below
                with self._lock:
                    if is_transient(exc):
                        self._failures += 1
                        self.n_attempts_failed += 1
                        wait = min(self.retry_interval * 2 ** min(self._failures - 1, 30), self.max_retry_interval)
                        self._retry_at = time.monotonic() + wait
                        self._persist()
                        log.info("tracking server unreachable (%s); %d operation(s) buffered in %s",
                                 type(exc).__name__, len(self._pending), self.journal)
                        return False
                    if len(ops) > 1:  # find the culprit: only it is set aside
                        single = len(ops)
                        continue
                    self._reject(ops[0], exc)
            else:
                self.n_sent += len(ops)
                self.n_requests += 1
                self._failures = 0
            with self._lock:
                del self._pending[:len(ops)]
                self._on_disk = max(0, self._on_disk - len(ops))
                self._sent_since_persist = sent_any = True
                single = max(0, single - 1)
        with self._lock:
            if sent_any or self.journal.exists():
                self._persist()
        return True

    def _coalesce(self) -> list[dict]:
        """The head operation and the ``log_batch`` operations of the same run right after it, as
        many as one request takes (metrics and tags only: a param sent twice would be refused)."""
        head = self._pending[0]
        if head["op"] != "log_batch" or head.get("params"):
            return [head]
        n_metrics, n_tags = len(head.get("metrics", [])), len(head.get("tags", []))
        out = [head]
        for op in self._pending[1:]:
            if op["op"] != "log_batch" or op.get("params") or op["run"] != head["run"]:
                break
            n_metrics += len(op.get("metrics", []))
            n_tags += len(op.get("tags", []))
            if n_metrics > MAX_METRICS or n_tags > MAX_TAGS or n_metrics + n_tags > MAX_ENTITIES:
                break
            out.append(op)
        return out

    def _reject(self, op: dict, exc: BaseException) -> None:
        self.n_rejected += 1
        error = redact(str(exc))
        log.warning("MLflow rejected %s for good: %s", op["op"], error[:500])
        try:
            self.rejected_path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.rejected_path, "a") as fh:
                fh.write(json.dumps({"op": self._substitute(op), "error": error[:2000]}) + "\n")
        except OSError as err:
            if not is_disk_full(err):
                raise
            log.warning("disk full: the rejected %s is not kept in %s", op["op"], self.rejected_path)

    def _run_id(self, op: dict) -> str:
        run = op["run"]
        run_id = self.resolve(run)
        if run_id is None:  # its create operation was rejected: nothing to attach to
            raise MlflowException(f"run {run} was never created", error_code=RESOURCE_DOES_NOT_EXIST)
        return run_id

    def _execute(self, op: dict) -> None:
        kind = op["op"]
        c = self._client
        if kind == "ensure_run":
            run_id = ensure_run(
                c, experiment=op["experiment"], match=tuple(op["match"]),
                artifact_location=op.get("artifact_location"), tags=op.get("tags"),
                run_name=op.get("run_name"), start_time=op.get("start_time"))
            last = last_logged_step(c, run_id)
            if last is not None:  # re-opened: whatever re-runs must not log these steps again
                self._floors[run_id] = last
            self.run_ids[op["ref"]] = run_id
        elif kind == "log_batch":
            run_id = self._run_id(op)
            metrics = op.get("metrics", [])
            floor = self._floors.get(run_id)
            if floor is not None:
                kept = [m for m in metrics if int(m[3]) > floor]
                self.n_skipped += len(metrics) - len(kept)
                metrics = kept
            if not (metrics or op.get("params") or op.get("tags")):
                return
            c.log_batch(
                run_id,
                metrics=[Metric(k, float(v), int(ts), int(step)) for k, v, ts, step in metrics],
                params=[Param(k, str(v)) for k, v in op.get("params", [])],
                tags=[RunTag(k, str(v)) for k, v in op.get("tags", [])],
                synchronous=True,
            )
        elif kind == "log_artifact":
            path = Path(op["path"])
            if not path.exists():
                raise FileNotFoundError(f"artifact file {path} is gone")
            c.log_artifact(self._run_id(op), str(path), op.get("artifact_path"))
            if op.get("delete_after"):
                path.unlink(missing_ok=True)
        elif kind == "set_terminated":
            c.set_terminated(self._run_id(op), status=op["status"], end_time=op.get("end_time"))
        else:
            raise MlflowException(f"unknown buffered operation {kind!r}", error_code=BAD_REQUEST)


def flush_journals(tracking_uri: str, directory: str | Path, *, timeout: float = 0.0) -> tuple[int, int]:
    """Send the journals under ``directory`` (``*.jsonl``), all within one deadline.

    Each attempt costs at most one client call (the MLflow HTTP timeout and retries bound it).
    Journals are sent one after the other while the server takes them; the first that finds it
    unreachable retries until the deadline, and the remaining journals wait for the next flush: a
    hung server costs ``timeout`` plus one call in all, however many trials left journals.

    Parameters
    ----------
    tracking_uri : str
    directory : path-like
        Where the journals are (``<workdir>/mlbuffer``).
    timeout : float, default=0.0
        Seconds for all journals together (0: one attempt).

    Returns
    -------
    (int, int)
        Operations sent and operations still pending.
    """
    deadline = time.monotonic() + float(timeout)
    sent = left = 0
    reachable = True
    for journal in sorted(Path(directory).glob("*.jsonl")):
        if journal.name.endswith(".rejected.jsonl"):
            continue
        buf = BufferedClient(tracking_uri, journal=journal, retry_interval=0.0)
        if reachable:  # the server took every journal so far: worth one more
            reachable = buf.flush(timeout=max(0.0, deadline - time.monotonic()))
        sent += buf.n_sent
        left += buf.pending
    return sent, left


def ensure_experiment(client: Any, name: str, *, artifact_location: str | None = None) -> str:
    """Id of the experiment ``name``, created (with ``artifact_location``) if missing."""
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    try:
        return client.create_experiment(name, artifact_location=artifact_location)
    except MlflowException:  # another process created it between our two calls
        exp = client.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


def ensure_run(
    client: Any,
    *,
    experiment: str,
    match: tuple[str, str],
    artifact_location: str | None = None,
    tags: dict[str, str] | None = None,
    run_name: str | None = None,
    start_time: int | None = None,
) -> str:
    """Re-open the run of ``experiment`` whose tag ``match[0]`` equals ``match[1]``, or create it.

    Parameters
    ----------
    client : mlflow.MlflowClient
        Connected client.
    experiment : str
        Experiment name; created if missing, with ``artifact_location``.
    match : (str, str)
        Tag key and value identifying the run (e.g. ``("trial_id", "a1b2_00003")``).
    artifact_location, tags, run_name, start_time
        Used only when something is created; ``tags`` always receives ``match``.

    Returns
    -------
    str
        The run id; the run's status is RUNNING.
    """
    exp_id = ensure_experiment(client, experiment, artifact_location=artifact_location)
    key, value = match
    found = client.search_runs([exp_id], filter_string=f"tags.`{key}` = '{value}'", max_results=1)
    if found:
        run_id = found[0].info.run_id
        if found[0].info.status != "RUNNING":
            client.update_run(run_id, status="RUNNING")
        return run_id
    all_tags = dict(tags or {})
    all_tags[key] = value
    run = client.create_run(exp_id, start_time=start_time, tags=all_tags, run_name=run_name)
    return run.info.run_id
