"""Run and resume sweeps: Ray Tune ``Tuner`` + Optuna, wired once in :func:`run_sweep`.

:func:`run_sweep` prepares the sweep directory (persisted spec, ``sweep.json``), initializes the
MLflow store and the sweep's parent run in the driver (sqlite migrations must not race in the
trials), starts or joins Ray, creates the shared ESD actor, and runs a ``Tuner`` whose searcher is
an Optuna study in ``sqlite:///<workdir>/optuna.db``. Ctrl-C (SIGINT) makes Tune save its state and
return; the sweep is then ``interrupted`` and :func:`resume_sweep` continues it with
``Tuner.restore`` on the same study.

Resume after a hard kill (``shared/STACK_NOTES.md``): the searcher tolerates results for trials the study
already finished (:class:`sweeps.search.ResumableOptunaSearch`), and at the end of every complete
run Optuna trials left RUNNING by a dead driver are marked FAIL and every MLflow trial run still
open is closed with a reason (:func:`services.reconcile.close_open_runs`). What is left of the dead
driver's private Ray is ended first. If Tune never saved any state, the sweep restarts with only
the missing number of trials.

One driver per sweep directory: :class:`sweeps.workdir.SweepLock` (an OS file lock) refuses a
second ``run``/``resume`` at once. Before any trial starts, the cluster is checked for the
resources the spec asks for (:func:`check_cluster_resources`) and the ESD actor for readiness.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.redact import redact
from services.tracking_uri import default_tracking_uri
from sweeps.objective import metric_and_mode
from sweeps.spec import SpecError, SweepSpec
from sweeps.workdir import (
    LOCK_FILE,
    META_FILE,
    SPEC_FILE,
    TUNE_NAME,
    SweepLock,
    SweepMeta,
    choose_workdir,
    esd_namespace_for,
    load_optuna_study,
    open_optuna_storage,
    store_names,
)

__all__ = ["SweepOutcome", "run_sweep", "resume_sweep", "smoke_spec", "check_train_config",
           "check_cluster_resources"]

#: Seconds the driver waits for the ESD actor to answer before trials start without it.
ESD_READY_S = float(os.environ.get("HTSWEEP_ESD_READY_S", "60"))

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SweepOutcome:
    """What a run or resume ended with.

    Attributes
    ----------
    workdir : Path
    status : str
        ``finished`` or ``interrupted``.
    n_trials : int
        Tune trials in the experiment.
    n_errors : int
        Trials that ended in an error.
    elapsed_s : float
    errors : tuple of str
        One line per errored trial: ``<trial id>: <first line of its error>``.
    """

    workdir: Path
    status: str
    n_trials: int
    n_errors: int
    elapsed_s: float
    errors: tuple[str, ...] = ()


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


def smoke_spec(spec: SweepSpec) -> SweepSpec:
    """A tiny version of ``spec``: 2 trials of at most 40 steps, monitored every 20."""
    train = dict(spec.train)
    train.pop("epochs", None)
    train["steps"] = min(int(train.get("steps", 40)), 40)
    monitor = spec.monitor.model_dump()
    monitor.update(eval_every=min(monitor["eval_every"], 20), spectral_every=min(monitor["spectral_every"], 20))
    n = min(spec.num_samples, 2 if not spec.grid_size > 1 else spec.grid_size)
    return spec.with_overrides(train=train, monitor=monitor, num_samples=n)


def check_train_config(spec: SweepSpec) -> None:
    """Build one ``TrainConfig`` from the spec (first value of every domain) to fail early.

    Raises
    ------
    SpecError
        Naming the spec and the trainer's complaint (unknown model, bad optimizer ...).
    """
    from sweeps.trainable import merge_config, train_config_dict
    from trainers.train import TrainConfig

    sample: dict[str, Any] = {}
    for name, dom in spec.search.items():
        sample[name] = dom.values[0] if hasattr(dom, "values") else dom.low
    try:
        TrainConfig.from_dict(merge_config(train_config_dict(spec), sample))
    except (ValueError, TypeError, KeyError) as exc:
        raise SpecError(f"spec {spec.name!r}: the trainer rejects the settings: {exc}") from None


def _ensure_ray(address: str | None) -> bool:
    """Join ``address``, or start a private local Ray; True if this call connected Ray.

    ``address="local"`` always starts a new instance, so a cluster someone started with
    ``ray start`` on this machine is only used when asked for (``--address auto``).
    """
    import ray

    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = dict(log_to_driver=False, configure_logging=False)
    if address:
        try:
            ray.init(address=address, **kwargs)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise SpecError(redact(f"cannot connect to the Ray cluster at {address!r}: {exc}")) from None
    else:
        ray.init(address="local", include_dashboard=False, **kwargs)
    return True


def check_ray_address(address: str | None, *, timeout: float = 5.0) -> None:
    """Fail fast when a ``HOST:PORT`` Ray address does not accept connections.

    (``ray.init`` would otherwise retry for minutes.) ``auto``, ``local`` and ``ray://`` addresses
    are left to Ray.
    """
    if not address or address in ("auto", "local") or "://" in address or ":" not in address:
        return
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except (OSError, ValueError) as exc:
        raise SpecError(f"cannot reach the Ray head at {address}: {exc} "
                        "(is `ray start --head --port=PORT` running there?)") from None


def check_cluster_resources(spec: SweepSpec, *, address: str | None, wait_s: float | None = None) -> None:
    """Fail (or, on an autoscaling cluster, wait a bounded time) when no node can host a trial or the actor.

    A trial or actor asking for resources no node has stays pending forever without a word
    from Ray Tune. Each demand (``resources`` for a trial, ``esd_actor`` for the actor) must fit on
    one node; the error names the spec field. On an autoscaling cluster whose node types could
    host it, the driver asks the autoscaler for such a node and waits up to ``wait_s`` seconds
    (default ``$HTSWEEP_AUTOSCALE_WAIT_S`` or 900).

    Raises
    ------
    SpecError
        ``resources.gpu: each trial asks for 1 GPU, but the Ray cluster is CPU-only ...``.
    """

    wait_s = float(os.environ.get("HTSWEEP_AUTOSCALE_WAIT_S", "900")) if wait_s is None else float(wait_s)
    demands = [("resources", "each trial", spec.resources.cpu, spec.resources.gpu)]
    if spec.monitor.esd_actor:
        demands.append(("esd_actor", "the ESD actor", spec.esd_actor.cpu, spec.esd_actor.gpu))
    node_types = _autoscaler_node_types() if address is not None else None
    for field, who, cpu, gpu in demands:
        verdict = resource_shortfall(field, who, cpu, gpu, _alive_nodes(), node_types)
        if verdict is None:
            continue
        action, message = verdict
        if action == "fail":
            raise SpecError(message)
        log.warning("%s; asking the autoscaler for one and waiting up to %.0f s ($HTSWEEP_AUTOSCALE_WAIT_S)",
                    message, wait_s)
        from ray.autoscaler.sdk import request_resources

        request_resources(bundles=[{"CPU": cpu, **({"GPU": gpu} if gpu else {})}])
        deadline = time.monotonic() + wait_s
        while resource_shortfall(field, who, cpu, gpu, _alive_nodes(), node_types) is not None:
            if time.monotonic() > deadline:
                raise SpecError(f"{message}; none appeared within {wait_s:.0f} s")
            time.sleep(5.0)
        request_resources(bundles=[])


def resource_shortfall(field: str, who: str, cpu: float, gpu: float, nodes: list[dict[str, float]],
                       node_types: list[dict[str, float]] | None) -> tuple[str, str] | None:
    """Whether a demand of ``cpu`` CPUs and ``gpu`` GPUs fits on one node.

    Parameters
    ----------
    field, who : str
        The spec section (``resources``, ``esd_actor``) and who asks, for the message.
    cpu, gpu : float
        The demand.
    nodes : list of dict
        Resources of each alive node (``{"CPU": 2.0, "GPU": 0.0, ...}``).
    node_types : list of dict or None
        Resources of each node type an autoscaler may still add (None: a fixed cluster).

    Returns
    -------
    None or (str, str)
        None when an alive node fits; else ``("wait", message)`` when an autoscaler node type
        fits, or ``("fail", message)``; the message names the field (``resources.gpu``).
    """
    def fits(res: dict[str, float]) -> bool:
        return res.get("CPU", 0.0) >= cpu and res.get("GPU", 0.0) >= gpu

    if any(fits(n) for n in nodes):
        return None
    if gpu > 0 and not any(n.get("GPU", 0.0) >= gpu for n in nodes):
        name, want, key = f"{field}.gpu", f"{gpu:g} GPU", "GPU"
    else:
        name, want, key = f"{field}.cpu", f"{cpu:g} CPU", "CPU"
    have = max((n.get(key, 0.0) for n in nodes), default=0.0)
    has = "is CPU-only" if key == "GPU" and not have else f"has at most {have:g} {key} per node"
    message = f"{name}: {who} asks for {want}, but the Ray cluster {has} ({len(nodes)} node(s))"
    if node_types and any(fits(t) for t in node_types):
        return "wait", message
    more = " and none of its autoscaler's node types has it" if node_types else ""
    return "fail", f"{message}{more}; lower {name} or run on a cluster that has it"


def _alive_nodes() -> list[dict[str, float]]:
    import ray

    return [dict(n.get("Resources", {})) for n in ray.nodes() if n.get("Alive")]


def _autoscaler_node_types() -> list[dict[str, float]] | None:
    """Resources of the node types the cluster's autoscaler may add (None: no autoscaler config)."""
    try:
        from ray._private.state import state

        config = state.get_cluster_config()
    except Exception:  # noqa: BLE001 - unknown: treat the cluster as fixed
        return None
    if config is None:
        return None
    return [dict(g.resources) for g in config.node_group_configs if g.max_count != 0]


