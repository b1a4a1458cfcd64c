"""The shared ESD service: one named Ray actor per sweep that analyzes every trial's weights.

Trials send their layer matrices (through the object store, one ``ray.put`` per matrix) to the
actor; it queues the matrices of all concurrent requests, and a single worker drains the queue,
diagonalizes equally shaped matrices from different requests in one batched ``eigvalsh``
(:func:`analysis.spectrum.esd_batch`) and computes each layer's metrics and phase
(:func:`analysis.analyze.analyze_eigs`). While a batch computes, new requests pile up and form
the next batch, so batches grow with the load. The queue is bounded: a request waits for room.

Fault tolerance: the actor restarts forever (``max_restarts=-1``), and the driver checks that it
runs before trials start (:func:`wait_ready`). :class:`ActorAnalyzer`, the ``analyzer`` a trial
hands to :class:`trainers.monitor.SpectralMonitor`, bounds every call by a timeout derived from the
measured service time; any failure (dead, restarting, pending, frozen, too slow) opens a
:class:`CircuitBreaker` shared by every caller in the process, so that call and the following ones
analyze in-process at once while the actor is re-probed periodically. A trial never dies, and never
waits long, because the actor did.

Examples
--------
Driver (once per sweep, before the trials start, so the driver owns the actor)::

    handle = get_esd_service("esd", namespace="sweep-42", num_gpus=0.25)

Trial::

    monitor = SpectralMonitor(ActorAnalyzer(handle))            # or ActorAnalyzer.by_name(...)
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import threading
import time
from collections import Counter, deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

try:
    import ray
    from ray.exceptions import ActorDiedError, GetTimeoutError, RayActorError
except ImportError:  # pragma: no cover - soft optional dependency
    ray = None
    ActorDiedError = GetTimeoutError = RayActorError = None  # type: ignore[assignment,misc]

__all__ = [
    "DEFAULT_NAME",
    "DEFAULT_NAMESPACE",
    "ActorAnalyzer",
    "CallPolicy",
    "CircuitBreaker",
    "ESDService",
    "LayerPayload",
    "analyze_payloads",
    "circuit_breaker",
    "get_esd_service",
    "shutdown_esd_service",
    "wait_ready",
]

log = logging.getLogger(__name__)

DEFAULT_NAME = "htsweep-esd"
DEFAULT_NAMESPACE = "htsweep"


def _require_ray() -> None:
    if ray is None:
        raise ImportError("the shared ESD service needs Ray: pip install 'ray[tune]>=2.40'")


@dataclass(frozen=True)
class LayerPayload:
    """One layer as it travels to the actor: metadata plus the weights as a numpy array.

    Numpy arrays are stored zero-copy in Ray's object store (torch tensors would be pickled).
    ``name`` and ``matrix`` are what :func:`analysis.spectrum.esd_batch` reads from a layer.

    Attributes
    ----------
    name, kind : str
        As in :class:`analysis.layers.LayerMatrix`.
    n, m : int
        N ≥ M, the matrix's larger and smaller side.
    matrix : ndarray of shape (rows, cols)
        The weights (CPU, dtype kept: float32 travels at half the size of float64).
    """

    name: str
    kind: str
    n: int
    m: int
    matrix: np.ndarray = field(repr=False)

    @classmethod
    def from_layer(cls, layer: Any) -> LayerPayload:
        """From a :class:`~analysis.layers.LayerMatrix` (or anything with name/kind/matrix)."""
        if isinstance(layer, cls):
            return layer
        mat = layer.matrix
        if hasattr(mat, "detach"):  # torch.Tensor, possibly on a GPU, possibly half precision
            import torch

            mat = mat.detach().cpu()
            if mat.dtype not in (torch.float32, torch.float64):
                mat = mat.to(torch.float32)  # numpy has no bfloat16; ints become floats
            mat = mat.numpy()
        mat = np.asarray(mat)
        rows, cols = (int(mat.shape[0]), int(mat.shape[1])) if mat.ndim == 2 else (0, 0)
        return cls(name=str(layer.name), kind=str(getattr(layer, "kind", "matrix")),
                   n=int(getattr(layer, "n", max(rows, cols))), m=int(getattr(layer, "m", min(rows, cols))),
                   matrix=mat)


def analyze_payloads(layers: Sequence[Any], *, device: str | None = None) -> list[dict[str, Any]]:
    """Metrics rows for many layers: one batched ESD per shape, then per-layer fits and phase.

    :func:`analysis.analyze.analyze_layers` on payloads (it reads only ``name``, ``kind``, ``n``,
    ``m`` and ``matrix``); the actor calls it on the matrices of many requests at once, so equal
    shapes from different requests share one ``eigvalsh``.

    Parameters
    ----------
    layers : sequence of LayerPayload or LayerMatrix
    device : str, optional
        Where to diagonalize; None: CUDA when available.

    Returns
    -------
    list of dict
        One row per layer, in order, with ``"kind"`` and ``"eigs"`` (ndarray of shape (m,)).
    """
    from htsweep.analysis.analyze import MONITOR_PRECISION, analyze_layers

    return analyze_layers(list(layers), device=device, precision=MONITOR_PRECISION)


class ESDService:
    """The actor's body (use :func:`get_esd_service` to get the Ray actor).

    Parameters
    ----------
    device : str, optional
        ``"cuda"``/``"cpu"``; None: CUDA when the actor was given a GPU, else CPU.
    max_batch : int, default=1024
        Most matrices diagonalized + analyzed in one batch; 1 turns batching off.
    max_queue : int, default=8192
        Most matrices waiting; a request with more waits for room (back-pressure).
    batch_window_s : float, default=0.002
        After the first matrix arrives, wait this long for others before computing.
    """

    def __init__(self, *, device: str | None = None, max_batch: int = 1024, max_queue: int = 8192,
                 batch_window_s: float = 0.002) -> None:
        if max_batch < 1 or max_queue < 1:
            raise ValueError(f"max_batch and max_queue must be >= 1, got {max_batch}, {max_queue}")
        self.device = device
        self.max_batch, self.max_queue, self.batch_window_s = int(max_batch), int(max_queue), float(batch_window_s)
        self._queue: list[tuple[LayerPayload, asyncio.Future]] = []
        self._have_work: asyncio.Event | None = None
        self._room: asyncio.Semaphore | None = None
        self._worker: asyncio.Task | None = None
        # Import the analysis stack now: fails at creation if it is missing, and keeps the
        # import time out of the first request and out of time_per_matrix_s.
        import htsweep.analysis.analyze  # noqa: F401
        import htsweep.analysis.spectrum  # noqa: F401

        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="esd")
        self._started = time.time()
        self._requests = self._matrices = self._batches = self._errors = 0
        self._batch_sizes: Counter[int] = Counter()
        self._max_batch_seen = self._max_depth = self._in_flight = 0
        self._compute_s = self._latency_s = 0.0
        self._recent_per_matrix: deque[float] = deque(maxlen=64)
        self._restarted = False
        if ray is not None and ray.is_initialized():
            try:
                self._restarted = bool(ray.get_runtime_context().was_current_actor_reconstructed)
            except Exception:  # noqa: BLE001 - not inside an actor (plain use of the class)
                self._restarted = False

    def _ensure_worker(self) -> None:
        if self._worker is None or self._worker.done():
            self._have_work = self._have_work or asyncio.Event()
            self._room = self._room or asyncio.Semaphore(self.max_queue)
            self._worker = asyncio.get_running_loop().create_task(self._run())

    async def analyze(self, layers: Sequence[Any], *, step: int | None = None) -> list[dict[str, Any]]:
        """Metrics rows (with ``"eigs"``) for ``layers``, in order.

        Parameters
        ----------
        layers : ObjectRef or sequence of ObjectRef, LayerPayload or LayerMatrix
            ObjectRefs (from ``ray.put``; each of one layer or of a list of layers) are fetched
            here from the object store.
        step : int, optional
            The caller's training step (informational).
        """
        t0 = time.perf_counter()
        self._ensure_worker()
        self._in_flight += 1
        try:
            if ray is not None and isinstance(layers, ray.ObjectRef):
                layers = await layers
            items: list[Any] = []
            for x in layers:
                if ray is not None and isinstance(x, ray.ObjectRef):
                    x = await x
                items.extend(x if isinstance(x, list | tuple) else [x])
            payloads = [LayerPayload.from_layer(x) for x in items]
            loop = asyncio.get_running_loop()
            futures = []
            for p in payloads:
                await self._room.acquire()
                fut = loop.create_future()
                self._queue.append((p, fut))
                self._max_depth = max(self._max_depth, len(self._queue))
                self._have_work.set()
                futures.append(fut)
            rows = await asyncio.gather(*futures)
        finally:
            self._in_flight -= 1
        took = time.perf_counter() - t0
        self._requests += 1
        self._latency_s += took
        if payloads:
            self._recent_per_matrix.append(took / len(payloads))
        return list(rows)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._have_work.wait()
            if self.batch_window_s > 0:
                await asyncio.sleep(self.batch_window_s)
            batch = self._queue[: self.max_batch]
            del self._queue[: self.max_batch]
            if not self._queue:
                self._have_work.clear()
            for _ in batch:
                self._room.release()
            if not batch:
                continue
            t0 = time.perf_counter()
            try:
                results = await loop.run_in_executor(self._executor, self._compute, [p for p, _ in batch])
            except Exception as exc:  # noqa: BLE001 - delivered to the callers
                results = [exc] * len(batch)
            self._compute_s += time.perf_counter() - t0
            self._batches += 1
            self._matrices += len(batch)
            self._batch_sizes[len(batch)] += 1
            self._max_batch_seen = max(self._max_batch_seen, len(batch))
            for (_, fut), res in zip(batch, results, strict=True):
                if fut.done():
                    continue
                if isinstance(res, BaseException):
                    self._errors += 1
                    fut.set_exception(res)
                else:
                    fut.set_result(res)

    def _compute(self, payloads: list[LayerPayload]) -> list[Any]:
        """Batched analysis; if it fails, analyze one by one so one bad layer fails only itself."""
        try:
            rows: list[Any] = analyze_payloads(payloads, device=self.device)
        except Exception:  # noqa: BLE001
            if len(payloads) == 1:
                raise
            rows = []
            for p in payloads:
                try:
                    rows.extend(analyze_payloads([p], device=self.device))
                except Exception as exc:  # noqa: BLE001
                    rows.append(exc)
        return rows

    def ping(self) -> int:
        """The actor's process id (a cheap liveness check)."""
        return os.getpid()

    def stats(self) -> dict[str, Any]:
        """Counters since the actor (re)started.

        Returns
        -------
        dict
            ``requests`` served, ``matrices`` analyzed, ``batches``, ``batch_size_mean``,
            ``batch_size_max``, ``batch_sizes`` (size → count), ``queue_depth`` (now),
            ``queue_depth_max``, ``in_flight`` requests, ``time_per_matrix_s`` (compute time per
            matrix; ``compute_s`` in all), ``latency_mean_s`` (per request, queueing included),
            ``latency_per_matrix_max_s`` (the slowest of the last 64 requests, per matrix: what
            callers derive their timeouts from), ``errors``, ``uptime_s``, ``device``, ``pid``,
            ``restarted`` (this instance is a restart).
        """
        return {
            "requests": self._requests,
            "matrices": self._matrices,
            "batches": self._batches,
            "batch_size_mean": self._matrices / self._batches if self._batches else 0.0,
            "batch_size_max": self._max_batch_seen,
            "batch_sizes": dict(sorted(self._batch_sizes.items())),
            "queue_depth": len(self._queue),
            "queue_depth_max": self._max_depth,
            "in_flight": self._in_flight,
            "time_per_matrix_s": self._compute_s / self._matrices if self._matrices else 0.0,
            "compute_s": self._compute_s,
            "latency_mean_s": self._latency_s / self._requests if self._requests else 0.0,
            "latency_per_matrix_max_s": max(self._recent_per_matrix, default=0.0),
            "errors": self._errors,
            "uptime_s": time.time() - self._started,
            "device": self.device or _default_device_name(),
            "pid": os.getpid(),
            "restarted": self._restarted,
        }


