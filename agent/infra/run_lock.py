"""One writer per run directory: a process that trains or resumes a run holds an exclusive
fcntl.flock on RUN_DIR/.lock for the whole training, and a second process on the same run
(a resubmitted cluster job, a second terminal) is refused at once with the holder's pid, host
and command instead of interleaving its metrics rows and checkpoints with the first one's.

flock belongs to the open file, so the kernel releases it when the holder exits in any way,
kill -9 included: there is never a stale lock to clean up. The file itself is never deleted:
a process that opened it just before the unlink would lock the old file while the next one
creates and locks a new one, and both would train. Its contents (one JSON line: pid, host,
command, start time) only describe the holder for the refusal message; the lock is the flock.

On NFS, Linux (since 2.6.12) emulates flock with a POSIX lock on the whole file, so the lock
also holds between nodes that share the run directory.
"""

from __future__ import annotations

import fcntl
import json
import os
import shlex
import socket
import sys
import time
from pathlib import Path

LOCK_NAME = ".lock"


class RunLockedError(ValueError):
    """The run directory is held by another process; the message is one line naming it."""


def lock_path(run_dir) -> Path:
    return Path(run_dir) / LOCK_NAME


class RunLock:
    """A held lock on one run directory; release() (or the process's exit) frees it."""

    def __init__(self, fd: int, path: Path):
        self.fd = fd
        self.path = path

    def release(self) -> None:
        if self.fd < 0:
            return
        os.ftruncate(self.fd, 0)  # a free lock describes no holder
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)
        self.fd = -1


def acquire_run_lock(run_dir) -> RunLock:
    """Create run_dir if needed and lock it for this process, or raise RunLockedError naming the
    process that holds it. Never waits."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = lock_path(run_dir)
    # os.open's descriptors are not inherited by child processes (PEP 446), so a subprocess
    # cannot keep the lock alive after its parent dies.
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise RunLockedError(f"--out {run_dir}: the run is being trained by {describe_holder(path)}; "
                             "wait for it to finish (or stop it), or use another --out") from None
    _write_holder(fd)
    return RunLock(fd, path)


def _write_holder(fd: int) -> None:
    holder = {"pid": os.getpid(), "host": socket.gethostname(), "command": shlex.join(sys.orig_argv),
              "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(holder) + "\n").encode(), 0)


def read_holder(path: Path) -> dict | None:
    """The holder a lock file describes, or None when it describes none (the holder has not
    written it yet, or has just released it)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


COMMAND_SHOWN = 300  # characters of the holder's command in the refusal (a python -c script can be long)


def describe_holder(path: Path) -> str:
    """'process PID on HOST (since TIME: COMMAND)', on one line."""
    holder = read_holder(path)
    if not holder:
        return f"another process (it holds {path} but has not written its pid there yet)"
    command = " ".join(str(holder.get("command", "?")).split())  # newlines of a -c script would break the line
    if len(command) > COMMAND_SHOWN:
        command = command[:COMMAND_SHOWN] + "..."
    return f"process {holder.get('pid')} on {holder.get('host')} (since {holder.get('started')}: {command})"
