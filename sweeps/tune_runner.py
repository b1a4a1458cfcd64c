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

What the driver holds while Tune runs (signal handlers, Ray, the ESD actor) and the record of the
sweep's outcome (``sweep.json``'s status, the MLflow parent run) are the context managers and the
:class:`sweeps.lifecycle.SweepLifecycle` of :mod:`sweeps.lifecycle`, stacked in one place (``_execute``).

One driver per sweep directory: :class:`sweeps.workdir.SweepLock` (an OS file lock) refuses a
second ``run``/``resume`` at once. Before any trial starts, the cluster is checked for the
resources the spec asks for (:func:`check_cluster_resources`) and the ESD actor for readiness.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import time
import uuid
from collections.abc import Sequence
from contextlib import ExitStack, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from htsweep.services.redact import redact
from htsweep.services.tracking_uri import default_tracking_uri
from htsweep.sweeps.code_paths import code_roots as default_code_roots
from htsweep.sweeps.code_paths import import_on_driver, runtime_env
from htsweep.sweeps.legacy_names import names_old_modules, old_module_names
from htsweep.sweeps.lifecycle import StopSignals, SweepLifecycle, esd_actor, own_ray, scoped_env
from htsweep.sweeps.objective import metric_and_mode
from htsweep.sweeps.spec import SpecError, SweepSpec
from htsweep.sweeps.warm_start import FROM, load_warm_trials
from htsweep.sweeps.workdir import (
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

if TYPE_CHECKING:
    from ray.tune import Tuner

    from htsweep.services.tracking import TrackingConfig

__all__ = ["SweepOutcome", "run_sweep", "resume_sweep", "smoke_spec", "check_train_config",
           "check_trainable", "check_cluster_resources"]

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

    When the spec names the user's model or dataset by import path, the trial is also built once
    here, on the driver, and one batch is pushed through the model (``trainers.dry_run``), so
    code that does not import, factories that raise or return the wrong thing, and shapes that
    do not fit fail in one line before any trial starts.

    Raises
    ------
    SpecError
        Naming the spec and the trainer's complaint (unknown model, bad optimizer ...), or the
        spec field at fault and the cause (``model: ...``, ``dataset: ...``).
    """
    from htsweep.sweeps.trainable import merge_config, train_config_dict
    from htsweep.trainers.dry_run import dry_run
    from htsweep.trainers.train import TrainConfig
    from htsweep.trainers.user_code import UserCodeError, is_import_path

    if spec.trainable is not None:
        check_trainable(spec.trainable)
        return
    sample: dict[str, Any] = {}
    for name, dom in spec.search.items():
        sample[name] = dom.values[0] if hasattr(dom, "values") else dom.low
    try:
        config = TrainConfig.from_dict(merge_config(train_config_dict(spec), sample))
    except (ValueError, TypeError, KeyError) as exc:
        raise SpecError(f"spec {spec.name!r}: the trainer rejects the settings: {exc}") from None
    if not (is_import_path(spec.model) or is_import_path(spec.dataset)):
        return
    try:
        dry_run(config)
    except UserCodeError as exc:
        raise SpecError(str(exc)) from None
    except (ValueError, TypeError, KeyError, RuntimeError) as exc:
        first = (str(exc).splitlines() or [""])[0]
        raise SpecError(f"spec {spec.name!r}: building a trial on the driver failed: {type(exc).__name__}: "
                        f"{first}") from None


def check_trainable(path: str) -> None:
    """Import the user's loop on the driver and check it takes ``(config, session)``.

    Raises
    ------
    SpecError
        One line naming the ``trainable`` field and the cause (not importable, not callable, a
        signature that cannot take two arguments).
    """
    import inspect

    from htsweep.trainers.user_code import UserCodeError, resolve

    try:
        train = resolve(path, field="trainable")
    except UserCodeError as exc:
        raise SpecError(str(exc)) from None
    if not callable(train):
        raise SpecError(f"trainable: {path!r} is a {type(train).__name__}, not a function train(config, session)")
    try:
        inspect.signature(train).bind(None, None)
    except TypeError:
        raise SpecError(f"trainable: {path} must accept (config, session); its signature is "
                        f"{path.rpartition(':')[2] or path}{inspect.signature(train)}") from None
    except ValueError:  # no signature to read (a builtin): Python will tell at the call
        pass


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


def run_sweep(spec: SweepSpec, *, address: str | None = None, workdir: str | Path | None = None,
              target_alpha: float | None = None, smoke_test: bool = False, quiet: bool = False,
              overwrite: bool = False, code_roots: Sequence[str] | None = None,
              warm_start: Sequence[str | Path] = ()) -> SweepOutcome:
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
    code_roots : sequence of str, optional
        Folders the user's code (``model: "pkg.module:factory"`` ...) is imported from, on the
        driver and every worker (:func:`sweeps.code_paths.code_roots`; default the working directory).
    warm_start : sequence of path-like
        Earlier sweeps whose finished trials start the study, re-evaluated for this spec's
        objective and never trained again (:mod:`sweeps.warm_start`).

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
    roots = list(code_roots) if code_roots is not None else list(default_code_roots())
    import_on_driver(roots)
    check_train_config(spec)
    check_ray_address(address)
    warm = load_warm_trials(spec, warm_start) if warm_start else []
    path = choose_workdir(spec, workdir)
    path.mkdir(parents=True, exist_ok=True)
    with SweepLock(path):
        if (path / META_FILE).exists():
            _refuse_or_clear(path, overwrite=overwrite)
        _write_spec(spec, path / SPEC_FILE)
        from htsweep.sweeps.search import optuna_storage_url

        sweep_id = uuid.uuid4().hex
        tune_name, study_name = store_names(spec.name, sweep_id, own_tune=spec.storage_path is None,
                                            own_study=spec.optuna_storage is None)
        meta = SweepMeta(
            name=spec.name, workdir=str(path), tracking_uri=default_tracking_uri(path, spec.tracking.uri),
            optuna_storage=optuna_storage_url(spec, str(path)),
            storage_path=spec.storage_path or str(path), experiment=spec.tracking.experiment or spec.name,
            address=address, sweep_id=sweep_id, esd_namespace=esd_namespace_for(spec.name, path),
            tune_name=tune_name, study_name=study_name, code_roots=roots,
            warm_start=[str(Path(w).resolve()) for w in warm_start],
        )
        meta.save()
        if warm:
            _seed_study(meta, spec, warm)
        return _execute(meta, spec, restore=False, address=address, quiet=quiet)


def _seed_study(meta: SweepMeta, spec: SweepSpec, warm: Sequence[Any]) -> None:
    """Create the sweep's study with the warm-start trials in it (once, before the searcher opens it)."""
    import optuna

    from htsweep.sweeps.warm_start import add_warm_trials

    _, mode = metric_and_mode(spec.objective)
    study = optuna.create_study(storage=open_optuna_storage(meta.optuna_storage), study_name=meta.study,
                                directions=["minimize" if m == "min" else "maximize"
                                            for m in (mode if isinstance(mode, list) else [mode])],
                                load_if_exists=True)
    n = add_warm_trials(study, spec, warm)
    log.warning("warm start: %d finished trial(s) of %d earlier sweep(s) added to the study; none is trained again",
                n, len(meta.warm_start))


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
    import_on_driver(meta.code_roots or default_code_roots())
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
        # A sweep from before the htsweep namespace: Tune's pickles name sweeps.search ... (legacy_names).
        with old_module_names() if names_old_modules(meta.tune_path) else nullcontext():
            return _execute(meta, spec, restore=True, address=address, quiet=quiet)
    # Killed before Tune saved anything: run only the trials the study is missing.
    done = _completed_in_study(meta)
    log.warning("no Ray Tune state in %s; starting the %d missing trial(s) afresh", meta.tune_path,
                spec.num_samples - done)
    if done >= spec.num_samples:
        SweepLifecycle(meta, spec).finish(interrupted=False)
        return SweepOutcome(meta.path, "finished", done, 0, 0.0)
    return _execute(meta, spec.with_overrides(num_samples=spec.num_samples - done), restore=False,
                    address=address, quiet=quiet)


def _end_dead_driver_ray(meta: SweepMeta) -> None:
    """End what is left of the private local Ray a killed driver started (its GCS, raylet, workers)."""
    if not meta.ray_session_dir or meta.driver_host != socket.gethostname():
        return
    from htsweep.sweeps.processes import kill_session_processes

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
    return sum(FROM not in t.user_attrs  # warm-start trials were never this sweep's to run
               for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)))