def _default_device_name() -> str:
    try:
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    except ImportError:  # pragma: no cover
        return "cpu"


def get_esd_service(
    name: str = DEFAULT_NAME,
    *,
    namespace: str = DEFAULT_NAMESPACE,
    num_gpus: float = 0.0,
    num_cpus: float = 1.0,
    detached: bool = False,
    max_task_retries: int = 0,
    device: str | None = None,
    max_batch: int = 1024,
    max_queue: int = 8192,
    batch_window_s: float = 0.002,
) -> Any:
    """Get the sweep's ESD actor by name, creating it if it does not exist.

    Call it once in the driver before the trials start: a non-detached actor belongs to the
    process that created it and dies with it. Keep the returned handle for the whole sweep, too:
    Ray ends a non-detached actor as soon as its creator drops its last handle, and trials would
    then fall back to in-process analysis after their lookup retries. Options other than
    ``name``/``namespace`` apply only when the actor is created.

    Parameters
    ----------
    name : str, default='htsweep-esd'
    namespace : str, default='htsweep'
        Ray namespace (one per sweep keeps sweeps apart).
    num_gpus : float, default=0.0
        GPU fraction for the actor (e.g. 0.25 on a GPU cluster); 0 runs on CPU.
    num_cpus : float, default=1.0
        CPUs reserved for the actor.
    detached : bool, default=False
        Outlive the driver; then end it with :func:`shutdown_esd_service`.
    max_task_retries : int, default=0
        Ray-level retries of a call interrupted by a crash. 0 hands the failure to the caller
        (:class:`ActorAnalyzer` analyzes in-process at once and re-probes later); -1 retries
        transparently forever (a request that crashes the actor would then crash it forever).
    device : str, optional
        Torch device inside the actor; None: ``"cuda"`` when ``num_gpus > 0``, else ``"cpu"``.
    max_batch, max_queue, batch_window_s
        Batching parameters of :class:`ESDService`.

    Returns
    -------
    ray.actor.ActorHandle
        Methods ``analyze.remote(layer_refs, step=None)``, ``stats.remote()``, ``ping.remote()``.
    """
    _require_ray()
    if not ray.is_initialized():
        raise RuntimeError("get_esd_service needs a running Ray: call ray.init() first")
    if device is None:
        device = "cuda" if num_gpus > 0 else "cpu"
    opts: dict[str, Any] = dict(
        name=name, namespace=namespace, get_if_exists=True, max_restarts=-1,
        max_task_retries=max_task_retries, num_cpus=num_cpus, num_gpus=num_gpus, max_concurrency=1000,
    )
    if detached:
        opts["lifetime"] = "detached"
    actor_cls = ray.remote(ESDService)
    return actor_cls.options(**opts).remote(
        device=device, max_batch=max_batch, max_queue=max_queue, batch_window_s=batch_window_s)


