"""`PostgresJobStore`: the job store for many machines, on PostgreSQL (psycopg 3 + a pool).

Selected by `OPENREMIX_DATABASE_URL=postgresql://...`. Same semantics as `SQLiteJobStore`
(one test suite runs against both); what differs is how concurrency is made safe:

- claims take the best QUEUED row with `SELECT ... FOR UPDATE SKIP LOCKED` inside the claiming
  `UPDATE`, so workers on any number of machines never wait on, or get, the same job;
- enqueue locks the API key's row (`SELECT ... FOR UPDATE`) before it checks the idempotency
  key, debits credits and inserts the job, all in one transaction: two submits with one key are
  serialised, so an idempotency key is used once and a balance never goes negative (the unique
  index on (api_key_id, idempotency_key) backs this up). Those steps are the schema's function
  `openremix_enqueue` (postgres_schema), so an enqueue costs one round trip;
- every transaction that makes a job claimable (an insert, a re-queue) sends `NOTIFY
  openremix_jobs` from a trigger; idle workers wait in `wait_for_work` on a dedicated LISTEN
  connection instead of polling;
- sweeps (re-queueing lost leases, deleting expired jobs) take an advisory lock so that one
  process at a time does them; others skip;
- the pool reconnects after a server restart (`postgres_conn.Database.run`).

Times are Unix-seconds floats from the injectable clock, as in SQLite. The schema is created or
upgraded on open unless `auto_migrate=False` (`openremix db upgrade` then does it).
"""

from __future__ import annotations

import json
from typing import Any

import psycopg
from psycopg import errors

from openremix.jobs.accounts import hash_secret, new_key_id, new_secret
from openremix.jobs.accounts import money as _money
from openremix.jobs.model import (
    ApiKey,
    Clock,
    Job,
    JobState,
    NewJob,
    allowed_transition,
    system_clock,
)
from openremix.jobs.outbox import WebhookDelivery
from openremix.jobs.params import WEBHOOK_KEY
from openremix.jobs.postgres import outbox
from openremix.jobs.postgres.connection import Database, Listener
from openremix.jobs.postgres.schema import INSERT_API_KEY, prepare
from openremix.jobs.sqlite.schema import (
    API_KEY_COLUMNS,
    JOB_COLUMNS,
    api_key_values,
    row_to_api_key,
    row_to_job,
)
from openremix.jobs.store import IdempotencyConflict, InsufficientCredits, UnknownApiKey

SWEEP_LOCK = 0x6F72737765657021  # advisory lock id: one sweeper at a time per database

_QUEUED = JobState.QUEUED.value
_PROCESSING = JobState.PROCESSING.value

_CLAIM = (
    f"UPDATE jobs SET state = '{_PROCESSING}', lease_owner = %(worker)s,"
    f" lease_expires_at = %(lease)s, attempts = attempts + 1,"
    f" started_at = COALESCE(started_at, %(now)s), progress_step = 0, progress_total = 0"
    f" WHERE request_id = (SELECT request_id FROM jobs WHERE state = '{_QUEUED}'"
    f"  AND expires_at > %(now)s ORDER BY priority DESC, created_at, seq LIMIT 1"
    f"  FOR UPDATE SKIP LOCKED)"
    f" RETURNING {JOB_COLUMNS}"
)
_ENQUEUE = (
    "SELECT outcome, balance, debit_free, debit_paid, prior_id"
    " FROM openremix_enqueue(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
)
_COMPLETE = (
    "UPDATE jobs SET state = %s, result = %s, error = NULL, finished_at = %s,"
    " lease_expires_at = NULL WHERE request_id = %s AND state = %s AND lease_owner = %s"
)
_QUEUE_POSITION = (
    "SELECT (SELECT COUNT(*) FROM jobs AS o WHERE o.state = %(q)s AND o.expires_at > %(now)s"
    "   AND (o.priority > t.priority OR (o.priority = t.priority"
    "   AND (o.created_at < t.created_at"
    "   OR (o.created_at = t.created_at AND o.seq < t.seq))))) AS position"
    " FROM jobs AS t WHERE t.request_id = %(id)s AND t.state = %(q)s AND t.expires_at > %(now)s"
)



