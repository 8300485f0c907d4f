"""A real full disk for fault tests and `bench/bench_faults.py`: a small tmpfs, filled on
purpose and freed again.

Mounting needs root and mount permission (a plain container has neither); `small_tmpfs` then
raises `MountRefused` with the reason, for the caller to skip with.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class MountRefused(RuntimeError):
    """The small filesystem cannot be mounted here; `str(self)` says why."""


@contextmanager
def small_tmpfs(mount_point: Path, size_mb: int = 4) -> Iterator[Path]:
    """Mount a `size_mb` MiB tmpfs at `mount_point` (made if missing) for the block; it is
    unmounted after (lazily: a process that still holds a file there cannot keep it busy)."""
    mount_point.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs",
                           str(mount_point)], capture_output=True, text=True)
    if done.returncode != 0:
        raise MountRefused(f"cannot mount a small filesystem here ({done.stderr.strip()}): "
                           "needs root and mount permission")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def fill(folder: Path) -> Path:
    """Take every free byte of `folder`'s filesystem; returns the file to delete to free it."""
    filler = folder / "filler"
    with filler.open("wb", buffering=0) as out:  # unbuffered: nothing left to flush at close
        try:
            while True:
                out.write(b"\0" * 65536)
        except OSError:
            pass
    return filler