def shutdown_esd_service(name: str = DEFAULT_NAME, *, namespace: str = DEFAULT_NAMESPACE) -> bool:
    """Kill the named ESD actor for good (no restart). Returns False if it did not exist."""
    _require_ray()
    try:
        handle = ray.get_actor(name, namespace=namespace)
    except ValueError:
        return False
    ray.kill(handle, no_restart=True)
    return True


@dataclass(frozen=True)
class CallPolicy:
    """How long a caller waits for the shared actor, and how it stops waiting after a failure.

    Attributes
    ----------
    timeout_factor : float, default=10.0
        A call may take this many times the measured service time (seconds per matrix in recent
        successful calls of this process or, before the first one, as the actor reports it, times
        the call's matrices) ...
    min_timeout, max_timeout : float, default=10.0, 600.0
        ... clipped to this range (seconds).
    first_timeout : float, default=120.0
        Per-call timeout while nothing has been measured yet (a fresh actor).
    ready_timeout : float, default=5.0
        Seconds a cheap probe (``stats``) may take: before a process's first call, and before each
        re-probe of an open breaker. A pending or frozen actor fails it.
    probe_interval, max_probe_interval : float, default=10.0, 120.0
        After a failure, calls go in-process at once for ``probe_interval`` seconds, then one call
        re-probes the actor; each further failure doubles the wait, up to ``max_probe_interval``.
    """

    timeout_factor: float = 10.0
    min_timeout: float = 10.0
    max_timeout: float = 600.0
    first_timeout: float = 120.0
    ready_timeout: float = 5.0
    probe_interval: float = 10.0
    max_probe_interval: float = 120.0

    def __post_init__(self) -> None:
        for name in ("timeout_factor", "min_timeout", "max_timeout", "first_timeout", "ready_timeout",
                     "probe_interval", "max_probe_interval"):
            if not float(getattr(self, name)) > 0:
                raise ValueError(f"CallPolicy.{name} must be > 0, got {getattr(self, name)!r}")
        if self.min_timeout > self.max_timeout:
            raise ValueError(f"CallPolicy.min_timeout {self.min_timeout} exceeds max_timeout {self.max_timeout}")


