"""Keeping the SQLite file whole: the WAL checkpoint at shutdown and `openremix db backup`.

In WAL mode recent commits live in `openremix.db-wal` until a checkpoint copies them into the
database file. SQLite checkpoints when the last connection of the last process closes; while
another process (a worker, a second API) still has the file open, nothing does. `checkpoint`
asks for it explicitly, so a store that closes leaves its commits in `openremix.db` itself.
A copy of the one file taken while a server runs can still miss the newest commits; `backup`
(SQLite's online backup API) takes a consistent copy at any time.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import tempfile
from pathlib import Path

log = logging.getLogger("openremix.jobs")

CHECKPOINT_WAIT_SECONDS = 2.0
"""How long a shutdown checkpoint waits for another process's write to end (then gives up:
the commits stay safe in the WAL, and the next checkpoint copies them)."""


def checkpoint(path: Path, wait_seconds: float = CHECKPOINT_WAIT_SECONDS) -> bool:
    """Copy every commit of the WAL into the database file and empty the WAL (`TRUNCATE`).

    True when done; False (logged, never raised: it runs at shutdown) when another process
    kept it from finishing or the file cannot be written now.
    """
    try:
        conn = sqlite3.connect(path, timeout=wait_seconds, isolation_level=None)
        try:
            busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        finally:
            conn.close()
    except sqlite3.Error as exc:
        log.warning("WAL checkpoint of %s failed: %s", path, exc)
        return False
    if busy:
        log.info("WAL checkpoint of %s incomplete: the file is busy in another process", path)
    return not busy


def backup(source: Path, target: Path, *, overwrite: bool = False) -> int:
    """A consistent copy of the database `source` at `target`, taken while others may write to
    it (SQLite's online backup); returns the copy's size in bytes.

    The copy is written beside `target` and renamed over it when complete, so `target` is never
    half a database. Raises `FileNotFoundError` without `source`, `FileExistsError` when
    `target` exists and not `overwrite`, `sqlite3.Error` when `source` is not a database.
    """
    if not source.is_file():
        raise FileNotFoundError(f"no database at {source}")
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} exists (pass --force to replace it)")
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, partial = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    os.close(handle)
    try:
        src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
        dst = sqlite3.connect(partial)
        try:
            src.backup(dst)
            dst.execute("PRAGMA journal_mode = DELETE")  # one self-contained file
        finally:
            dst.close()
            src.close()
        os.replace(partial, target)
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise
    return target.stat().st_size