class PostgresJobStore:
    """A `JobStore` in a PostgreSQL database, shared by every API replica and worker.

    `clock` gives "now" for every timestamp and expiry check (tests pass a fake one). Jobs are
    kept `retention_seconds` after submission; a job is failed after being claimed
    `max_attempts` times by workers that lost their lease. `pool_size` bounds this process's
    connections (plus one for `wait_for_work`); calls retry for up to `reconnect_seconds` while
    the server is unreachable.
    """

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
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {max_attempts}")
        self.url = url
        self._clock = clock
        self.retention_seconds = float(retention_seconds)
        self.max_attempts = max_attempts
        self._db = Database(url, pool_size=pool_size, reconnect_seconds=reconnect_seconds)
        try:
            self.schema_version = self._db.run(
                lambda conn: prepare(conn, auto_migrate=auto_migrate), transaction=False
            )
        except BaseException:
            self._db.close()
            raise
        self._listener = Listener(url)

    # --- helpers ---------------------------------------------------------------------------------
    def _read(self, sql: str, args: Any = ()) -> list[dict[str, Any]]:
        """Rows of one statement run on its own (autocommit: one snapshot, one transaction)."""
        return self._db.run(lambda conn: conn.execute(sql, args).fetchall(), transaction=False)

    def _read_one(self, sql: str, args: Any = ()) -> dict[str, Any] | None:
        rows = self._read(sql, args)
        return rows[0] if rows else None

    def _change(self, sql: str, args: Any) -> int:
        """Run one writing statement on its own (autocommit); the number of rows it changed."""
        return self._db.run(lambda conn: conn.execute(sql, args).rowcount, transaction=False)

    @staticmethod
    def _refund(conn: psycopg.Connection, api_key_id: str, extra: dict[str, Any]) -> None:
        """Put a job's debit back into the buckets it came from, once; marks `extra`."""
        if extra.get("refunded"):
            return
        conn.execute(
            "UPDATE api_keys SET free_credits = openremix_money(free_credits + %s),"
            " credits = openremix_money(credits + %s) WHERE key_id = %s",
            (extra.get("debit_free", 0.0), extra.get("debit_paid", 0.0), api_key_id),
        )
        extra["refunded"] = True

    # --- jobs ------------------------------------------------------------------------------------
    def enqueue(self, new: NewJob) -> tuple[Job, bool]:
        """Insert a QUEUED job and debit its cost (free credits first), in one transaction.

        See `JobStore.enqueue`. One statement: the schema's `openremix_enqueue` locks the key's
        row, checks the idempotency key, debits and inserts. The debit per bucket is kept in
        `job.extra` ("debit_free", "debit_paid") so that a refund returns credits where they
        came from.
        """
        now = self._clock()
        expires_at = now + self.retention_seconds
        args = (new.request_id, new.model, new.api_key_id, json.dumps(new.params), new.cost, now,
                expires_at, self.max_attempts, new.priority, new.idempotency_key,
                new.request_hash)
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
        if outcome == "conflict":
            raise IdempotencyConflict(
                f"Idempotency key {new.idempotency_key!r} was used with another body"
            )
        if outcome == "existing":
            existing = self.get(row["prior_id"])
            if existing is None:  # swept since: the key is free now
                return self.enqueue(new)
            return existing, False
        job = Job(
            request_id=new.request_id,
            model=new.model,
            api_key_id=new.api_key_id,
            params=new.params,
            state=JobState.QUEUED,
            cost=new.cost,
            created_at=now,
            expires_at=expires_at,
            max_attempts=self.max_attempts,
            priority=new.priority,
            idempotency_key=new.idempotency_key,
            request_hash=new.request_hash,
            extra={"debit_free": row["debit_free"], "debit_paid": row["debit_paid"]},
        )
        return job, True

    def get(self, request_id: str) -> Job | None:
        """The job, or None when unknown or past its `expires_at` (swept or not)."""
        row = self._read_one(
            f"SELECT {JOB_COLUMNS} FROM jobs WHERE request_id = %s AND expires_at > %s",
            (request_id, self._clock()),
        )
        return None if row is None else row_to_job(row)

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

    def _update_owned(
        self, sql_set: str, args: tuple[Any, ...], request_id: str, worker: str
    ) -> bool:
        """Apply `SET sql_set` to a PROCESSING job only while `worker` holds its lease."""
        return self._change(
            f"UPDATE jobs SET {sql_set} WHERE request_id = %s AND state = %s AND lease_owner = %s",
            (*args, request_id, _PROCESSING, worker),
        ) == 1

    def heartbeat(self, request_id: str, worker_id: str, lease_seconds: float) -> bool:
        """Renew the lease to now + `lease_seconds`; False when the job is not this worker's."""
        expires = self._clock() + lease_seconds
        return self._update_owned("lease_expires_at = %s", (expires,), request_id, worker_id)

    def set_progress(self, request_id: str, worker_id: str, step: int, total: int) -> bool:
        """Record step progress; False when the job is not this worker's."""
        return self._update_owned(
            "progress_step = %s, progress_total = %s", (step, total), request_id, worker_id
        )

    def complete(self, request_id: str, worker_id: str, result: dict[str, Any]) -> bool:
        """PROCESSING -> COMPLETED with `result`, only while `worker_id` holds the lease.

        A job without a webhook is finished by one statement; one with a webhook (or one this
        worker does not hold) goes through a transaction that also writes the outbox message.
        """
        now = self._clock()
        args = (JobState.COMPLETED.value, json.dumps(result), now, request_id, _PROCESSING,
                worker_id)
        if self._change(_COMPLETE + f" AND params->'{WEBHOOK_KEY}' IS NULL", args):
            return True

        def body(conn: psycopg.Connection) -> bool:
            row = conn.execute(_COMPLETE + f" RETURNING {JOB_COLUMNS}", args).fetchone()
            if row is None:
                return False
            outbox.record_webhook(conn, row_to_job(row), now)
            return True

        return self._db.run(body)

    def fail(
        self,
        request_id: str,
        worker_id: str | None,
        error: str,
        result: dict[str, Any] | None = None,
    ) -> bool:
        """-> FAILED with `error`, refunding the cost exactly once; see `JobStore.fail`."""

        def body(conn: psycopg.Connection) -> bool:
            row = conn.execute(
                "SELECT state, lease_owner, api_key_id, extra FROM jobs"
                " WHERE request_id = %s FOR UPDATE",
                (request_id,),
            ).fetchone()
            if row is None or not allowed_transition(JobState(row["state"]), JobState.FAILED):
                return False
            if worker_id is not None and (
                row["state"] != _PROCESSING or row["lease_owner"] != worker_id
            ):
                return False
            extra = json.loads(row["extra"])
            self._refund(conn, row["api_key_id"], extra)
            now = self._clock()
            failed = conn.execute(
                f"UPDATE jobs SET state = %s, result = COALESCE(%s, result), error = %s,"
                f" finished_at = %s, lease_expires_at = NULL, extra = %s WHERE request_id = %s"
                f" RETURNING {JOB_COLUMNS}",
                (JobState.FAILED.value, None if result is None else json.dumps(result), error,
                 now, json.dumps(extra), request_id),
            ).fetchone()
            outbox.record_webhook(conn, row_to_job(failed), now)
            return True

        return self._db.run(body)

    def _try_sweep_lock(self, conn: psycopg.Connection) -> bool:
        """Whether this transaction may sweep (no other process is sweeping this database)."""
        row = conn.execute("SELECT pg_try_advisory_xact_lock(%s) AS ok", (SWEEP_LOCK,)).fetchone()
        return bool(row and row["ok"])

    def requeue_expired_leases(self) -> int:
        """Re-queue PROCESSING jobs whose lease ended, or fail (and refund) those out of
        attempts. Returns how many jobs changed (0 while another process is sweeping)."""

        def body(conn: psycopg.Connection) -> int:
            if not self._try_sweep_lock(conn):
                return 0
            now = self._clock()
            rows = conn.execute(
                "SELECT request_id, attempts, max_attempts, api_key_id, extra FROM jobs"
                " WHERE state = %s AND lease_expires_at < %s ORDER BY request_id FOR UPDATE",
                (_PROCESSING, now),
            ).fetchall()
            again = [row["request_id"] for row in rows if row["attempts"] < row["max_attempts"]]
            if again:
                conn.execute(  # the update's trigger sends the NOTIFY
                    "UPDATE jobs SET state = %s, lease_owner = NULL, lease_expires_at = NULL,"
                    " progress_step = 0, progress_total = 0 WHERE request_id = ANY(%s)",
                    (_QUEUED, again),
                )
            for row in rows:
                if row["attempts"] < row["max_attempts"]:
                    continue
                extra = json.loads(row["extra"])
                self._refund(conn, row["api_key_id"], extra)
                error = f"worker lost while processing ({row['attempts']} attempts); giving up"
                failed = conn.execute(
                    f"UPDATE jobs SET state = %s, error = %s, finished_at = %s,"
                    f" lease_expires_at = NULL, extra = %s WHERE request_id = %s"
                    f" RETURNING {JOB_COLUMNS}",
                    (JobState.FAILED.value, error, now, json.dumps(extra), row["request_id"]),
                ).fetchone()
                outbox.record_webhook(conn, row_to_job(failed), now)
            return len(rows)

        return self._db.run(body)

    def expire(self) -> list[dict[str, Any]]:
        """Delete jobs past `expires_at`; return their non-None results (to delete blobs).

        Also deletes webhook messages finished more than the retention ago (and any a day old).
        Returns [] while another process is sweeping (it deletes those blobs).
        """

        def body(conn: psycopg.Connection) -> list[dict[str, Any]]:
            if not self._try_sweep_lock(conn):
                return []
            now = self._clock()
            outbox.delete_old(conn, now, self.retention_seconds)
            rows = conn.execute(
                "DELETE FROM jobs WHERE expires_at <= %s RETURNING result, state, api_key_id,"
                " extra",
                (now,),
            ).fetchall()
            for row in rows:
                # A job that never finished within the retention never ran: give its cost back.
                if row["state"] in (_QUEUED, _PROCESSING):
                    self._refund(conn, row["api_key_id"], json.loads(row["extra"]))
            return [json.loads(row["result"]) for row in rows if row["result"] is not None]

        return self._db.run(body)

    def queue_depth(self) -> int:
        """QUEUED (and unexpired) jobs now."""
        row = self._read_one(
            "SELECT COUNT(*) AS n FROM jobs WHERE state = %s AND expires_at > %s",
            (_QUEUED, self._clock()),
        )
        return int(row["n"]) if row else 0

    def oldest_queued_age(self) -> float:
        """Seconds the oldest QUEUED job has waited (0 when none waits)."""
        now = self._clock()
        row = self._read_one(
            "SELECT MIN(created_at) AS oldest FROM jobs WHERE state = %s AND expires_at > %s",
            (_QUEUED, now),
        )
        oldest = None if row is None else row["oldest"]
        return 0.0 if oldest is None else max(0.0, now - float(oldest))

    def queue_position(self, request_id: str) -> int | None:
        """0-based count of QUEUED jobs claimed before this one; None when it is not QUEUED."""
        row = self._read_one(
            _QUEUE_POSITION, {"q": _QUEUED, "now": self._clock(), "id": request_id}
        )
        return None if row is None else int(row["position"])

    def wait_for_work(self, timeout: float) -> bool:
        """Block until a job may have become claimable (an enqueue or re-queue anywhere sent a
        notification) or `timeout` seconds pass; True when woken. See `JobStore`."""
        return self._listener.wait(timeout)

    # --- webhook outbox (see `postgres_outbox`) --------------------------------------------------
    def claim_due_webhooks(self, lease_seconds: float, limit: int) -> list[WebhookDelivery]:
        """Lease up to `limit` due webhook messages for `lease_seconds`; see the protocol."""
        return self._db.run(
            lambda conn: outbox.claim_due(conn, self._clock(), lease_seconds, limit),
            transaction=False,
        )

    def webhook_delivered(self, delivery_id: str) -> bool:
        """The receiver answered 2xx: the message is done."""
        return self._db.run(
            lambda conn: outbox.mark_delivered(conn, delivery_id, self._clock()),
            transaction=False,
        )

    def webhook_retry(self, delivery_id: str, error: str, next_attempt_at: float | None) -> bool:
        """Record a failed attempt; due again at `next_attempt_at`, or never (None: give up)."""
        return self._db.run(
            lambda conn: outbox.schedule_retry(conn, delivery_id, error, next_attempt_at),
            transaction=False,
        )

    def get_webhook_deliveries(self, request_id: str) -> list[WebhookDelivery]:
        """The webhook messages of a request (at most one), with their delivery state."""
        return self._db.run(lambda conn: outbox.deliveries_of(conn, request_id),
                            transaction=False)

    # --- API keys and credits --------------------------------------------------------------------
    def create_api_key(
        self, name: str, credits: float, free_credits: float = 0.0, secret: str | None = None
    ) -> tuple[ApiKey, str]:
        """Create a key; returns the record and the secret (generated as "or_..." when None).

        Creating a `secret` that already exists returns the existing record unchanged.
        """
        if secret is None:
            secret = new_secret()
        elif not secret:
            raise ValueError("an API key secret must not be empty")
        key = ApiKey(
            key_id=new_key_id(),
            key_hash=hash_secret(secret),
            name=name,
            credits=_money(credits),
            free_credits=_money(free_credits),
            created_at=self._clock(),
        )

        def body(conn: psycopg.Connection) -> ApiKey:
            row = conn.execute(INSERT_API_KEY, api_key_values(key)).fetchone()
            if row is None:  # that secret exists (ON CONFLICT DO NOTHING)
                row = conn.execute(
                    f"SELECT {API_KEY_COLUMNS} FROM api_keys WHERE key_hash = %s",
                    (key.key_hash,),
                ).fetchone()
            return row_to_api_key(row)

        return self._db.run(body, transaction=False), secret

    def find_api_key(self, secret: str) -> ApiKey | None:
        """The key whose secret this is (revoked keys included), or None."""
        row = self._read_one(
            f"SELECT {API_KEY_COLUMNS} FROM api_keys WHERE key_hash = %s", (hash_secret(secret),)
        )
        return None if row is None else row_to_api_key(row)

    def get_api_key(self, key_id: str) -> ApiKey | None:
        """The key with this public id, or None."""
        row = self._read_one(
            f"SELECT {API_KEY_COLUMNS} FROM api_keys WHERE key_id = %s", (key_id,)
        )
        return None if row is None else row_to_api_key(row)

    def list_api_keys(self) -> list[ApiKey]:
        """Every key, oldest first."""
        rows = self._read(f"SELECT {API_KEY_COLUMNS} FROM api_keys ORDER BY created_at, key_id")
        return [row_to_api_key(row) for row in rows]

    def revoke_api_key(self, key_id: str) -> bool:
        """Mark the key revoked; False when there is no such key."""
        return self._change("UPDATE api_keys SET revoked = true WHERE key_id = %s", (key_id,)) == 1

    def add_credits(self, key_id: str, amount: float) -> ApiKey:
        """Add (or with a negative amount, remove) paid credits; `UnknownApiKey` if none."""

        rows = self._read(
            f"UPDATE api_keys SET credits = openremix_money(credits + %s) WHERE key_id = %s"
            f" RETURNING {API_KEY_COLUMNS}",
            (amount, key_id),
        )
        if not rows:
            raise UnknownApiKey(key_id)
        return row_to_api_key(rows[0])

    def close(self) -> None:
        """Stop the listener and close every pooled connection."""
        self._listener.close()
        self._db.close()