def _warn_node_local(meta: SweepMeta, spec: SweepSpec) -> None:
    """On a cluster with several nodes, say which stores only this node can see."""
    import ray

    n_nodes = sum(1 for n in ray.nodes() if n.get("Alive"))
    if n_nodes < 2:
        return
    local = []
    if "://" not in meta.storage_path:
        local.append(f"storage_path {meta.storage_path} (Tune checkpoints: set storage_path to s3://... or a "
                     "shared filesystem, or a trial retried on another node starts over)")
    if meta.tracking_uri.startswith(("sqlite:", "file:")) or "://" not in meta.tracking_uri:
        local.append(f"the tracking store {redact(meta.tracking_uri)} (trials on other nodes write to their own copy: "
                     "run an MLflow server, see ray_cluster.yaml)")
    local.append(f"the MLflow outage journals under {meta.path / 'mlbuffer'} (a trial journals on its own node's "
                 "disk; `htsweep sync DIR --tracking-uri URI` on that node sends them)")
    for what in local:
        log.warning("%d-node cluster, but %s is node-local", n_nodes, what)


def _tracking_config(meta: SweepMeta, spec: SweepSpec):
    from services.tracking import TrackingConfig

    kwargs: dict[str, Any] = {"figure_every": spec.tracking.figure_every}
    if spec.tracking.artifacts:
        kwargs["artifacts"] = spec.tracking.artifacts
    return TrackingConfig.for_workdir(meta.workdir, experiment=meta.experiment, tracking_uri=meta.tracking_uri,
                                      **kwargs)


