"""Find and end the processes of a dead driver's private Ray session (Linux ``/proc``).

When ``htsweep run`` started its own local Ray and was killed hard, Ray's GCS, raylet and worker
processes can outlive it. They are told apart from everything else by their session directory
(``<ray temp dir>/session_<date>_<pid>``): the GCS and raylet name it on their command line, and
every worker writes its stdout/stderr to log files inside it. Only processes of this user match.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

__all__ = ["kill_session_processes", "session_processes"]


def session_processes(session_dir: str | os.PathLike) -> list[int]:
    """PIDs (this user's, not this process) whose command line or stdout/stderr is in ``session_dir``."""
    session = str(Path(session_dir))
    if not session or session == "/":
        return []
    uid, me = os.getuid(), os.getpid()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            if entry.stat().st_uid != uid:
                continue
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            outputs = [os.readlink(entry / "fd" / str(fd)) for fd in (1, 2) if (entry / "fd" / str(fd)).exists()]
        except OSError:  # gone meanwhile, or not ours to inspect
            continue
        if session in cmdline or any(out.startswith(session + os.sep) for out in outputs):
            found.append(int(entry.name))
    return sorted(found)


def kill_session_processes(session_dir: str | os.PathLike, *, timeout: float = 10.0) -> list[int]:
    """SIGKILL every process of ``session_dir`` (see :func:`session_processes`); returns their PIDs.

    Waits up to ``timeout`` seconds for them to disappear (zombies of a dead parent count as gone).
    """
    pids = session_processes(session_dir)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(_alive(pid) for pid in pids):
        time.sleep(0.1)
    return pids


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"
