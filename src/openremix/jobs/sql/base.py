"""`SQLBase`: how the shared store core reaches a database, whichever it is.

A backend supplies `_run(body, access)` (how `body(conn)` gets a connection and a transaction:
SQLite's connection per thread and `BEGIN IMMEDIATE` with lock retries, PostgreSQL's pool that
reconnects) and its `Dialect`; the helpers here run the shared statements through them.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

from openremix.jobs.model import Clock
from openremix.jobs.sql.dialect import Connection, Dialect, Row

T = TypeVar("T")


class Access(enum.Enum):
    """What a body passed to `SQLBase._run` does, so the backend picks how to run it."""

    READ = "read"
    """One statement that changes nothing."""
    WRITE = "write"
    """Statements each of which may commit on its own (PostgreSQL runs them in autocommit)."""
    TRANSACTION = "transaction"
    """Statements that commit together or not at all."""


class SQLBase:
    """The connection side of the shared core: settings, `_run`, and statement helpers."""

    dialect: ClassVar[Dialect]

    def __init__(
        self,
        *,
        clock: Clock,
        retention_seconds: float,
        max_attempts: int,
        max_running_per_key: int = 0,
    ) -> None:
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {max_attempts}")
        if max_running_per_key < 0:
            raise ValueError(f"max_running_per_key must be 0 or more, got {max_running_per_key}")
        self._clock = clock
        self.retention_seconds = float(retention_seconds)
        self.max_attempts = max_attempts
        self.max_running_per_key = max_running_per_key
        """The most PROCESSING jobs one API key may have (0: no cap); see `claim_batch`."""

    # --- what a backend supplies -----------------------------------------------------------------
    def _run(self, body: Callable[[Connection], T], access: Access) -> T:
        """`body(conn)` on a connection of this store, run as `access` says."""
        raise NotImplementedError

    def _may_sweep(self, conn: Connection) -> bool:
        """Whether this transaction may re-queue lost leases and delete expired jobs."""
        return True

    # --- helpers ---------------------------------------------------------------------------------
    def _sql(self, text: str) -> str:
        return self.dialect.sql(text)

    def _rows(self, access: Access, text: str, args: tuple[Any, ...] = ()) -> list[Row]:
        """The rows of one statement (a read, or a write with RETURNING)."""
        sql = self._sql(text)
        return self._run(lambda conn: conn.execute(sql, args).fetchall(), access)

    def _row(self, text: str, args: tuple[Any, ...] = ()) -> Row | None:
        rows = self._rows(Access.READ, text, args)
        return rows[0] if rows else None

    def _count(self, text: str, args: tuple[Any, ...]) -> int:
        """Run one writing statement; the number of rows it changed."""
        sql = self._sql(text)
        return self._run(lambda conn: conn.execute(sql, args).rowcount, Access.WRITE)
