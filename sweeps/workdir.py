"""The layout of a sweep's working directory and its small metadata file.

::

    <workdir>/
        spec.yaml        the validated spec the sweep runs (defaults filled in, overrides applied)
        sweep.json       where everything lives: stores, study, MLflow experiment and parent run
        optuna.db        the Optuna study (sqlite, unless the spec names another storage)
        mlflow.db        MLflow tracking store (sqlite, unless a tracking URI is given)
        mlartifacts/     MLflow artifacts (ESD npz/PNGs per trial)
        tune/            Ray Tune experiment state, trial directories and checkpoints
        report/          ``htsweep report`` output (index.html + PNGs)

Reading these needs neither Ray nor MLflow, so ``status``/``best`` stay quick.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sweeps.spec import SpecError, SweepSpec

__all__ = [
    "SweepMeta", "TUNE_NAME", "choose_workdir", "default_workdir", "esd_namespace_for", "find_workdir",
    "load_optuna_study", "open_optuna_storage",
]

TUNE_NAME = "tune"
META_FILE = "sweep.json"
SPEC_FILE = "spec.yaml"


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
        """The Ray Tune experiment directory (``<storage_path>/tune``)."""
        return f"{self.storage_path.rstrip('/')}/{TUNE_NAME}"

    def spec(self) -> SweepSpec:
        """The persisted spec of this sweep."""
        return SweepSpec.from_yaml(self.path / SPEC_FILE)

    def save(self) -> None:
        """Write ``sweep.json`` atomically."""
        tmp = self.path / (META_FILE + ".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2))
        os.replace(tmp, self.path / META_FILE)

    @classmethod
    def load(cls, workdir: str | Path) -> SweepMeta:
        """Read ``<workdir>/sweep.json``; a clear error if it is not a sweep directory."""
        workdir = Path(workdir)
        meta = workdir / META_FILE
        if not meta.is_file():
            raise SpecError(f"{workdir}: not a sweep directory (no {META_FILE}); start one with `htsweep run SPEC`")
        data = json.loads(meta.read_text())
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})


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
    import time

    import optuna
    from sqlalchemy.exc import IntegrityError, OperationalError

    for attempt in range(attempts):
        try:
            return optuna.storages.RDBStorage(url, heartbeat_interval=None)
        except (IntegrityError, OperationalError):
            if attempt == attempts - 1:
                raise
            time.sleep(wait_s)
    raise AssertionError("unreachable")


def load_optuna_study(name: str, url: str) -> Any:
    """``optuna.load_study`` through :func:`open_optuna_storage` (``KeyError`` if there is no such study)."""
    import optuna

    return optuna.load_study(study_name=name, storage=open_optuna_storage(url))
