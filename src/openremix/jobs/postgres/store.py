"""`PostgresJobStore`: the job store for many machines, on PostgreSQL (psycopg 3 + a pool).

Selected by `OPENREMIX_DATABASE_URL=postgresql://...`. Same semantics as `SQLiteJobStore`
(one test suite runs against both; what they share is `jobs.sql.store.SQLJobStore`); what
differs is how concurrency is made safe:

- a claim takes a batch of QUEUED rows, fair across keys, with `SELECT ... FOR UPDATE SKIP
  LOCKED` inside the claiming `UPDATE` (`postgres.claim`), so workers on any number of
  machines never wait on, or get, the same job; `complete_many` finishes a batch in one
  statement;
- enqueue locks the API key's row (`SELECT ... FOR UPDATE`) before it checks the idempotency
  key, debits credits and inserts the job, all in one transaction: two submits with one key are
  serialised, so an idempotency key is used once and a balance never goes negative (the unique
  index on (api_key_id, idempotency_key) backs this up). Those steps are the schema's function
  `openremix_enqueue` (`postgres.schema`; its debit is the credit rule of `jobs.accounts`, see
  `postgres.credit_rule`), so an enqueue costs one round trip;
- idle workers register in `wait_for_work` and wait on their process's own LISTEN channel;
  every job made claimable (an insert, a re-queue) wakes one of them from a trigger, not all
  (`postgres.queue_schema`);
- rate limits live in the database (`take_rate_token`), so replicas share them;
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
import logging
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import psycopg
from psycopg import errors
from psycopg_pool import PoolTimeout

from openremix.jobs.model import Clock, Job, JobState, NewJob, system_clock
from openremix.jobs.params import WEBHOOK_KEY
from openremix.jobs.postgres.claim import CAPPED_CLAIM_LOCK, CLAIM_BATCH, claim_order
from openremix.jobs.postgres.connection import CONNECT_TIMEOUT, Database, Listener, Wake
from openremix.jobs.postgres.rate_limits import take_rate_token
from openremix.jobs.postgres.schema import prepare
from openremix.jobs.sql.base import Access
from openremix.jobs.sql.dialect import Dialect
from openremix.jobs.sql.rows import row_to_job
from openremix.jobs.sql.store import PROCESSING, SQLJobStore
from openremix.jobs.store import (
    IdempotencyConflict,
    InsufficientCredits,
    QueueFull,
    UnknownApiKey,
)

T = TypeVar("T")
log = logging.getLogger("openremix.jobs.postgres")

SWEEP_LOCK = 0x6F72737765657021  # advisory lock id: one sweeper at a time per database

_COMPLETE_MANY = (
    f"UPDATE jobs SET state = '{JobState.COMPLETED.value}', result = done.result::json,"
    f" error = NULL, finished_at = %s, lease_expires_at = NULL"
    f" FROM unnest(%s::text[], %s::text[]) AS done(request_id, result)"
    f" WHERE jobs.request_id = done.request_id AND jobs.state = '{PROCESSING}'"
    f" AND jobs.lease_owner = %s AND jobs.params->'{WEBHOOK_KEY}' IS NULL"
    f" RETURNING jobs.request_id"
)
_REGISTER_WAITER = "SELECT openremix_register_waiter(%s, %s, %s) AS ready"
_LEAVE_WAITERS = "DELETE FROM job_waiters WHERE waiter = %s"
_LEAVE_CHANNEL = "DELETE FROM job_waiters WHERE channel = %s"
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
        max_running_per_key: int = 0,
    ) -> None:
        super().__init__(clock=clock, retention_seconds=retention_seconds,
                         max_attempts=max_attempts, max_running_per_key=max_running_per_key)
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
        self._registered_any = False
        """Whether a thread of this process ever registered as an idle worker."""
        self._waiting = threading.local()
        """Per thread: `registered` (waiting as an idle worker), `row` (a registration of this
        thread may be in `job_waiters`)."""

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

    def claim_batch(self, worker_id: str, lease_seconds: float, limit: int) -> list[Job]:
        """Take up to `limit` jobs, fair across keys, in one statement (`postgres.claim`); see
        the protocol. Under a per-key cap, claims take `CAPPED_CLAIM_LOCK` first."""
        if limit < 1:
            return []
        self._leave_waiters()
        now = self._clock()
        args = {"worker": worker_id, "lease": now + lease_seconds, "now": now, "limit": limit,
                "cap": self.max_running_per_key}

        def body(conn: psycopg.Connection) -> list[dict]:
            if self.max_running_per_key:
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (CAPPED_CLAIM_LOCK,))
            return conn.execute(CLAIM_BATCH, args).fetchall()

        rows = self._db.run(body, transaction=bool(self.max_running_per_key))
        return [row_to_job(row) for row in sorted(rows, key=claim_order)]

    def _complete_without_webhook(
        self, worker_id: str, results: dict[str, dict[str, Any]], now: float
    ) -> set[str]:
        """One statement for the batch: the ids and results travel as two arrays."""
        ids = list(results)
        texts = [json.dumps(results[request_id]) for request_id in ids]
        rows = self._db.run(
            lambda conn: conn.execute(_COMPLETE_MANY, (now, ids, texts, worker_id)).fetchall(),
            transaction=False,
        )
        return {row["request_id"] for row in rows}

    # --- rate limits shared by the replicas ------------------------------------------------------
    def take_rate_token(self, key_id: str, per_minute: int) -> float:
        """Take one of the key's `per_minute` tokens from its bucket in the database; 0.0 when
        taken, else the seconds until one is there. See `SharesRateLimits`."""
        now = self._clock()
        return self._db.run(lambda conn: take_rate_token(conn, key_id, per_minute, now))

    # --- waking idle workers ---------------------------------------------------------------------
    def wait_for_work(self, timeout: float) -> bool:
        """Block until a job may have become claimable or `timeout` seconds pass; True when
        woken. See `WaitsForWork`.

        The calling thread registers as an idle worker (`openremix_register_waiter`, which
        answers True at once when a job is claimable already); an enqueue then wakes this
        thread and no other. Its next claim removes a registration nobody used.
        """
        listener, local = self._listener, self._waiting
        if not listener.ready(timeout):
            return False
        waiter = listener.waiter_id()
        wake = listener.take(waiter)
        if wake is None and not getattr(local, "registered", False):
            local.row = True
            try:
                ready = self._registered_or_ready(waiter)
            except (psycopg.OperationalError, PoolTimeout):
                # The server is away: wait as asked; the caller's next claim reports it.
                return listener.wait(waiter, timeout) is not None
            if ready:
                local.row = False
                return True
            local.registered = True
        if wake is None:
            wake = listener.wait(waiter, timeout)
        if wake is not None:
            local.registered = False
            if wake is Wake.ADDRESSED:  # the enqueue that woke us took the registration
                local.row = False
        return wake is not None

    def _registered_or_ready(self, waiter: str) -> bool:
        """Register this thread as idle; True (and not registered) when a job is claimable
        already. One attempt: an idle wait is no reason to sit out a reconnect."""
        channel, now = self._listener.channel, self._clock()
        self._registered_any = True
        with self._db.pool.connection(timeout=CONNECT_TIMEOUT) as conn:
            return bool(conn.execute(_REGISTER_WAITER, (waiter, channel, now)).fetchone()["ready"])

    def _leave_waiters(self) -> None:
        """Before claiming: remove this thread's registration, if an enqueue did not take it,
        so that a busy worker is never the one an enqueue wakes."""
        local = self._waiting
        if getattr(local, "row", False):
            waiter = self._listener.waiter_id()
            self._db.run(lambda conn: conn.execute(_LEAVE_WAITERS, (waiter,)),
                         transaction=False)
            local.row = local.registered = False

    def close(self) -> None:
        """Stop the listener, drop this process's waiter registrations, close the pool."""
        self._listener.close()
        if self._registered_any:
            try:  # one attempt: a process that stops must not sit out a reconnect
                with self._db.pool.connection(timeout=CONNECT_TIMEOUT) as conn:
                    conn.execute(_LEAVE_CHANNEL, (self._listener.channel,))
            except (psycopg.Error, PoolTimeout):  # each one left costs one wake-up, once
                log.warning("could not remove this process's idle-worker registrations")
        self._db.close()