def run_sweep(spec: SweepSpec, *, address: str | None = None, workdir: str | Path | None = None,
              target_alpha: float | None = None, smoke_test: bool = False, quiet: bool = False,
              overwrite: bool = False) -> SweepOutcome:
    """Launch a sweep and block until it finishes or is interrupted (Ctrl-C).

    Parameters
    ----------
    spec : SweepSpec
        The validated spec.
    address : str, optional
        Ray cluster address (``"auto"``, ``"127.0.0.1:6379"``); default a local Ray.
    workdir : str or Path, optional
        Sweep directory; default :func:`sweeps.workdir.choose_workdir` (``spec.workdir`` or
        ``runs/<name>``, ``runs/<name>-2`` ... if taken).
        A given directory must not hold a sweep yet, unless ``overwrite``.
    target_alpha : float, optional
        Overrides ``objective.target_alpha``.
    smoke_test : bool, default=False
        Run a tiny version (:func:`smoke_spec`).
    quiet : bool, default=False
        Print starts/completions only, not every report.
    overwrite : bool, default=False
        Delete a finished or interrupted sweep already in ``workdir`` first.

    Returns
    -------
    SweepOutcome

    Raises
    ------
    SpecError
        The workdir already holds a sweep, the trainer rejects the settings, or the MLflow
        tracking server cannot be reached.
    """
    if target_alpha is not None:
        spec = spec.with_overrides(**{"objective.target_alpha": float(target_alpha)})
    if smoke_test:
        spec = smoke_spec(spec)
    check_train_config(spec)
    check_ray_address(address)
    path = choose_workdir(spec, workdir)
    path.mkdir(parents=True, exist_ok=True)
    with SweepLock(path):
        if (path / META_FILE).exists():
            _refuse_or_clear(path, overwrite=overwrite)
        _write_spec(spec, path / SPEC_FILE)
        from sweeps.search import optuna_storage_url

        sweep_id = uuid.uuid4().hex
        tune_name, study_name = store_names(spec.name, sweep_id, own_tune=spec.storage_path is None,
                                            own_study=spec.optuna_storage is None)
        meta = SweepMeta(
            name=spec.name, workdir=str(path), tracking_uri=default_tracking_uri(path, spec.tracking.uri),
            optuna_storage=optuna_storage_url(spec, str(path)),
            storage_path=spec.storage_path or str(path), experiment=spec.tracking.experiment or spec.name,
            address=address, sweep_id=sweep_id, esd_namespace=esd_namespace_for(spec.name, path),
            tune_name=tune_name, study_name=study_name,
        )
        meta.save()
        return _execute(meta, spec, restore=False, address=address, quiet=quiet)