def _execute(meta: SweepMeta, spec: SweepSpec, *, restore: bool, address: str | None, quiet: bool) -> SweepOutcome:
    """Build the Tuner (or restore it) inside the sweep's resources, run it, and record the outcome."""
    from htsweep.sweeps.progress import QUIET_ENV

    t0 = time.monotonic()
    life = SweepLifecycle(meta, spec)
    life.begin(event="resume" if restore else "run", address=address)
    # Exits run right to left. The outcome is recorded first, so sweep.json says interrupted or
    # failed even if the teardown hangs or is killed; the signal handlers are restored before the
    # ESD actor and our Ray go down, so a Ctrl-C during that teardown aborts it at once.
    with ExitStack() as ray_side, ExitStack() as process_side, life.recording():
        # Tuner.restore brings back the pickled ProgressCallback with the first run's setting.
        process_side.enter_context(scoped_env(QUIET_ENV, "1" if quiet else "0"))
        life.open_parent_run()
        stop = process_side.enter_context(StopSignals())
        started_ray = ray_side.enter_context(own_ray(address, runtime_env=_runtime_env(meta, spec)))
        stop.reclaim()
        if started_ray and not address:
            life.note_private_ray()
        check_cluster_resources(spec, address=address)
        _warn_node_local(meta, spec)
        if spec.monitor.esd_actor:
            ray_side.enter_context(esd_actor(meta.esd_namespace, cpu=spec.esd_actor.cpu, gpu=spec.esd_actor.gpu))
        results = _make_tuner(meta, spec, life.tracking, restore=restore, quiet=quiet).fit()
        n_trials, n_errors, errors = len(results), results.num_errors, _error_lines(results)
        interrupted = stop.received is not None or n_trials < spec.num_samples
    try:
        life.finish(interrupted=interrupted, all_errored=0 < n_trials <= n_errors)
    except Exception:
        life.mark_failed()
        raise
    return SweepOutcome(meta.path, meta.status, n_trials, n_errors, time.monotonic() - t0, errors)


