"""Real faults for tests: another process holding SQLite's write lock."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_HOLD_WRITE_LOCK = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
conn.execute("COMMIT")
"""


@contextmanager
def sqlite_write_lock(path: Path, seconds: float) -> Iterator[None]:
    """A second process takes the database's write lock (`BEGIN IMMEDIATE`) and holds it for
    `seconds`; the block runs while it is held, and the exit waits for the process to end."""
    locker = subprocess.Popen([sys.executable, "-c", _HOLD_WRITE_LOCK, str(path), str(seconds)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert locker.stdout is not None and locker.stdout.readline().strip() == "locked"
        yield
    finally:
        assert locker.wait(seconds + 30) == 0
