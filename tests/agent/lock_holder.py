"""A child process that holds a run directory's lock (agent/infra/run_lock.py) until it is
killed: the "other process" of the one-writer tests. It imports run_lock alone (no torch), so
it starts in a fraction of a second."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HOLDER = textwrap.dedent("""
    import sys, time
    from agent.infra.run_lock import acquire_run_lock
    acquire_run_lock(sys.argv[1])
    print("held", flush=True)
    time.sleep(300)
""")


def start_lock_holder(run_dir: Path) -> subprocess.Popen:
    """Start the holder and return once it holds run_dir's lock; the caller kills it."""
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(run_dir)], cwd=REPO, stdout=subprocess.PIPE,
                              text=True)
    assert holder.stdout.readline().strip() == "held"
    return holder