class CircuitBreaker:
    """The state of one actor as every caller in this process sees it (closed, open or probing).

    One instance per ``(namespace, name)`` and process (:func:`circuit_breaker`), shared by all
    :class:`ActorAnalyzer` objects there: trials that reuse a worker process, and threads. After a
    failure the breaker is *open*: callers analyze in-process without waiting; when the probe
    interval is over, the next caller probes the actor, and a success closes the breaker again.

    Attributes
    ----------
    ready : bool
        A probe answered in this process (the actor exists and is running).
    failures : int
        Consecutive failures (0 while closed).
    reason : str
        Why the breaker last opened.
    gone : bool
        The actor died and its name is no longer registered: no probe will ever succeed.
    """

    def __init__(self, policy: CallPolicy) -> None:
        self.policy = policy
        self.ready = False
        self.gone = False
        self.failures = 0
        self.reason = ""
        self._probe_at = 0.0
        self._probing = False
        self._per_matrix: deque[float] = deque(maxlen=32)
        self._lock = threading.Lock()

    @property
    def is_open(self) -> bool:
        """Calls go in-process (a failure was seen and no probe has succeeded since)."""
        return self.failures > 0

    def allow(self) -> bool:
        """Whether this caller may use the actor now (closed, or the one probe of an open breaker)."""
        with self._lock:
            if self.gone:
                return False
            if not self.failures:
                return True
            if self._probing or time.monotonic() < self._probe_at:
                return False
            self._probing = True
            return True

    def observe(self, per_matrix_s: float) -> None:
        """Add a measured service time (seconds per matrix of a request, queueing included)."""
        if per_matrix_s > 0 and math.isfinite(per_matrix_s):
            with self._lock:
                self._per_matrix.append(float(per_matrix_s))

    def success(self, seconds: float, n_matrices: int) -> None:
        """A call answered: close the breaker and learn its service time."""
        self.observe(seconds / max(n_matrices, 1))
        with self._lock:
            if self.failures:
                log.warning("ESD actor answers again (after: %s); back to the shared actor", self.reason)
            self.ready, self.failures, self._probing, self.reason = True, 0, False, ""

    def failure(self, reason: str) -> None:
        """A call or probe failed: open (or re-open) the breaker with a doubled probe interval."""
        with self._lock:
            self.failures += 1
            self._probing = False
            self.reason = reason
            wait = min(self.policy.probe_interval * 2 ** (self.failures - 1), self.policy.max_probe_interval)
            self._probe_at = time.monotonic() + wait
            if self.failures == 1:
                log.warning("ESD actor unavailable (%s); analyzing in-process, next probe in %.0f s", reason, wait)

    def timeout(self, n_matrices: int) -> float:
        """Seconds one call of ``n_matrices`` may take (see :class:`CallPolicy`)."""
        p = self.policy
        with self._lock:
            if not self._per_matrix:
                return p.first_timeout
            service = max(self._per_matrix) * max(n_matrices, 1)
        return float(min(p.max_timeout, max(p.min_timeout, p.timeout_factor * service)))


