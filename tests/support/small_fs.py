"""Real filesystem faults for tests and `bench/bench_faults.py`: a small tmpfs filled on
purpose and freed again, a folder mounted read-only.

Mounting needs root and mount permission (a plain container has neither); the helpers then
raise `MountRefused` with the reason (tests skip with it: `tests.support.faults`).
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class MountRefused(RuntimeError):
    """The filesystem cannot be mounted here; `str(self)` says why."""


def _mount(*args: str) -> None:
    done = subprocess.run(["mount", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise MountRefused(f"cannot mount here ({done.stderr.strip() or done.returncode}): "
                           "this fault needs root and mount permission")


@contextmanager
def small_tmpfs(mount_point: Path, size_mb: int = 4) -> Iterator[Path]:
    """Mount a `size_mb` MiB tmpfs at `mount_point` (made if missing) for the block; it is
    unmounted after (lazily: a process that still holds a file there cannot keep it busy)."""
    mount_point.mkdir(parents=True, exist_ok=True)
    _mount("-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(mount_point))
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


@contextmanager
def read_only_view(folder: Path, mount_point: Path) -> Iterator[Path]:
    """`folder` bind-mounted read-only at `mount_point` (as a container's read-only volume):
    writes fail with EROFS even for root, which chmod alone does not achieve."""
    mount_point.mkdir(parents=True, exist_ok=True)
    _mount("--bind", str(folder), str(mount_point))
    try:
        _mount("-o", "remount,bind,ro", str(mount_point))
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