def _refuse_or_clear(path: Path, *, overwrite: bool) -> None:
    """A sweep is in ``path`` already: empty the directory (``overwrite``, driver gone) or refuse."""
    try:
        old = SweepMeta.load(path)
    except SpecError:
        if not overwrite:
            raise
        old = None
    if overwrite and (old is None or not old.driver_alive()):
        for entry in path.iterdir():
            if entry.name == LOCK_FILE:  # held by this process right now
                continue
            shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
        return
    status = old.status if old is not None else "unknown"
    hint = ("continue it with `htsweep resume " + str(path) + "`" if status != "finished"
            else "choose another --workdir or pass --overwrite")
    raise SpecError(f"{path} already holds a sweep ({status}); {hint}")


def _write_spec(spec: SweepSpec, path: Path) -> None:
    """Persist the resolved spec; readable by its owner only when it holds credentials."""
    spec.to_yaml(path)
    text = path.read_text()
    if redact(text) != text:
        os.chmod(path, 0o600)


def resume_sweep(workdir: str | Path, *, address: str | None = None, quiet: bool = False) -> SweepOutcome:
    """Continue an interrupted (or killed) sweep with the same spec, Tune state and Optuna study.

    Parameters
    ----------
    workdir : str or Path
        The sweep directory.
    address : str, optional
        Ray address; default the one the sweep was launched with.

    Returns
    -------
    SweepOutcome
    """
    workdir = Path(workdir).resolve()
    SweepMeta.load(workdir)  # a one-line error for a directory that holds no sweep, before locking it
    with SweepLock(workdir):
        return _resume_locked(workdir, address=address, quiet=quiet)


def _resume_locked(workdir: Path, *, address: str | None, quiet: bool) -> SweepOutcome:
    from ray import tune

    meta = SweepMeta.load(workdir)
    spec = meta.spec()
    address = address if address is not None else meta.address
    if meta.status == "finished":
        return SweepOutcome(meta.path, "finished", 0, 0, 0.0)
    if meta.driver_alive():
        raise SpecError(f"{meta.path} is still running (driver pid {meta.driver_pid}); stop it first (Ctrl-C)")
    check_ray_address(address)
    _end_dead_driver_ray(meta)
    open_optuna_storage(meta.optuna_storage)  # a corrupt optuna.db fails here, in one line, before Ray starts
    if tune.Tuner.can_restore(meta.tune_path):
        return _execute(meta, spec, restore=True, address=address, quiet=quiet)
    # Killed before Tune saved anything: run only the trials the study is missing.
    done = _completed_in_study(meta)
    log.warning("no Ray Tune state in %s; starting the %d missing trial(s) afresh", meta.tune_path,
                spec.num_samples - done)
    if done >= spec.num_samples:
        _finish(meta, spec, interrupted=False)
        return SweepOutcome(meta.path, "finished", done, 0, 0.0)
    return _execute(meta, spec.with_overrides(num_samples=spec.num_samples - done), restore=False,
                    address=address, quiet=quiet)


