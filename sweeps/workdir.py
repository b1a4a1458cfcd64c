"""The layout of a sweep's working directory and its small metadata file.

::

    <workdir>/
        spec.yaml        the validated spec the sweep runs (defaults filled in, overrides applied)
        sweep.json       where everything lives: stores, study, MLflow experiment and parent run
        optuna.db        the Optuna study (sqlite, unless the spec names another storage)
        mlflow.db        MLflow tracking store (sqlite, unless a tracking URI is given)
        mlartifacts/     MLflow artifacts (ESD npz/PNGs per trial)
        mlbuffer/        MLflow writes journaled during a tracking outage (``htsweep sync`` sends them)
        tune/            Ray Tune experiment state, trial directories and checkpoints
        report/          ``htsweep report`` output (index.html + PNGs)
        .lock            held (``flock``) by the one driver running the sweep; names its pid and host

Reading these needs neither Ray nor MLflow, so ``status``/``best`` stay quick. Credentials in the
stores' URIs never reach ``sweep.json`` (:func:`services.redact.redact`); a resume takes them from the
persisted spec or the environment again.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import socket
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from htsweep.services.redact import is_redacted, redact, redact_mapping
from htsweep.sweeps.spec import SpecError, SweepSpec

__all__ = [
    "SweepLock", "SweepMeta", "TUNE_NAME", "choose_workdir", "default_workdir", "esd_namespace_for",
    "find_workdir", "load_optuna_study", "open_optuna_storage", "store_names",
]

TUNE_NAME = "tune"
META_FILE = "sweep.json"
SPEC_FILE = "spec.yaml"
LOCK_FILE = ".lock"


@dataclass
class SweepMeta:
    """Contents of ``sweep.json``.

    Attributes
    ----------
    name : str
        Sweep (and Optuna study) name.
    workdir : str
        Absolute path of the sweep directory.
    tracking_uri, optuna_storage, storage_path : str
        MLflow tracking URI, Optuna storage URL, Ray Tune storage path.
    experiment : str
        MLflow experiment name.
    parent_run_id : str or None
        The MLflow run of the whole sweep (trial runs are nested under it).
    address : str or None
        The Ray address the sweep was launched with (``None``: a local Ray).
    status : str
        ``running``, ``interrupted``, ``finished`` or ``failed``.
    driver_pid, driver_host : int, str or None
        The process running the sweep (so a second driver is refused while it lives).
    sweep_id : str or None
        Unique id of this sweep; tags its MLflow parent run (``None`` in sweeps older than it).
    esd_namespace : str or None
        Ray namespace of the sweep's ESD actor (``None``: older sweeps, see :func:`esd_namespace_for`).
    tune_name, study_name : str or None
        The Ray Tune experiment and the Optuna study (see :func:`store_names`; ``None`` in older
        sweeps: ``tune`` and ``name``).
    ray_session_dir : str or None
        Session directory of the private local Ray the last driver started (``None`` on a cluster):
        a resume after a hard kill ends what is left of that session.
    code_roots : list of str or None
        Folders the user's code is imported from (the spec's folder, then the launch directory:
        ``sweeps.code_paths.code_roots``); a resume from elsewhere uses them too (``None``: older sweeps,
        the working directory).
    warm_start : list of str
        The earlier sweeps whose finished trials started this sweep's study (``sweeps.warm_start``).
    """

    name: str
    workdir: str
    tracking_uri: str
    optuna_storage: str
    storage_path: str
    experiment: str
    parent_run_id: str | None = None
    address: str | None = None
    status: str = "running"
    driver_pid: int | None = None
    driver_host: str | None = None
    sweep_id: str | None = None
    esd_namespace: str | None = None
    tune_name: str | None = None
    study_name: str | None = None
    ray_session_dir: str | None = None
    code_roots: list[str] | None = None
    warm_start: list[str] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)

    def driver_alive(self) -> bool:
        """True if a driver on this host is still running this sweep."""
        if self.status != "running" or not self.driver_pid or self.driver_host != socket.gethostname():
            return False
        try:
            os.kill(self.driver_pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return self.driver_pid != os.getpid()

    @property
    def path(self) -> Path:
        """The sweep directory."""
        return Path(self.workdir)

    @property
    def tune_path(self) -> str:
        """The Ray Tune experiment directory (``<storage_path>/<tune_name>``)."""
        return f"{self.storage_path.rstrip('/')}/{self.tune_name or TUNE_NAME}"

    @property
    def study(self) -> str:
        """The Optuna study's name."""
        return self.study_name or self.name

    def spec(self) -> SweepSpec:
        """The persisted spec of this sweep."""
        return SweepSpec.from_yaml(self.path / SPEC_FILE)

    def save(self) -> None:
        """Write ``sweep.json`` atomically, with credentials in the store URIs masked."""
        tmp = self.path / (META_FILE + ".tmp")
        tmp.write_text(json.dumps(redact_mapping(asdict(self)), indent=2))
        os.replace(tmp, self.path / META_FILE)

    @classmethod
    def load(cls, workdir: str | Path) -> SweepMeta:
        """Read ``<workdir>/sweep.json``; a one-line error if it is missing or corrupt.

        Store URIs whose credentials were masked are taken again from the persisted spec (or the
        environment, for the tracking URI), and must match what was recorded.
        """
        workdir = Path(workdir)
        meta = workdir / META_FILE
        if not meta.is_file():
            raise SpecError(f"{workdir}: not a sweep directory (no {META_FILE}); start one with `htsweep run SPEC`")
        try:
            data = json.loads(meta.read_text())
            known = {f for f in cls.__dataclass_fields__}
            loaded = cls(**{k: v for k, v in data.items() if k in known})
            if not all(isinstance(getattr(loaded, k), str) for k in ("name", "workdir", "tracking_uri",
                                                                     "optuna_storage", "storage_path")):
                raise TypeError("a store location is not a string")
        except (ValueError, TypeError, AttributeError, UnicodeDecodeError) as exc:
            first = (str(exc).splitlines() or [type(exc).__name__])[0]
            raise SpecError(f"{meta}: corrupt sweep metadata ({first[:200]}); it cannot be resumed or shown "
                            "as it is") from None
        if any(is_redacted(v) for v in (loaded.tracking_uri, loaded.optuna_storage, loaded.storage_path)):
            loaded._restore_secrets()
        return loaded

    def _restore_secrets(self) -> None:
        """Put back the credentials :meth:`save` masked, from the persisted spec and the environment."""
        from htsweep.services.tracking_uri import default_tracking_uri

        spec = self.spec()
        candidates = {
            "tracking_uri": default_tracking_uri(self.workdir, spec.tracking.uri),
            "optuna_storage": spec.optuna_storage,
            "storage_path": spec.storage_path,
        }
        for key, real in candidates.items():
            stored = getattr(self, key)
            if not is_redacted(stored):
                continue
            if not real or redact(real) != stored:
                where = ("tracking.uri in the spec or $HTSWEEP_TRACKING_URI" if key == "tracking_uri"
                         else f"{key} in {SPEC_FILE}")
                raise SpecError(f"{self.path / META_FILE}: {key} {stored} had credentials that were not "
                                f"stored; set them again in {where}")
            setattr(self, key, real)


