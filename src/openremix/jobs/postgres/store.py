"""`PostgresJobStore`: the job store for many machines, on PostgreSQL (psycopg 3 + a pool).

Selected by `OPENREMIX_DATABASE_URL=postgresql://...`. Same semantics as `SQLiteJobStore`
(one test suite runs against both; what they share is `jobs.sql.store.SQLJobStore`); what
differs is how concurrency is made safe:

- claims take the best QUEUED row with `SELECT ... FOR UPDATE SKIP LOCKED` inside the claiming
  `UPDATE`, so workers on any number of machines never wait on, or get, the same job;
- enqueue locks the API key's row (`SELECT ... FOR UPDATE`) before it checks the idempotency
  key, debits credits and inserts the job, all in one transaction: two submits with one key are
  serialised, so an idempotency key is used once and a balance never goes negative (the unique
  index on (api_key_id, idempotency_key) backs this up). Those steps are the schema's function
  `openremix_enqueue` (`postgres.schema`; its debit is the credit rule of `jobs.accounts`, see
  `postgres.credit_rule`), so an enqueue costs one round trip;
- every transaction that makes a job claimable (an insert, a re-queue) sends `NOTIFY
  openremix_jobs` from a trigger; idle workers wait in `wait_for_work` on a dedicated LISTEN
  connection instead of polling;
- with `NewJob.max_queue_depth`, the function counts the QUEUED jobs under an advisory lock
  (`postgres.enqueue_function`), so concurrent submits never overshoot the limit;
- sweeps (re-queueing lost leases, deleting expired jobs) take an advisory lock so that one
  process at a time does them; others skip;
- the pool reconnects after a server restart (`postgres.connection.Database.run`).

Times are Unix-seconds floats from the injectable clock, as in SQLite. The schema is created or
upgraded on open unless `auto_migrate=False` (`openremix db upgrade` then does it).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TypeVar

import psycopg
from psycopg import errors

from openremix.jobs.model import Clock, Job, NewJob, system_clock
from openremix.jobs.postgres.connection import Database, Listener
from openremix.jobs.postgres.schema import prepare
from openremix.jobs.sql.base import Access
from openremix.jobs.sql.dialect import Dialect
from openremix.jobs.sql.rows import JOB_COLUMNS, row_to_job
from openremix.jobs.sql.store import PROCESSING, QUEUED, SQLJobStore
from openremix.jobs.store import (
    IdempotencyConflict,
    InsufficientCredits,
    QueueFull,
    UnknownApiKey,
)

T = TypeVar("T")

SWEEP_LOCK = 0x6F72737765657021  # advisory lock id: one sweeper at a time per database

_CLAIM = (
    f"UPDATE jobs SET state = '{PROCESSING}', lease_owner = %(worker)s,"
    f" lease_expires_at = %(lease)s, attempts = attempts + 1,"
    f" started_at = COALESCE(started_at, %(now)s), progress_step = 0, progress_total = 0"
    f" WHERE request_id = (SELECT request_id FROM jobs WHERE state = '{QUEUED}'"
    f"  AND expires_at > %(now)s ORDER BY priority DESC, created_at, seq LIMIT 1"
    f"  FOR UPDATE SKIP LOCKED)"
    f" RETURNING {JOB_COLUMNS}"
)
_ENQUEUE = (
    "SELECT outcome, balance, debit_free, debit_paid, prior_id, queued"
    " FROM openremix_enqueue(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
)


class PostgresJobStore(SQLJobStore):
    """A `JobStore` in a PostgreSQL database, shared by every API replica and worker.

    `clock` gives "now" for every timestamp and expiry check (tests pass a fake one). Jobs are
    kept `retention_seconds` after submission; a job is failed after being claimed
    `max_attempts` times by workers that lost their lease. `pool_size` bounds this process's
    connections (plus one for `wait_for_work`); calls retry for up to `reconnect_seconds` while
    the server is unreachable.
    """

    dialect = Dialect(
        name="postgres",
        placeholder="%s",
        insert_order="seq",
        lock_rows=" FOR UPDATE",
        skip_locked=" FOR UPDATE SKIP LOCKED",
        json_key_absent="{column}->'{key}' IS NULL",
    )

    def __init__(
        self,
        url: str,
        *,
        clock: Clock = system_clock,
        retention_seconds: float = 3600,
        max_attempts: int = 3,
        pool_size: int = 10,
        auto_migrate: bool = True,
        reconnect_seconds: float = 30.0,
    ) -> None:
        super().__init__(clock=clock, retention_seconds=retention_seconds,
                         max_attempts=max_attempts)
        self.url = url
        self._db = Database(url, pool_size=pool_size, reconnect_seconds=reconnect_seconds)
        try:
            self.schema_version = self._db.run(
                lambda conn: prepare(conn, auto_migrate=auto_migrate), transaction=False
            )
        except BaseException:
            self._db.close()
            raise
        self._listener = Listener(url)

    # --- connections and transactions ----------------------------------------------------------
    def _run(self, body: Callable[[psycopg.Connection], T], access: Access) -> T:
        """Single statements run in autocommit (one round trip each); a `TRANSACTION` body in
        a transaction. Either is retried while the server is away (`Database.run`)."""
        return self._db.run(body, transaction=access is Access.TRANSACTION)

    def _may_sweep(self, conn: psycopg.Connection) -> bool:
        """Whether this transaction may sweep (no other process is sweeping this database)."""
        row = conn.execute("SELECT pg_try_advisory_xact_lock(%s) AS ok", (SWEEP_LOCK,)).fetchone()
        return bool(row and row["ok"])

    # --- jobs ------------------------------------------------------------------------------------
    def enqueue(self, new: NewJob) -> tuple[Job, bool]:
        """Insert a QUEUED job and debit its cost (free credits first), in one transaction.

        See `JobStore.enqueue`. One statement: the schema's `openremix_enqueue` locks the key's
        row, checks the idempotency key, debits and inserts.
        """
        now = self._clock()
        args = (new.request_id, new.model, new.api_key_id, json.dumps(new.params), new.cost, now,
                now + self.retention_seconds, self.max_attempts, new.priority,
                new.idempotency_key, new.request_hash, new.max_queue_depth)
        try:
            row = self._db.run(lambda conn: conn.execute(_ENQUEUE, args).fetchone(),
                               transaction=False)
        except errors.UniqueViolation as exc:
            if exc.diag.constraint_name != "jobs_pkey":
                raise
            existing = self.get(new.request_id)
            if existing is not None and (existing.api_key_id, existing.request_hash) == (
                new.api_key_id, new.request_hash
            ):
                # A retry after a commit whose answer was lost (server restart): it is ours.
                return existing, True
            raise
        outcome = row["outcome"]
        if outcome == "unknown_key":
            raise UnknownApiKey(new.api_key_id)
        if outcome == "insufficient":
            raise InsufficientCredits(row["balance"], new.cost)
        if outcome == "queue_full":
            assert new.max_queue_depth is not None
            raise QueueFull(int(row["queued"]), new.max_queue_depth)
        if outcome == "conflict":
            raise IdempotencyConflict(
                f"Idempotency key {new.idempotency_key!r} was used with another body"
            )
        if outcome == "existing":
            existing = self.get(row["prior_id"])
            if existing is None:  # swept since: the key is free now
                return self.enqueue(new)
            return existing, False
        return self._queued_job(new, now, row["debit_free"], row["debit_paid"]), True

    def claim_next(self, worker_id: str, lease_seconds: float) -> Job | None:
        """Take the best QUEUED job (priority, then age) for `worker_id`; see the protocol.

        One statement: the inner `SELECT ... FOR UPDATE SKIP LOCKED` passes over rows that
        other claimers hold at this instant instead of waiting for them.
        """
        now = self._clock()
        rows = self._db.run(
            lambda conn: conn.execute(
                _CLAIM, {"worker": worker_id, "lease": now + lease_seconds, "now": now}
            ).fetchall(),
            transaction=False,
        )
        return row_to_job(rows[0]) if rows else None

    def wait_for_work(self, timeout: float) -> bool:
        """Block until a job may have become claimable (an enqueue or re-queue anywhere sent a
        notification) or `timeout` seconds pass; True when woken. See `JobStore`."""
        return self._listener.wait(timeout)

    def close(self) -> None:
        """Stop the listener and close every pooled connection."""
        self._listener.close()
        self._db.close()