def _end_dead_driver_ray(meta: SweepMeta) -> None:
    """End what is left of the private local Ray a killed driver started (its GCS, raylet, workers)."""
    if not meta.ray_session_dir or meta.driver_host != socket.gethostname():
        return
    from sweeps.processes import kill_session_processes

    killed = kill_session_processes(meta.ray_session_dir)
    if killed:
        log.warning("ended %d process(es) left by the previous driver's Ray session (%s)", len(killed),
                    meta.ray_session_dir)
    meta.ray_session_dir = None


def _completed_in_study(meta: SweepMeta) -> int:
    import optuna

    try:
        study = load_optuna_study(meta.study, meta.optuna_storage)
    except KeyError:
        return 0
    return len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)))


def _open_parent_run(meta: SweepMeta, spec: SweepSpec, tracking: Any) -> str:
    """Initialize the store and create or re-open the sweep's MLflow run, failing in one line."""
    from services.redact import redact_mapping
    from services.tracking import init_store, start_sweep_run

    # MLflow's default HTTP retries block ~4 minutes per call when the server is down.
    tracking.configure_http()
    try:
        init_store(tracking.tracking_uri)  # migrations once, here, never concurrently in the trials
        return start_sweep_run(tracking, params=redact_mapping(spec.model_dump(mode="json")),
                               tags={"htsweep.workdir": meta.workdir}, sweep_id=meta.sweep_id)
    except Exception as exc:  # noqa: BLE001 - any failure here means no usable store
        what = "reach the MLflow tracking server" if tracking.is_remote else "open the MLflow tracking store"
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise SpecError(redact(f"cannot {what} at {tracking.tracking_uri}: {first[:300]}")) from None


def _end_parent_run(meta: SweepMeta, spec: SweepSpec, status: str, metrics: dict[str, float] | None = None) -> None:
    if not meta.parent_run_id:
        return
    from services.tracking import end_sweep_run

    try:
        end_sweep_run(_tracking_config(meta, spec), meta.parent_run_id, status=status, metrics=metrics)
    except Exception as exc:  # noqa: BLE001 - the sweep's own outcome is already recorded
        log.warning("could not end the sweep's MLflow run: %s", redact(str(exc))[:300])