def store_names(name: str, sweep_id: str, *, own_tune: bool, own_study: bool) -> tuple[str, str]:
    """The Ray Tune experiment and Optuna study names of a new sweep.

    In the sweep's own directory (the default ``storage_path`` and ``optuna.db``) nothing else can
    collide: ``tune`` and the sweep's name. In a store shared with other sweeps (a given
    ``storage_path`` or ``optuna_storage``) both carry the sweep's id as well, so two sweeps of one
    spec never share a Tune experiment or merge their studies.

    Returns
    -------
    (str, str)
        ``(tune_name, study_name)``.
    """
    unique = f"{name}-{sweep_id[:8]}"
    return (TUNE_NAME if own_tune else unique), (name if own_study else unique)


class SweepLock:
    """An exclusive OS lock on a sweep directory, held by the one driver that runs the sweep.

    ``flock`` on ``<workdir>/.lock``: the kernel releases it when the holder exits in any way (even
    SIGKILL), so a stale lock cannot block a resume. The file records the holder's pid and host
    for the error the next driver gets. The descriptor is not inherited by child processes
    (Python opens files non-inheritable), so Ray processes outliving a killed driver do not keep it.

    Examples
    --------
    >>> import tempfile
    >>> d = tempfile.mkdtemp()
    >>> with SweepLock(d):
    ...     SweepLock(d).acquire()
    Traceback (most recent call last):
    ...
    htsweep.sweeps.spec.SpecError: ... is in use by another htsweep driver (pid ... on ...); wait for it to end or stop it (Ctrl-C)
    """

    def __init__(self, workdir: str | Path) -> None:
        self.path = Path(workdir) / LOCK_FILE
        self._fh: Any = None

    def acquire(self) -> SweepLock:
        """Take the lock or raise :class:`SpecError` naming the holder's pid and host."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(self.path, "a+")  # noqa: SIM115 - held open for the lock's lifetime
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = self._holder(fh)
            fh.close()
            raise SpecError(f"{self.path.parent} is in use by another htsweep driver (pid {holder.get('pid', '?')} "
                            f"on {holder.get('host', '?')}); wait for it to end or stop it (Ctrl-C)") from None
        fh.seek(0)
        fh.truncate()
        fh.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}))
        fh.flush()
        self._fh = fh
        return self

    @staticmethod
    def _holder(fh: Any) -> dict[str, Any]:
        """Who holds the lock (the holder writes it right after taking the lock: wait a moment for it)."""
        for _ in range(40):
            fh.seek(0)
            try:
                holder = json.loads(fh.read() or "{}")
            except ValueError:
                holder = {}
            if holder.get("pid"):
                return holder
            time.sleep(0.05)
        return {}

    def release(self) -> None:
        """Release the lock (the file stays: deleting it would race with the next driver)."""
        if self._fh is not None:
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None

    def __enter__(self) -> SweepLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def default_workdir(spec: SweepSpec) -> Path:
    """``spec.workdir`` or ``runs/<name>`` (relative to the current directory)."""
    return Path(spec.workdir) if spec.workdir else Path("runs") / spec.name


def choose_workdir(spec: SweepSpec, workdir: str | Path | None = None) -> Path:
    """The (absolute) directory a new sweep of ``spec`` goes to.

    ``workdir`` if given; else :func:`default_workdir`, or ``runs/<name>-2``, ``-3`` ... when
    earlier sweeps of this spec are there.
    """
    if workdir is not None:
        return Path(workdir).resolve()
    base = path = default_workdir(spec).resolve()
    n = 1
    while (path / META_FILE).exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return path


def esd_namespace_for(name: str, workdir: str | Path) -> str:
    """The Ray namespace of a sweep's ESD actor: ``htsweep-<name>-<hash of the workdir>``.

    The name alone would let two concurrent sweeps of one spec share an actor, and the first to
    finish would kill it under the other.
    """
    digest = hashlib.sha1(str(Path(workdir).resolve()).encode()).hexdigest()[:8]
    return f"htsweep-{name}-{digest}"


def find_workdir(workdir: str | Path | None) -> Path:
    """The sweep to show: ``workdir`` if given, else the most recently updated sweep under ``runs/``.

    Raises
    ------
    SpecError
        No sweep directory was given and none is found under ``./runs``.
    """
    if workdir is not None:
        return Path(workdir)
    candidates = sorted(Path("runs").glob(f"*/{META_FILE}"), key=lambda p: p.stat().st_mtime)
    if not candidates:
        raise SpecError("no sweep found under ./runs; pass the sweep directory (e.g. `htsweep status runs/quickstart`)")
    return candidates[-1].parent


def open_optuna_storage(url: str, *, attempts: int = 20, wait_s: float = 0.25) -> Any:
    """An Optuna ``RDBStorage`` on ``url``, safe to open while another process creates the store.

    Opening an RDB storage creates its tables and stamps the schema version when they are missing,
    so two processes opening a new sqlite file at once (the driver creating the study, and
    ``htsweep status`` or a test polling it) can collide on the version row. The loser retries
    once the winner is done.
    """
    import optuna
    from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError

    for attempt in range(attempts):
        try:
            return optuna.storages.RDBStorage(url, heartbeat_interval=None)
        except (IntegrityError, OperationalError) as exc:
            if attempt == attempts - 1 or "not a database" in str(exc):
                raise _storage_error(url, exc) from None
            time.sleep(wait_s)
        except (SQLAlchemyError, ValueError, ImportError) as exc:  # corrupt file, bad URL, missing driver
            raise _storage_error(url, exc) from None
    raise AssertionError("unreachable")


def _storage_error(url: str, exc: BaseException) -> SpecError:
    first = (str(getattr(exc, "orig", None) or exc).strip().splitlines() or [type(exc).__name__])[0]
    return SpecError(f"cannot open the Optuna storage at {redact(url)}: {redact(first)[:300]}")


def load_optuna_study(name: str, url: str) -> Any:
    """``optuna.load_study`` through :func:`open_optuna_storage`.

    Raises
    ------
    KeyError
        There is no such study.
    SpecError
        The storage cannot be opened or read (a corrupt ``optuna.db``), in one line.
    """
    import optuna
    from sqlalchemy.exc import SQLAlchemyError

    storage = open_optuna_storage(url)
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except SQLAlchemyError as exc:
        raise _storage_error(url, exc) from None