def _runtime_env(meta: SweepMeta, spec: SweepSpec) -> dict[str, Any]:
    """The job's runtime_env: the user's code roots on every worker (the sweep dir never shipped)."""
    roots = meta.code_roots or default_code_roots()
    here = Path(roots[-1])  # the launch directory (code_roots puts it last), wherever the resume runs
    workdir = Path(meta.workdir).resolve()
    exclude = [f"/{workdir.relative_to(here)}/"] if spec.ship_code and workdir.is_relative_to(here) else []
    return runtime_env(roots, ship=spec.ship_code, cwd=here, exclude=exclude)


def _make_tuner(meta: SweepMeta, spec: SweepSpec, tracking: TrackingConfig, *, restore: bool, quiet: bool) -> Tuner:
    """A new ``Tuner`` for the spec, or the one saved in ``meta.tune_path`` (``restore``)."""
    from ray import tune

    from htsweep.services.esd_actor import DEFAULT_NAME as ESD_NAME
    from htsweep.sweeps.trainable import TrialContext, train_config_dict, train_trial

    ctx = TrialContext(base=train_config_dict(spec), objective=spec.objective, tracking=tracking,
                       parent_run_id=meta.parent_run_id, esd_name=ESD_NAME if spec.monitor.esd_actor else None,
                       esd_namespace=meta.esd_namespace, conv=spec.monitor.conv, trainable=spec.trainable,
                       tail_law=spec.monitor.tail_law, farms=spec.computes_farms,
                       farms_windows=spec.monitor.farms_windows)
    trainable = tune.with_resources(tune.with_parameters(train_trial, ctx=ctx),
                                    {"cpu": spec.resources.cpu, "gpu": spec.resources.gpu})
    if restore:
        return tune.Tuner.restore(meta.tune_path, trainable=trainable, resume_errored=True)
    return tune.Tuner(trainable, tune_config=_tune_config(spec, meta), run_config=_run_config(spec, meta, quiet=quiet))


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


def _tune_config(spec: SweepSpec, meta: SweepMeta):
    """The one place metric and mode are stated."""
    from ray import tune

    from htsweep.sweeps.search import make_scheduler, make_searcher

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

    from htsweep.sweeps.progress import ProgressCallback

    return tune.RunConfig(
        name=meta.tune_name or TUNE_NAME,
        storage_path=meta.storage_path,
        failure_config=tune.FailureConfig(max_failures=spec.max_failures),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
        callbacks=[ProgressCallback(spec.num_samples, list(spec.search), quiet=quiet)],
        verbose=0,
    )
