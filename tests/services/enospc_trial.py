"""Helper for test_storage_faults.py: a trial and a journal on a nearly full tmpfs; prints a JSON report.

Run inside a private mount namespace where ``MOUNTPOINT`` is a tiny tmpfs::

    python enospc_trial.py MOUNTPOINT SQLITE_URI DOWN_URI

Exit code 97: ``MOUNTPOINT`` is not a tmpfs (the mount was not allowed).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path


class _Count(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def _fill(mountpoint: Path, leave_bytes: int) -> None:
    """Fill the tmpfs so that only about ``leave_bytes`` stay free."""
    st = os.statvfs(mountpoint)
    free = st.f_bavail * st.f_frsize
    with open(mountpoint / "filler", "wb") as fh:
        fh.write(b"\0" * max(0, free - leave_bytes))


def main(mountpoint: Path, sqlite_uri: str, down_uri: str) -> dict:
    import mlflow

    from htsweep.services.buffer import BufferedClient
    from htsweep.services.tracking import TrackingConfig
    from htsweep.sweeps.trial_logger import MlflowTrialLogger
    from htsweep.trainers.monitor import SpectralMonitor
    from htsweep.trainers.train import TrainConfig, Trainer

    counter = _Count()
    logging.getLogger("htsweep.services").addHandler(counter)
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = "0"
    os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] = "2"

    # 1. Artifacts staged on a disk with ~12 KiB left: the npz files (~1 KiB) fit, the PNGs do not.
    _fill(mountpoint, 12 * 1024)
    cfg = TrackingConfig(sqlite_uri, experiment="enospc", buffer_dir=str(mountpoint / "stage"))
    logger = MlflowTrialLogger(cfg, trial_id="trial_full")
    config = TrainConfig(model="mlp3", dataset="digits", steps=40, eval_every=10, spectral_every=10, batch_size=32,
                         lr=0.05, seed=0, device="cpu", threads=1, eval_samples=256, model_kwargs={"width": 48})
    trainer = Trainer(config, callbacks=[SpectralMonitor(), logger])
    trainer.fit()
    staging_warnings = sum("disk full staging" in m for m in counter.messages)

    # 2. The journal of a client whose server is down, on a disk with ~6 KiB left.
    (mountpoint / "filler").unlink()
    _fill(mountpoint, 6 * 1024)
    counter.messages.clear()
    journal = mountpoint / "journal" / "t.jsonl"
    buf = BufferedClient(down_uri, journal=journal, retry_interval=3600.0)
    buf.submit({"op": "ensure_run", "ref": "local:j", "experiment": "enospc", "match": ["trial_id", "j"]})
    for step in range(150):
        buf.submit({"op": "log_batch", "run": "local:j", "metrics": [["m", float(step), 1000 + step, step]]})
    lines = journal.read_text().splitlines() if journal.exists() else []
    valid = 0
    for line in lines:
        try:
            json.loads(line)
            valid += 1
        except ValueError:
            break
    pending_before, unsaved = buf.pending, buf.n_unsaved
    buf._client = mlflow.MlflowClient(sqlite_uri)  # the server answers again (same process)
    buf._retry_at = 0.0
    buf.flush()
    return {
        "steps": trainer.step, "run_id": logger.run_id, "pending": logger.pending,
        "n_dropped": len(logger._dropped), "dropped": logger._dropped, "staging_warnings": staging_warnings,
        "journal": {"unsaved": unsaved, "warnings": sum("cannot journal" in m for m in counter.messages),
                    "lines_on_disk": len(lines), "lines_valid": valid, "pending_before": pending_before,
                    "pending_after": buf.pending, "run_id": buf.resolve("local:j")},
    }


if __name__ == "__main__":
    mount = Path(sys.argv[1])
    with open("/proc/mounts") as fh:
        if not any(line.split()[1] == str(mount) and line.split()[2] == "tmpfs" for line in fh):
            print(f"{mount} is not a tmpfs")
            sys.exit(97)
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    print(json.dumps(main(mount, sys.argv[2], sys.argv[3])))
