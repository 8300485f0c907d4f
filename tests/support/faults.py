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


def _mount(*args: str) -> None:
    done = subprocess.run(["mount", *args], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount here ({done.stderr.strip() or done.returncode}): this "
                    "fault needs root and mount permission")


@contextmanager
def small_filesystem(mount: Path, size: str = "4m") -> Iterator[Path]:
    """A tmpfs of `size` at `mount` (created), unmounted at the exit."""
    mount.mkdir(parents=True, exist_ok=True)
    _mount("-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount))
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(folder: Path) -> Path:
    """Take every free byte of `folder`'s filesystem; returns the file to delete to free it."""
    filler = folder / "filler"
    with filler.open("wb") as out:
        try:
            while True:
                out.write(b"\0" * 65536)
                out.flush()
        except OSError:
            pass
    return filler


@contextmanager
def read_only_view(folder: Path, mount: Path) -> Iterator[Path]:
    """`folder` bind-mounted read-only at `mount` (as a container's read-only volume): writes
    fail with EROFS even for root, which chmod alone does not achieve."""
    mount.mkdir(parents=True, exist_ok=True)
    _mount("--bind", str(folder), str(mount))
    try:
        _mount("-o", "remount,bind,ro", str(mount))
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)