def _execute(meta: SweepMeta, spec: SweepSpec, *, restore: bool, address: str | None, quiet: bool) -> SweepOutcome:
    """Build the Tuner (or restore it), run it, and record the outcome."""
    from ray import tune

    from services.esd_actor import DEFAULT_NAME as ESD_NAME
    from sweeps.progress import QUIET_ENV
    from sweeps.trainable import TrialContext, train_config_dict, train_trial

    t0 = time.monotonic()
    tracking = _tracking_config(meta, spec)
    # Sweeps from before these fields get them now, kept in sweep.json for later resumes.
    meta.sweep_id = meta.sweep_id or uuid.uuid4().hex
    meta.esd_namespace = meta.esd_namespace or esd_namespace_for(meta.name, meta.workdir)
    meta.status, meta.driver_pid, meta.driver_host = "running", os.getpid(), socket.gethostname()
    meta.history.append({"event": "resume" if restore else "run", "time": time.time(), "address": address})
    meta.save()

    esd_namespace = meta.esd_namespace
    esd_name: str | None = None
    started_ray = False
    stop = StopSignals()
    # Tuner.restore brings back the pickled ProgressCallback with the first run's setting.
    quiet_before = os.environ.get(QUIET_ENV)
    os.environ[QUIET_ENV] = "1" if quiet else "0"
    store_ok = False  # a store that cannot be opened cannot record the failure either
    try:
        meta.parent_run_id = _open_parent_run(meta, spec, tracking)
        store_ok = True
        meta.save()
        stop.__enter__()
        started_ray = _ensure_ray(address)
        stop.reclaim()
        if started_ray and not address:
            meta.ray_session_dir = _ray_session_dir()
            meta.save()
        check_cluster_resources(spec, address=address)
        _warn_node_local(meta, spec)
        esd_handle = None
        if spec.monitor.esd_actor:
            from services.esd_actor import get_esd_service

            # Keep the handle: a non-detached actor dies when the driver drops its last handle.
            esd_handle = get_esd_service(ESD_NAME, namespace=esd_namespace, num_gpus=spec.esd_actor.gpu,
                                         num_cpus=spec.esd_actor.cpu)
            esd_name = ESD_NAME
            _check_ready_in_background(esd_handle, spec)
        ctx = TrialContext(base=train_config_dict(spec), objective=spec.objective, tracking=tracking,
                           parent_run_id=meta.parent_run_id, esd_name=esd_name, esd_namespace=esd_namespace,
                           conv=spec.monitor.conv)
        trainable = tune.with_resources(tune.with_parameters(train_trial, ctx=ctx),
                                        {"cpu": spec.resources.cpu, "gpu": spec.resources.gpu})
        if restore:
            tuner = tune.Tuner.restore(meta.tune_path, trainable=trainable, resume_errored=True)
        else:
            tuner = tune.Tuner(trainable, tune_config=_tune_config(spec, meta),
                               run_config=_run_config(spec, meta, quiet=quiet))
        results = tuner.fit()
        n_trials, n_errors = len(results), results.num_errors
        errors = _error_lines(results)
        interrupted = stop.received is not None or n_trials < spec.num_samples
        del esd_handle
    except KeyboardInterrupt:
        meta.status = "interrupted"
        meta.save()
        raise
    except Exception:
        _mark_failed(meta, spec, end_run=store_ok)
        raise
    finally:
        stop.__exit__()
        if quiet_before is None:
            os.environ.pop(QUIET_ENV, None)
        else:
            os.environ[QUIET_ENV] = quiet_before
        if esd_name:
            try:
                from services.esd_actor import shutdown_esd_service

                shutdown_esd_service(ESD_NAME, namespace=esd_namespace)
            except Exception:  # noqa: BLE001 - best effort
                pass
        if started_ray:
            import ray

            ray.shutdown()
    try:
        _finish(meta, spec, interrupted=interrupted, all_errored=0 < n_trials <= n_errors)
    except Exception:
        _mark_failed(meta, spec)
        raise
    return SweepOutcome(meta.path, meta.status, n_trials, n_errors, time.monotonic() - t0, errors)


def _check_ready_in_background(handle: Any, spec: SweepSpec) -> None:
    """Warn if the ESD actor does not answer within ``ESD_READY_S``, without holding up the trials."""
    from services.esd_actor import wait_ready

    def check() -> None:
        try:
            ready = wait_ready(handle, timeout=ESD_READY_S)
        except Exception:  # noqa: BLE001 - the sweep ended (Ray shut down) before the answer
            return
        if ready is None:
            log.warning("the ESD actor did not answer within %.0f s (esd_actor: cpu %g, gpu %g: not available?); "
                        "trials analyze in-process and re-probe it", ESD_READY_S, spec.esd_actor.cpu,
                        spec.esd_actor.gpu)

    threading.Thread(target=check, name="esd-ready", daemon=True).start()


def _error_lines(results: Any) -> tuple[str, ...]:
    """``<trial id>: <first line of the error>`` for every errored trial of a ``ResultGrid``."""
    out = []
    for result in results:
        if result.error is None:
            continue
        trial_id = (result.metrics or {}).get("trial_id") or Path(str(result.path)).name
        text = str(result.error).strip().splitlines()
        # Tune wraps the trial's exception; its last line names the original error.
        out.append(f"{trial_id}: {redact((text[-1] if text else type(result.error).__name__)[:300])}")
    return tuple(out)


