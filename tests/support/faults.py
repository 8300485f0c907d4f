"""Real faults for tests: another process holding SQLite's write lock, a small filesystem that
fills up, a folder mounted read-only. (Mounting needs root and mount permission; the helpers
skip the test, saying so, where the machine does not allow it.)"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support import small_fs
from tests.support.small_fs import fill

__all__ = ["fill", "read_only_view", "small_filesystem", "sqlite_write_lock"]

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


@contextmanager
def small_filesystem(mount: Path, size_mb: int = 4) -> Iterator[Path]:
    """`small_fs.small_tmpfs` for a test: skipped, saying why, where mounting is refused."""
    try:
        with small_fs.small_tmpfs(mount, size_mb) as mounted:
            yield mounted
    except small_fs.MountRefused as exc:
        pytest.skip(str(exc))


@contextmanager
def read_only_view(folder: Path, mount: Path) -> Iterator[Path]:
    """`small_fs.read_only_view` for a test: skipped, saying why, where mounting is refused."""
    try:
        with small_fs.read_only_view(folder, mount) as mounted:
            yield mounted
    except small_fs.MountRefused as exc:
        pytest.skip(str(exc))
