"""`SQLiteJobStore`: the embedded job store, one SQLite file shared by threads and processes.

Concurrency model: WAL journal (readers never block the writer), one connection per thread,
and every write in a `BEGIN IMMEDIATE` transaction, which takes the database's single write
lock up front. Claiming is therefore a plain select-then-update: no two transactions, in any
thread or process of the machine, can interleave inside it.

What SQLite and PostgreSQL share (finishing jobs, sweeps, the webhook outbox, API keys) is
`jobs.sql.store.SQLJobStore`; this module holds the connections and transactions, `enqueue`
(the credit rule of `jobs.accounts`, in Python) and `claim_batch`.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from openremix.jobs.accounts import split_debit
from openremix.jobs.model import Clock, Job, NewJob, system_clock
from openremix.jobs.outbox import WebhookDelivery
from openremix.jobs.params import WEBHOOK_KEY
from openremix.jobs.sql import outbox
from openremix.jobs.sql.base import Access
from openremix.jobs.sql.dialect import Dialect
from openremix.jobs.sql.rows import INSERT_JOB, JOB_COLUMNS, job_values, row_to_job
from openremix.jobs.sql.store import COMPLETE_OWNED, PROCESSING, QUEUED, SQLJobStore
from openremix.jobs.sqlite import schema
from openremix.jobs.sqlite.backup import checkpoint
from openremix.jobs.sqlite.schema import connect, migrate, retry_locked, set_busy_timeout
from openremix.jobs.store import IdempotencyConflict, InsufficientCredits, UnknownApiKey
from openremix.jobs.store_wait import wait_limit

T = TypeVar("T")

# The fair batch claim (the rule: `JobStore.claim_batch`; PostgreSQL's statement:
# `postgres.claim`). Keys with QUEUED jobs by a loose index scan; per key its PROCESSING count
# and its first `limit` QUEUED jobs; each job's slot = running + rank within its key.
# (SQLite's LIMIT cannot depend on the key, so the cap filters slots instead.)
_CLAIM_CANDIDATES = f"""
WITH RECURSIVE keys(api_key_id) AS (
    SELECT (SELECT api_key_id FROM jobs WHERE state = '{QUEUED}' ORDER BY api_key_id LIMIT 1)
    UNION ALL
    SELECT (SELECT j.api_key_id FROM jobs AS j WHERE j.state = '{QUEUED}'
            AND j.api_key_id > keys.api_key_id ORDER BY j.api_key_id LIMIT 1)
    FROM keys WHERE keys.api_key_id IS NOT NULL
), load AS (
    SELECT k.api_key_id,
           (SELECT COUNT(*) FROM jobs AS r
             WHERE r.state = '{PROCESSING}' AND r.api_key_id = k.api_key_id) AS running
    FROM keys AS k WHERE k.api_key_id IS NOT NULL
), candidates AS (
    SELECT q.rowid AS rid, q.priority, q.created_at,
           l.running + ROW_NUMBER() OVER (PARTITION BY q.api_key_id
                                          ORDER BY q.priority DESC, q.created_at, q.rowid) AS slot
    FROM load AS l JOIN jobs AS q ON q.rowid IN (
        SELECT x.rowid FROM jobs AS x
        WHERE x.state = '{QUEUED}' AND x.api_key_id = l.api_key_id AND x.expires_at > :now
        ORDER BY x.priority DESC, x.created_at, x.rowid LIMIT :limit)
)
SELECT rid FROM candidates WHERE :cap = 0 OR slot <= :cap
ORDER BY priority DESC, slot, created_at, rid LIMIT :limit
"""
_CLAIM = (
    f"UPDATE jobs SET state = '{PROCESSING}', lease_owner = ?, lease_expires_at = ?,"
    f" attempts = attempts + 1, started_at = COALESCE(started_at, ?),"
    f" progress_step = 0, progress_total = 0"
    f" WHERE rowid = ? AND state = '{QUEUED}' RETURNING {JOB_COLUMNS}"
)


class SQLiteJobStore(SQLJobStore):
    """A `JobStore` in one SQLite file; safe across the threads and processes of one machine.

    `clock` gives "now" for every timestamp and expiry check (tests pass a fake one).
    Jobs are kept `retention_seconds` after submission; a job is failed after being claimed
    `max_attempts` times by workers that lost their lease.
    """

    dialect = Dialect(
        name="sqlite",
        placeholder="?",
        insert_order="rowid",
        lock_rows="",  # BEGIN IMMEDIATE already holds the database
        skip_locked="",
        # Python's json writes NaN, which SQLite's JSON reader refuses: such a text is not
        # "certainly without the key", and the caller then reads it in Python.
        json_key_absent=(
            "CASE WHEN json_valid({column}) THEN json_extract({column}, '$.{key}') IS NULL"
            " ELSE 0 END"
        ),
    )

    def __init__(
        self,
        path: str | Path,
        *,
        clock: Clock = system_clock,
        retention_seconds: float = 3600,
        max_attempts: int = 3,
        max_running_per_key: int = 0,
    ) -> None:
        if str(path) == ":memory:" or str(path).startswith("file::memory:"):
            raise ValueError("SQLiteJobStore needs a file path; ':memory:' is per connection")
        super().__init__(clock=clock, retention_seconds=retention_seconds,
                         max_attempts=max_attempts, max_running_per_key=max_running_per_key)
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()
        self._closed = False
        # journal_mode is persistent in the file; switching needs a moment alone with it.
        retry_locked(lambda: self._conn().execute("PRAGMA journal_mode = WAL").fetchone())
        self._write(migrate)

    # --- connections and transactions ----------------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        if self._closed:
            raise RuntimeError("SQLiteJobStore is closed")
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        # A forked child must not share its parent's connection.
        if conn is None or self._local.pid != os.getpid():
            conn = connect(self.path)
            self._local.conn, self._local.pid = conn, os.getpid()
            self._local.busy_timeout = schema.BUSY_TIMEOUT_SECONDS  # as `connect` set it
            with self._connections_lock:
                self._connections.append(conn)
        busy_timeout = wait_limit(schema.BUSY_TIMEOUT_SECONDS)  # shorter for the API's calls
        if busy_timeout != self._local.busy_timeout:
            set_busy_timeout(conn, busy_timeout)
            self._local.busy_timeout = busy_timeout
        return conn

    def _write(self, body: Callable[[sqlite3.Connection], T]) -> T:
        """Run `body` in a `BEGIN IMMEDIATE` transaction; commit, or roll back on error."""
        conn = self._conn()

        def attempt() -> T:
            conn.execute("BEGIN IMMEDIATE")
            try:
                out = body(conn)
                conn.execute("COMMIT")
                return out
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

        return retry_locked(attempt)

    def _run(self, body: Callable[[sqlite3.Connection], T], access: Access) -> T:
        """Reads run on their own (autocommit: a consistent snapshot of that statement);
        anything that writes runs in a `BEGIN IMMEDIATE` transaction."""
        if access is Access.READ:
            return body(self._conn())
        return self._write(body)

    # --- jobs ------------------------------------------------------------------------------------
    def enqueue(self, new: NewJob) -> tuple[Job, bool]:
        """Insert a QUEUED job and debit its cost (free credits first), in one transaction.

        See `JobStore.enqueue`; the debit is `accounts.split_debit`.
        """

        def body(conn: sqlite3.Connection) -> tuple[Job, bool]:
            now = self._clock()
            if new.idempotency_key is not None:
                row = conn.execute(
                    f"SELECT {JOB_COLUMNS} FROM jobs WHERE api_key_id = ? AND idempotency_key = ?",
                    (new.api_key_id, new.idempotency_key),
                ).fetchone()
                if row is not None and row["expires_at"] > now:
                    if row["request_hash"] != new.request_hash:
                        raise IdempotencyConflict(
                            f"Idempotency key {new.idempotency_key!r} was used with another body"
                        )
                    return row_to_job(row), False
                if row is not None:  # expired, not yet swept: the key is free again
                    conn.execute(
                        "UPDATE jobs SET idempotency_key = NULL WHERE request_id = ?",
                        (row["request_id"],),
                    )
            key = conn.execute(
                "SELECT credits, free_credits FROM api_keys WHERE key_id = ?", (new.api_key_id,)
            ).fetchone()
            if key is None:
                raise UnknownApiKey(new.api_key_id)
            self._refuse_when_full(conn, new, now)  # BEGIN IMMEDIATE excludes other enqueues
            debit = split_debit(key["free_credits"], key["credits"], new.cost)
            if not debit.sufficient:
                raise InsufficientCredits(debit.balance, new.cost)
            conn.execute(
                "UPDATE api_keys SET free_credits = ?, credits = ? WHERE key_id = ?",
                (debit.free_left, debit.paid_left, new.api_key_id),
            )
            job = self._queued_job(new, now, debit.from_free, debit.from_paid)
            conn.execute(INSERT_JOB, job_values(job))
            return job, True

        return self._write(body)

    def claim_batch(self, worker_id: str, lease_seconds: float, limit: int) -> list[Job]:
        """Take up to `limit` jobs, fair across keys; see the protocol. `BEGIN IMMEDIATE`
        makes the pick and the updates one step that no other claimer interleaves with."""
        if limit < 1:
            return []

        def body(conn: sqlite3.Connection) -> list[Job]:
            now = self._clock()
            picked = conn.execute(
                _CLAIM_CANDIDATES, {"now": now, "limit": limit, "cap": self.max_running_per_key}
            ).fetchall()
            lease = (worker_id, now + lease_seconds, now)
            rows = [conn.execute(_CLAIM, (*lease, rid)).fetchone() for (rid,) in picked]
            return [row_to_job(row) for row in rows if row is not None]

        return self._write(body)

    def _complete_without_webhook(
        self, worker_id: str, results: dict[str, dict[str, Any]], now: float
    ) -> set[str]:
        """All in one transaction: one commit for the batch."""
        sql = f"{COMPLETE_OWNED} AND {self.dialect.key_absent('params', WEBHOOK_KEY)}"

        def body(conn: sqlite3.Connection) -> set[str]:
            return {
                request_id for request_id, result in results.items()
                if conn.execute(sql, (json.dumps(result), now, request_id, worker_id)).rowcount
            }

        return self._write(body)

    # --- webhook outbox --------------------------------------------------------------------------
    def claim_due_webhooks(self, lease_seconds: float, limit: int) -> list[WebhookDelivery]:
        """Lease up to `limit` due webhook messages; an idle outbox costs a read, not the
        database's write lock (which every other writer would wait for)."""
        if not outbox.any_due(self._conn(), self.dialect, self._clock()):
            return []
        return super().claim_due_webhooks(lease_seconds, limit)

    def close(self) -> None:
        """Close every connection this store opened, in all threads, then checkpoint the WAL
        so that the database file alone holds every commit (see `sqlite.backup`)."""
        was_open, self._closed = not self._closed, True
        with self._connections_lock:
            connections, self._connections = self._connections, []
        for conn in connections:
            conn.close()
        if was_open:
            checkpoint(self.path)