def _ray_session_dir() -> str | None:
    try:
        from ray._private import worker

        return str(worker.global_worker.node.get_session_dir_path())
    except Exception:  # noqa: BLE001 - informational: used only to clean up after a hard kill
        return None


def _mark_failed(meta: SweepMeta, spec: SweepSpec, *, end_run: bool = True) -> None:
    # Otherwise sweep.json and the parent run would say "running" forever.
    meta.status = "failed"
    meta.save()
    if end_run:
        _end_parent_run(meta, spec, "FAILED")


def _close_open_runs(meta: SweepMeta, spec: SweepSpec) -> None:
    """No trial runs now: give every MLflow trial run still open its final status and a reason."""
    if not meta.parent_run_id:
        return
    from services.reconcile import close_open_runs
    from sweeps.search import optuna_outcomes

    try:
        closed = close_open_runs(_tracking_config(meta, spec), meta.parent_run_id,
                                 optuna_outcomes(meta.optuna_storage, meta.study))
    except Exception as exc:  # noqa: BLE001 - the next resume tries again
        log.warning("could not close the open MLflow trial runs: %s", redact(str(exc))[:300])
        return
    if closed:
        log.warning("closed %d MLflow trial run(s) left open by killed processes", len(closed))


def _tune_config(spec: SweepSpec, meta: SweepMeta):
    """The one place metric and mode are stated."""
    from ray import tune

    from sweeps.search import make_scheduler, make_searcher

    metric, mode = metric_and_mode(spec.objective)
    searcher = make_searcher(spec, metric=metric, mode=mode, storage_url=meta.optuna_storage,
                             study_name=meta.study, pending_dir=meta.workdir)
    single = isinstance(metric, str)
    return tune.TuneConfig(
        search_alg=searcher,
        scheduler=make_scheduler(spec),
        metric=metric if single else None,
        mode=mode if single else None,
        num_samples=spec.num_samples,
        reuse_actors=True,
    )


def _run_config(spec: SweepSpec, meta: SweepMeta, *, quiet: bool):
    from ray import tune

    from sweeps.progress import ProgressCallback

    return tune.RunConfig(
        name=meta.tune_name or TUNE_NAME,
        storage_path=meta.storage_path,
        failure_config=tune.FailureConfig(max_failures=spec.max_failures),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
        callbacks=[ProgressCallback(spec.num_samples, list(spec.search), quiet=quiet)],
        verbose=0,
    )


def _finish(meta: SweepMeta, spec: SweepSpec, *, interrupted: bool, all_errored: bool = False) -> None:
    """Record the outcome: stale Optuna trials FAIL, open MLflow trial runs closed, journals flushed,
    parent run ended (FAILED when every trial errored), ``sweep.json`` status."""
    from services.tracking import flush_buffers
    from sweeps.search import fail_stale_trials, tell_pending
    from sweeps.status import best_trial, load_trials

    # No trial runs any more, so the journals that trials left during a tracking outage can be
    # replayed now; what still cannot be sent stays on disk for the next resume.
    try:
        pending = flush_buffers(_tracking_config(meta, spec), timeout=30.0)
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
        _end_parent_run(meta, spec, "KILLED")
        return
    n_told = tell_pending(meta.workdir, meta.optuna_storage)
    if n_told:
        log.warning("recorded %d finished value(s) Optuna could not take during the sweep", n_told)
    n_stale = fail_stale_trials(meta.optuna_storage, meta.study)
    if n_stale:
        log.warning("marked %d Optuna trial(s) left RUNNING by an earlier driver as FAIL", n_stale)
    _close_open_runs(meta, spec)
    meta.status = "finished"
    meta.save()
    metrics: dict[str, float] = {}
    try:
        _, _, rows = load_trials(meta.path)
        best = best_trial(rows)
        metrics["n_complete"] = float(sum(r.complete for r in rows))
        if best is not None:
            metrics.update(best_alpha=best.alpha, best_alpha_error=best.alpha_error, best_test_acc=best.test_acc,
                           best_trial=float(best.number))
    except Exception as exc:  # noqa: BLE001 - summary metrics are a nicety
        log.warning("could not summarize the sweep: %s", exc)
    _end_parent_run(meta, spec, "FAILED" if all_errored else "FINISHED", metrics)

