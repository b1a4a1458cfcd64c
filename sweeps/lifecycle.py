"""What a sweep driver holds while Tune runs (signals, Ray, the ESD actor) and how it records the outcome.

:func:`sweeps.tune_runner.run_sweep` and :func:`~sweeps.tune_runner.resume_sweep` stack these
context managers around ``Tuner.fit()``; each acquires one thing on entry and gives it back on exit:

- :func:`scoped_env`: one environment variable, restored afterwards;
- :class:`StopSignals`: SIGINT/SIGTERM turned into Tune's graceful stop;
- :func:`own_ray`: joins or starts Ray, and shuts it down only if it started it;
- :func:`esd_actor`: the sweep's shared ESD actor, ended for good afterwards.

:class:`SweepLifecycle` is the sweep's record of one pass: ``sweep.json``'s status and the MLflow
parent run, from ``running`` to ``finished``/``interrupted``/``failed``. ``sweep.json`` is saved
at each step, so that a resume after a hard kill finds the parent run and the dead driver's Ray.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from htsweep.services.redact import redact
from htsweep.sweeps.spec import SpecError, SweepSpec
from htsweep.sweeps.workdir import SweepMeta, esd_namespace_for

if TYPE_CHECKING:
    from htsweep.services.tracking import TrackingConfig

__all__ = ["ESD_READY_S", "StopSignals", "SweepLifecycle", "esd_actor", "own_ray", "scoped_env"]

#: Seconds the driver waits for the ESD actor to answer before trials start without it.
ESD_READY_S = float(os.environ.get("HTSWEEP_ESD_READY_S", "60"))

log = logging.getLogger(__name__)


@contextmanager
def scoped_env(name: str, value: str) -> Iterator[None]:
    """Set the environment variable ``name`` inside the block; restore its value (or absence) after."""
    before = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before


class StopSignals:
    """Turn SIGINT and SIGTERM into Ray Tune's graceful stop, and remember that one came.

    Tune stops gracefully on SIGUSR1 (saves the experiment state, ``fit()`` returns) but gives no
    sign afterwards that it was interrupted, and it treats SIGTERM like a hard kill. Inside this
    context both signals set :attr:`received` and send SIGUSR1 to this process; a second signal
    aborts at once (``KeyboardInterrupt``). Before Tune has installed its handler there is no
    state to save, so the first signal aborts at once too.
    """

    def __init__(self) -> None:
        self.received: int | None = None
        self._old: dict[int, object] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is not threading.main_thread():
            return self
        os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"  # SIGINT is ours; Tune keeps SIGUSR1
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old[sig] = signal.signal(sig, self._handle)
        return self

    def reclaim(self) -> None:
        """Install the handlers again (``ray.init`` replaces the SIGTERM handler with its own)."""
        for sig in self._old:
            signal.signal(sig, self._handle)

    def _handle(self, signum: int, frame: object) -> None:
        tune_listening = callable(signal.getsignal(signal.SIGUSR1))
        if self.received is not None or not tune_listening:
            self.received = signum
            raise KeyboardInterrupt
        self.received = signum
        print(f"\n{signal.Signals(signum).name}: stopping the sweep and saving its state "
              "(signal again to abort now) ...", flush=True)
        os.kill(os.getpid(), signal.SIGUSR1)

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._old.items():
            signal.signal(sig, handler)
        os.environ.pop("TUNE_DISABLE_SIGINT_HANDLER", None)


@contextmanager
def own_ray(address: str | None, *, runtime_env: dict[str, Any] | None = None) -> Iterator[bool]:
    """Join ``address``, or start a private local Ray; yields True if this call connected Ray.

    ``runtime_env`` is the job's (``sweeps.code_paths.runtime_env``: the user's code on every
    worker); a process already connected keeps the one it was connected with.

    Only a Ray this call connected is shut down on exit: a process already connected (a test's
    session Ray) keeps its connection. ``address="local"`` always starts a new instance, so a
    cluster someone started with ``ray start`` on this machine is only used when asked for
    (``--address auto``).

    Raises
    ------
    SpecError
        ``address`` names a cluster that cannot be joined.
    """
    import ray

    if ray.is_initialized():
        yield False
        return
    kwargs: dict[str, Any] = dict(log_to_driver=False, configure_logging=False, runtime_env=runtime_env)
    if address:
        try:
            ray.init(address=address, **kwargs)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise SpecError(redact(f"cannot connect to the Ray cluster at {address!r}: {exc}")) from None
    else:
        ray.init(address="local", include_dashboard=False, **kwargs)
    try:
        yield True
    finally:
        ray.shutdown()


@contextmanager
def esd_actor(namespace: str, *, cpu: float, gpu: float) -> Iterator[Any]:
    """The sweep's shared ESD actor (``services.esd_actor.DEFAULT_NAME`` in ``namespace``) inside the block.

    The handle is held until the block ends: Ray ends a non-detached actor as soon as the driver
    drops its last handle, and the trials only look it up by name. A background check warns when
    the actor does not answer within :data:`ESD_READY_S`. On exit the actor is killed for good
    (best effort: Ray may be unreachable by then).
    """
    from htsweep.services.esd_actor import DEFAULT_NAME, get_esd_service, shutdown_esd_service

    handle = get_esd_service(DEFAULT_NAME, namespace=namespace, num_gpus=gpu, num_cpus=cpu)
    try:
        _check_ready_in_background(handle, cpu=cpu, gpu=gpu)
        yield handle
    finally:
        try:
            shutdown_esd_service(DEFAULT_NAME, namespace=namespace)
        except Exception:  # noqa: BLE001 - best effort
            pass


def _check_ready_in_background(handle: Any, *, cpu: float, gpu: float) -> None:
    """Warn if the ESD actor does not answer within ``ESD_READY_S``, without holding up the trials."""
    from htsweep.services.esd_actor import wait_ready

    def check() -> None:
        try:
            ready = wait_ready(handle, timeout=ESD_READY_S)
        except Exception:  # noqa: BLE001 - the sweep ended (Ray shut down) before the answer
            return
        if ready is None:
            log.warning("the ESD actor did not answer within %.0f s (esd_actor: cpu %g, gpu %g: not available?); "
                        "trials analyze in-process and re-probe it", ESD_READY_S, cpu, gpu)

    threading.Thread(target=check, name="esd-ready", daemon=True).start()


@dataclass
class SweepLifecycle:
    """One driver's pass over a sweep: ``sweep.json``'s status and the sweep's MLflow parent run.

    The parent run outlives Ray and the ESD actor: :meth:`open_parent_run` opens it while they
    start, :meth:`recording` ends it FAILED when the pass fails, and otherwise :meth:`finish`
    ends it with the sweep's summary once Ray is down.

    Parameters
    ----------
    meta : SweepMeta
        The sweep's ``sweep.json``; updated and saved in place.
    spec : SweepSpec
        The spec this pass runs.
    """

    meta: SweepMeta
    spec: SweepSpec
    tracking: TrackingConfig = field(init=False)
    #: Whether this pass opened the store: one that cannot be opened cannot record a failure either.
    run_open: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        from htsweep.services.tracking import TrackingConfig

        kwargs: dict[str, Any] = {"figure_every": self.spec.tracking.figure_every}
        if self.spec.tracking.artifacts:
            kwargs["artifacts"] = self.spec.tracking.artifacts
        self.tracking = TrackingConfig.for_workdir(self.meta.workdir, experiment=self.meta.experiment,
                                                   tracking_uri=self.meta.tracking_uri, **kwargs)

    def begin(self, *, event: str, address: str | None) -> None:
        """Mark the sweep ``running`` in this process and add ``event`` (run, resume) to its history."""
        meta = self.meta
        # Sweeps from before these fields get them now, kept in sweep.json for later resumes.
        meta.sweep_id = meta.sweep_id or uuid.uuid4().hex
        meta.esd_namespace = meta.esd_namespace or esd_namespace_for(meta.name, meta.workdir)
        meta.status, meta.driver_pid, meta.driver_host = "running", os.getpid(), socket.gethostname()
        meta.history.append({"event": event, "time": time.time(), "address": address})
        meta.save()

    def open_parent_run(self) -> None:
        """Initialize the store and create or re-open the sweep's MLflow run, failing in one line.

        Raises
        ------
        SpecError
            ``cannot reach the MLflow tracking server at URI: ...`` (or open the store).
        """
        from htsweep.services.redact import redact_mapping
        from htsweep.services.tracking import init_store, start_sweep_run

        tracking = self.tracking
        # MLflow's default HTTP retries block ~4 minutes per call when the server is down.
        tracking.configure_http()
        try:
            init_store(tracking.tracking_uri)  # migrations once, here, never concurrently in the trials
            run_id = start_sweep_run(tracking, params=redact_mapping(self.spec.model_dump(mode="json")),
                                     tags={"htsweep.workdir": self.meta.workdir}, sweep_id=self.meta.sweep_id)
        except Exception as exc:  # noqa: BLE001 - any failure here means no usable store
            what = "reach the MLflow tracking server" if tracking.is_remote else "open the MLflow tracking store"
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise SpecError(redact(f"cannot {what} at {tracking.tracking_uri}: {first[:300]}")) from None
        self.meta.parent_run_id = run_id
        self.run_open = True
        self.meta.save()

    def note_private_ray(self) -> None:
        """Keep the session directory of the local Ray this driver started: a resume after a hard
        kill ends what is left of it (:func:`sweeps.processes.kill_session_processes`)."""
        self.meta.ray_session_dir = _ray_session_dir()
        self.meta.save()

    @contextmanager
    def recording(self) -> Iterator[None]:
        """Ctrl-C in the block makes the sweep ``interrupted``, any other error ``failed``; both re-raised."""
        try:
            yield
        except KeyboardInterrupt:
            self.meta.status = "interrupted"
            self.meta.save()
            raise
        except Exception:
            self.mark_failed()
            raise

    def mark_failed(self) -> None:
        """Status ``failed``, and the parent run FAILED if this pass opened the store."""
        # Otherwise sweep.json and the parent run would say "running" forever.
        self.meta.status = "failed"
        self.meta.save()
        if self.run_open:
            self.end_parent_run("FAILED")

    def end_parent_run(self, status: str, metrics: dict[str, float] | None = None) -> None:
        """End the parent run (this pass's or, on resume, the one in ``sweep.json``); a failure only warns."""
        if not self.meta.parent_run_id:
            return
        from htsweep.services.tracking import end_sweep_run

        try:
            end_sweep_run(self.tracking, self.meta.parent_run_id, status=status, metrics=metrics)
        except Exception as exc:  # noqa: BLE001 - the sweep's own outcome is already recorded
            log.warning("could not end the sweep's MLflow run: %s", redact(str(exc))[:300])

    def finish(self, *, interrupted: bool, all_errored: bool = False) -> None:
        """Record the outcome once no trial runs: journals flushed, then (unless ``interrupted``)
        stale Optuna trials FAIL and open MLflow trial runs closed; ``sweep.json``'s status, and the
        parent run ended (KILLED when interrupted, FAILED when every trial errored)."""
        from htsweep.services.tracking import flush_buffers
        from htsweep.sweeps.search import fail_stale_trials, tell_pending

        meta = self.meta
        # No trial runs any more, so the journals that trials left during a tracking outage can be
        # replayed now; what still cannot be sent stays on disk for the next resume.
        try:
            pending = flush_buffers(self.tracking, timeout=30.0)
        except Exception as exc:  # noqa: BLE001 - the journals stay on disk either way
            pending, reason = -1, redact(str(exc))
        else:
            reason = "the tracking server is still unreachable"
        if pending:
            log.warning("MLflow writes are still journaled under %s (%s); `htsweep resume` retries them",
                        meta.path, reason)
        if interrupted:
            meta.status = "interrupted"
            meta.save()
            self.end_parent_run("KILLED")
            return
        n_told = tell_pending(meta.workdir, meta.optuna_storage)
        if n_told:
            log.warning("recorded %d finished value(s) Optuna could not take during the sweep", n_told)
        n_stale = fail_stale_trials(meta.optuna_storage, meta.study)
        if n_stale:
            log.warning("marked %d Optuna trial(s) left RUNNING by an earlier driver as FAIL", n_stale)
        self._close_open_runs()
        meta.status = "finished"
        meta.save()
        self.end_parent_run("FAILED" if all_errored else "FINISHED", self._summary())

    def _close_open_runs(self) -> None:
        """No trial runs now: give every MLflow trial run still open its final status and a reason."""
        if not self.meta.parent_run_id:
            return
        from htsweep.services.reconcile import close_open_runs
        from htsweep.sweeps.search import optuna_outcomes

        try:
            closed = close_open_runs(self.tracking, self.meta.parent_run_id,
                                     optuna_outcomes(self.meta.optuna_storage, self.meta.study))
        except Exception as exc:  # noqa: BLE001 - the next resume tries again
            log.warning("could not close the open MLflow trial runs: %s", redact(str(exc))[:300])
            return
        if closed:
            log.warning("closed %d MLflow trial run(s) left open by killed processes", len(closed))

    def _summary(self) -> dict[str, float]:
        """The parent run's final metrics: trials complete and the best trial's alpha and accuracy."""
        from htsweep.sweeps.status import best_trial, load_trials

        metrics: dict[str, float] = {}
        try:
            _, _, rows = load_trials(self.meta.path)
            best = best_trial(rows)
            metrics["n_complete"] = float(sum(r.complete for r in rows))
            if best is not None:
                metrics.update(best_alpha=best.alpha, best_alpha_error=best.alpha_error, best_test_acc=best.test_acc,
                               best_trial=float(best.number))
        except Exception as exc:  # noqa: BLE001 - summary metrics are a nicety
            log.warning("could not summarize the sweep: %s", exc)
        return metrics


def _ray_session_dir() -> str | None:
    try:
        from ray._private import worker

        return str(worker.global_worker.node.get_session_dir_path())
    except Exception:  # noqa: BLE001 - informational: used only to clean up after a hard kill
        return None