_BREAKERS: dict[tuple[str, str], CircuitBreaker] = {}
_BREAKERS_LOCK = threading.Lock()


def circuit_breaker(name: str = DEFAULT_NAME, *, namespace: str = DEFAULT_NAMESPACE,
                    policy: CallPolicy | None = None) -> CircuitBreaker:
    """This process's breaker for the actor ``namespace/name`` (created with ``policy`` on first use)."""
    key = (namespace, name)
    with _BREAKERS_LOCK:
        if key not in _BREAKERS:
            _BREAKERS[key] = CircuitBreaker(policy or CallPolicy())
        return _BREAKERS[key]


def wait_ready(handle: Any, *, timeout: float = 60.0) -> dict[str, Any] | None:
    """The actor's :meth:`ESDService.stats` once it runs, or None if it did not answer in ``timeout``.

    The driver calls it right after :func:`get_esd_service`: an actor whose resources are not
    available stays pending, and one that cannot start dies; either way the sweep should say so at
    once instead of each trial finding out.
    """
    _require_ray()
    try:
        return ray.get(handle.stats.remote(), timeout=timeout)
    except (GetTimeoutError, RayActorError) as exc:
        log.debug("ESD actor not ready: %s", exc)
        return None


class ActorAnalyzer:
    """``analyzer(layers, step) -> list[dict]`` for :class:`trainers.monitor.SpectralMonitor`.

    Puts every matrix into the object store once and calls the shared actor, with a per-call
    timeout derived from the measured service time. A failure (actor dead, restarting, pending,
    frozen, or too slow) opens this process's :class:`CircuitBreaker` for the actor: this call and
    the following ones analyze in-process at once (:func:`analysis.analyze.analyze_layers`, the
    same numbers), and the actor is re-probed periodically, so no step is lost and none waits
    for a broken actor.

    Parameters
    ----------
    handle : ActorHandle, optional
        From :func:`get_esd_service`; None looks the actor up by ``name``/``namespace``.
    policy : CallPolicy, optional
        Timeouts and probe intervals; default ``CallPolicy()``. Applies when this process's
        breaker for the actor is created (the first analyzer of the actor in the process).
    fallback : bool, default=True
        Analyze in-process when the actor cannot answer. False (benchmarks, tests of the actor
        itself) never short-cuts: it retries ``RayActorError`` up to ``retries`` times with an
        exponential backoff, then raises the last error.
    retries : int, default=5
        Retries after the first failed attempt (only with ``fallback=False``).
    backoff, max_backoff : float, default=0.5, 4.0
        First wait in seconds, doubled each retry up to ``max_backoff`` (only with ``fallback=False``).
    name, namespace : str
        The actor's name when ``handle`` is None (and for re-lookups after failures).
    device : str, optional
        Device for the in-process fallback.

    Attributes
    ----------
    n_calls, n_retries, n_fallbacks : int
        Calls made, failed attempts retried, calls answered in-process.
    gone : bool
        The actor died and its name is no longer registered (killed for good, or its driver is gone):
        later calls in this process go straight to in-process analysis, without probes.
    breaker : CircuitBreaker
    """

    def __init__(self, handle: Any = None, *, policy: CallPolicy | None = None, fallback: bool = True,
                 retries: int = 5, backoff: float = 0.5, max_backoff: float = 4.0, name: str = DEFAULT_NAME,
                 namespace: str = DEFAULT_NAMESPACE, device: str | None = None) -> None:
        if retries < 0 or backoff < 0 or max_backoff < 0:
            raise ValueError("retries, backoff and max_backoff must be >= 0")
        self.handle = handle
        self.retries, self.backoff, self.max_backoff = int(retries), float(backoff), float(max_backoff)
        self.fallback = bool(fallback)
        self.name, self.namespace, self.device = name, namespace, device
        self.breaker = circuit_breaker(name, namespace=namespace, policy=policy)
        self.n_calls = self.n_retries = self.n_fallbacks = 0

    @property
    def gone(self) -> bool:
        """The actor is gone for good (shared by every analyzer of it in this process)."""
        return self.breaker.gone

    @classmethod
    def by_name(cls, name: str = DEFAULT_NAME, *, namespace: str = DEFAULT_NAMESPACE, **kwargs: Any) -> ActorAnalyzer:
        """An analyzer that finds the actor by name (e.g. inside a trial)."""
        return cls(None, name=name, namespace=namespace, **kwargs)

    def _handle(self) -> Any:
        if self.handle is None:
            self.handle = ray.get_actor(self.name, namespace=self.namespace)
        return self.handle

    def _relookup(self, exc: BaseException | None) -> None:
        """After a failure, pick up a replacement actor registered under the same name, if any."""
        try:
            self.handle = ray.get_actor(self.name, namespace=self.namespace)
        except ValueError:
            # Not registered: the driver creates the actor before any trial starts, so it died for
            # good (killed, or its driver is gone). Probing it again would only cost time.
            self.breaker.gone = exc is None or isinstance(exc, ActorDiedError)

    def __call__(self, layers: list[Any], step: int) -> list[dict[str, Any]]:
        """Metrics rows (with ``"eigs"``) for ``layers``, computed by the shared actor if it can."""
        _require_ray()
        self.n_calls += 1
        layers = list(layers)
        if not layers:
            return []
        if not ray.is_initialized():  # ray.put would silently start a private Ray with no actor
            exc = RuntimeError("Ray is not initialized in this process")
            if self.fallback and not self.n_fallbacks:
                log.warning("%s; analyzing in-process", exc)
            return self._in_process(layers, step, exc)
        if not self.fallback:
            return self._call_with_retries(layers, step)
        if not self.breaker.allow():
            return self._in_process(layers, step, None)
        try:
            rows = self._call_once(layers, step)
        except _Unavailable as exc:
            self.breaker.failure(str(exc) + (" (gone for good)" if self.gone else ""))
            return self._in_process(layers, step, exc)
        return rows

    def _probe(self) -> None:
        """A cheap call before using the actor: fails fast for a pending, frozen or dead actor."""
        try:
            stats = ray.get(self._handle().stats.remote(), timeout=self.breaker.policy.ready_timeout)
        except ValueError as exc:  # not registered under its name
            self._relookup(None)
            raise _Unavailable(f"no actor {self.namespace}/{self.name}") from exc
        except GetTimeoutError as exc:
            raise _Unavailable(f"no answer to a probe within {self.breaker.policy.ready_timeout:g} s "
                               "(pending, frozen or overloaded)") from exc
        except RayActorError as exc:
            self._relookup(exc)
            raise _Unavailable(f"{type(exc).__name__}") from exc
        served = stats.get("latency_per_matrix_max_s") or 0.0
        self.breaker.observe(served)

    def _call_once(self, layers: list[Any], step: int) -> list[dict[str, Any]]:
        if not self.breaker.ready or self.breaker.is_open:
            self._probe()
        # One object for the request: numpy buffers are stored zero-copy.
        refs = [ray.put([LayerPayload.from_layer(layer) for layer in layers])]
        timeout = self.breaker.timeout(len(layers))
        t0 = time.perf_counter()
        ref = self._handle().analyze.remote(refs, step=int(step))
        try:
            rows = ray.get(ref, timeout=timeout)
        except GetTimeoutError as exc:
            _cancel(ref)
            raise _Unavailable(f"no answer within {timeout:.0f} s (the per-call limit from the measured "
                               "service time)") from exc
        except RayActorError as exc:
            self._relookup(exc)
            raise _Unavailable(type(exc).__name__) from exc
        self.breaker.success(time.perf_counter() - t0, len(layers))
        return rows

    def _call_with_retries(self, layers: list[Any], step: int) -> list[dict[str, Any]]:
        """``fallback=False``: the actor or an error, retrying a dead or restarting actor with backoff."""
        refs = [ray.put([LayerPayload.from_layer(layer) for layer in layers])]
        delay, last_exc = self.backoff, None
        for attempt in range(self.retries + 1):
            try:
                ref = self._handle().analyze.remote(refs, step=int(step))
                return ray.get(ref, timeout=self.breaker.policy.max_timeout)
            except ValueError as exc:
                if isinstance(exc, ray.exceptions.RayTaskError):
                    raise  # the analysis itself failed (e.g. NaN weights): not the actor's fault
                last_exc = exc  # not registered (yet)
            except GetTimeoutError:
                _cancel(ref)
                raise
            except RayActorError as exc:
                last_exc = exc
                self._relookup(exc)
                if self.gone:
                    break
            if attempt < self.retries:
                self.n_retries += 1
                log.info("ESD actor unavailable (%s); retry %d/%d in %.1f s",
                         type(last_exc).__name__, attempt + 1, self.retries, delay)
                time.sleep(delay)
                delay = min(delay * 2, self.max_backoff)
        raise last_exc or RuntimeError(f"ESD actor {self.namespace}/{self.name} is gone")

    def _in_process(self, layers: list[Any], step: int, exc: BaseException | None) -> list[dict[str, Any]]:
        """Analyze here: the same :func:`analysis.analyze.analyze_layers` the actor runs."""
        if not self.fallback:
            raise exc or RuntimeError(f"ESD actor {self.namespace}/{self.name} is gone")
        self.n_fallbacks += 1
        log.debug("analyzing step %s in-process (%s)", step, exc or self.breaker.reason)
        return analyze_payloads(layers, device=self.device)

    def stats(self) -> dict[str, int]:
        """Caller-side counters: calls, retries, fallbacks."""
        return {"calls": self.n_calls, "retries": self.n_retries, "fallbacks": self.n_fallbacks}


class _Unavailable(Exception):
    """The actor could not answer this call (the message says why)."""


def _cancel(ref: Any) -> None:
    try:
        ray.cancel(ref)
    except Exception:  # noqa: BLE001 - best effort: the actor may be gone or frozen
        pass
