"""`SQLiteJobStore`: the embedded job store, one SQLite file shared by threads and processes.

Concurrency model: WAL journal (readers never block the writer), one connection per thread,
and every write in a `BEGIN IMMEDIATE` transaction, which takes the database's single write
lock up front. Claiming is therefore a plain select-then-update: no two transactions, in any
thread or process of the machine, can interleave inside it.

The webhook outbox (`sqlite_outbox`) shares those transactions: a finished job's message is
written by the same transaction that finishes it.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from openremix.jobs.accounts import MONEY_DIGITS, hash_secret, new_key_id, new_secret
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
from openremix.jobs.sqlite import outbox
from openremix.jobs.sqlite.schema import (
    API_KEY_COLUMNS,
    INSERT_API_KEY,
    INSERT_JOB,
    JOB_COLUMNS,
    api_key_values,
    connect,
    job_values,
    migrate,
    retry_locked,
    row_to_api_key,
    row_to_job,
)
from openremix.jobs.store import IdempotencyConflict, InsufficientCredits, UnknownApiKey

T = TypeVar("T")

_QUEUED = JobState.QUEUED.value
_PROCESSING = JobState.PROCESSING.value


class SQLiteJobStore:
    """A `JobStore` in one SQLite file; safe across the threads and processes of one machine.

    `clock` gives "now" for every timestamp and expiry check (tests pass a fake one).
    Jobs are kept `retention_seconds` after submission; a job is failed after being claimed
    `max_attempts` times by workers that lost their lease.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        clock: Clock = system_clock,
        retention_seconds: float = 3600,
        max_attempts: int = 3,
    ) -> None:
        if str(path) == ":memory:" or str(path).startswith("file::memory:"):
            raise ValueError("SQLiteJobStore needs a file path; ':memory:' is per connection")
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {max_attempts}")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._clock = clock
        self.retention_seconds = float(retention_seconds)
        self.max_attempts = max_attempts
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
            with self._connections_lock:
                self._connections.append(conn)
        return conn

    def _read(self, sql: str, args: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        """Rows of one read statement (autocommit: a consistent snapshot of that statement)."""
        return self._conn().execute(sql, args).fetchall()

    def _read_one(self, sql: str, args: tuple[Any, ...] = ()) -> sqlite3.Row | None:
        rows = self._read(sql, args)
        return rows[0] if rows else None

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

    def _refund(self, conn: sqlite3.Connection, api_key_id: str, extra: dict[str, Any]) -> None:
        """Put a job's debit back into the buckets it came from, once; marks `extra`."""
        if extra.get("refunded"):
            return
        conn.execute(
            f"UPDATE api_keys SET free_credits = round(free_credits + ?, {MONEY_DIGITS}),"
            f" credits = round(credits + ?, {MONEY_DIGITS}) WHERE key_id = ?",
            (extra.get("debit_free", 0.0), extra.get("debit_paid", 0.0), api_key_id),
        )
        extra["refunded"] = True

    # --- jobs ------------------------------------------------------------------------------------
    def enqueue(self, new: NewJob) -> tuple[Job, bool]:
        """Insert a QUEUED job and debit its cost (free credits first), in one transaction.

        See `JobStore.enqueue`. The debit per bucket is kept in `job.extra` ("debit_free",
        "debit_paid") so that a refund returns credits where they came from.
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
            free, paid = key["free_credits"], key["credits"]
            balance = _money(free + paid)
            if balance < new.cost:
                raise InsufficientCredits(balance, new.cost)
            debit_free = _money(min(max(free, 0.0), new.cost))
            debit_paid = _money(new.cost - debit_free)
            conn.execute(
                "UPDATE api_keys SET free_credits = ?, credits = ? WHERE key_id = ?",
                (_money(free - debit_free), _money(paid - debit_paid), new.api_key_id),
            )
            job = Job(
                request_id=new.request_id,
                model=new.model,
                api_key_id=new.api_key_id,
                params=new.params,
                state=JobState.QUEUED,
                cost=new.cost,
                created_at=now,
                expires_at=now + self.retention_seconds,
                max_attempts=self.max_attempts,
                priority=new.priority,
                idempotency_key=new.idempotency_key,
                request_hash=new.request_hash,
                extra={"debit_free": debit_free, "debit_paid": debit_paid},
            )
            conn.execute(INSERT_JOB, job_values(job))
            return job, True

        return self._write(body)

    def get(self, request_id: str) -> Job | None:
        """The job, or None when unknown or past its `expires_at` (swept or not)."""
        row = self._read_one(
            f"SELECT {JOB_COLUMNS} FROM jobs WHERE request_id = ? AND expires_at > ?",
            (request_id, self._clock()),
        )
        return None if row is None else row_to_job(row)

    def claim_next(self, worker_id: str, lease_seconds: float) -> Job | None:
        """Take the best QUEUED job (priority, then age) for `worker_id`; see the protocol."""

        def body(conn: sqlite3.Connection) -> Job | None:
            now = self._clock()
            rows = conn.execute(
                f"UPDATE jobs SET state = ?, lease_owner = ?, lease_expires_at = ?,"
                f" attempts = attempts + 1, started_at = COALESCE(started_at, ?),"
                f" progress_step = 0, progress_total = 0"
                f" WHERE rowid = (SELECT rowid FROM jobs WHERE state = ? AND expires_at > ?"
                f"  ORDER BY priority DESC, created_at, rowid LIMIT 1)"
                f" RETURNING {JOB_COLUMNS}",
                (_PROCESSING, worker_id, now + lease_seconds, now, _QUEUED, now),
            ).fetchall()
            return row_to_job(rows[0]) if rows else None

        return self._write(body)

    def _update_owned(
        self, sql_set: str, args: tuple[Any, ...], request_id: str, worker: str
    ) -> bool:
        """Apply `SET sql_set` to a PROCESSING job only while `worker` holds its lease."""

        def body(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                f"UPDATE jobs SET {sql_set} WHERE request_id = ? AND state = ? AND lease_owner = ?",
                (*args, request_id, _PROCESSING, worker),
            )
            return cur.rowcount == 1

        return self._write(body)

    def heartbeat(self, request_id: str, worker_id: str, lease_seconds: float) -> bool:
        """Renew the lease to now + `lease_seconds`; False when the job is not this worker's."""
        expires = self._clock() + lease_seconds
        return self._update_owned("lease_expires_at = ?", (expires,), request_id, worker_id)

    def set_progress(self, request_id: str, worker_id: str, step: int, total: int) -> bool:
        """Record step progress; False when the job is not this worker's."""
        return self._update_owned(
            "progress_step = ?, progress_total = ?", (step, total), request_id, worker_id
        )

    def _finish(
        self,
        request_id: str,
        worker_id: str | None,
        state: JobState,
        result: dict[str, Any] | None,
        error: str | None,
    ) -> bool:
        """Move a job to a terminal `state` (refunding on FAILED); see `complete` and `fail`."""

        def body(conn: sqlite3.Connection) -> bool:
            row = conn.execute(
                "SELECT state, lease_owner, api_key_id, result, extra FROM jobs"
                " WHERE request_id = ?",
                (request_id,),
            ).fetchone()
            if row is None or not allowed_transition(JobState(row["state"]), state):
                return False
            if worker_id is not None and (
                row["state"] != _PROCESSING or row["lease_owner"] != worker_id
            ):
                return False
            extra = json.loads(row["extra"])
            if state is JobState.FAILED:
                self._refund(conn, row["api_key_id"], extra)
            stored_result = row["result"] if result is None else json.dumps(result)
            now = self._clock()
            finished = conn.execute(
                f"UPDATE jobs SET state = ?, result = ?, error = ?, finished_at = ?,"
                f" lease_expires_at = NULL, extra = ? WHERE request_id = ? RETURNING {JOB_COLUMNS}",
                (state.value, stored_result, error, now, json.dumps(extra), request_id),
            ).fetchone()
            outbox.record_webhook(conn, row_to_job(finished), now)
            return True

        return self._write(body)

    def complete(self, request_id: str, worker_id: str, result: dict[str, Any]) -> bool:
        """PROCESSING -> COMPLETED with `result`, only while `worker_id` holds the lease."""
        return self._finish(request_id, worker_id, JobState.COMPLETED, result, None)

    def fail(
        self,
        request_id: str,
        worker_id: str | None,
        error: str,
        result: dict[str, Any] | None = None,
    ) -> bool:
        """-> FAILED with `error`, refunding the cost exactly once; see `JobStore.fail`."""
        return self._finish(request_id, worker_id, JobState.FAILED, result, error)

    def requeue_expired_leases(self) -> int:
        """Re-queue PROCESSING jobs whose lease ended, or fail (and refund) those out of
        attempts. Returns how many jobs changed."""

        def body(conn: sqlite3.Connection) -> int:
            now = self._clock()
            rows = conn.execute(
                "SELECT request_id, attempts, max_attempts, api_key_id, extra FROM jobs"
                " WHERE state = ? AND lease_expires_at < ?",
                (_PROCESSING, now),
            ).fetchall()
            for row in rows:
                if row["attempts"] < row["max_attempts"]:
                    conn.execute(
                        "UPDATE jobs SET state = ?, lease_owner = NULL, lease_expires_at = NULL,"
                        " progress_step = 0, progress_total = 0 WHERE request_id = ?",
                        (_QUEUED, row["request_id"]),
                    )
                    continue
                extra = json.loads(row["extra"])
                self._refund(conn, row["api_key_id"], extra)
                error = f"worker lost while processing ({row['attempts']} attempts); giving up"
                failed = conn.execute(
                    f"UPDATE jobs SET state = ?, error = ?, finished_at = ?,"
                    f" lease_expires_at = NULL, extra = ? WHERE request_id = ?"
                    f" RETURNING {JOB_COLUMNS}",
                    (JobState.FAILED.value, error, now, json.dumps(extra), row["request_id"]),
                ).fetchone()
                outbox.record_webhook(conn, row_to_job(failed), now)
            return len(rows)

        return self._write(body)

    def expire(self) -> list[dict[str, Any]]:
        """Delete jobs past `expires_at`; return their non-None results (to delete blobs).

        Also deletes webhook messages finished more than the retention ago (and any a day old).
        """

        def body(conn: sqlite3.Connection) -> list[dict[str, Any]]:
            now = self._clock()
            outbox.delete_old(conn, now, self.retention_seconds)
            rows = conn.execute(
                "DELETE FROM jobs WHERE expires_at <= ? RETURNING result, state, api_key_id,"
                " extra",
                (now,),
            ).fetchall()
            for row in rows:
                # A job that never finished within the retention never ran: give its cost back.
                if row["state"] in (_QUEUED, _PROCESSING):
                    self._refund(conn, row["api_key_id"], json.loads(row["extra"]))
            return [json.loads(row["result"]) for row in rows if row["result"] is not None]

        return self._write(body)

    def queue_depth(self) -> int:
        """QUEUED (and unexpired) jobs now."""
        rows = self._read(
            "SELECT COUNT(*) FROM jobs WHERE state = ? AND expires_at > ?",
            (_QUEUED, self._clock()),
        )
        return int(rows[0][0])

    def oldest_queued_age(self) -> float:
        """Seconds the oldest QUEUED job has waited (0 when none waits)."""
        now = self._clock()
        rows = self._read(
            "SELECT MIN(created_at) FROM jobs WHERE state = ? AND expires_at > ?", (_QUEUED, now)
        )
        oldest = rows[0][0]
        return 0.0 if oldest is None else max(0.0, now - float(oldest))

    def queue_position(self, request_id: str) -> int | None:
        """0-based count of QUEUED jobs claimed before this one; None when it is not QUEUED."""
        now = self._clock()
        row = self._read_one(
            "SELECT (SELECT COUNT(*) FROM jobs AS o WHERE o.state = ? AND o.expires_at > ?"
            "   AND (o.priority > t.priority OR (o.priority = t.priority"
            "   AND (o.created_at < t.created_at"
            "   OR (o.created_at = t.created_at AND o.rowid < t.rowid)))))"
            " FROM jobs AS t WHERE t.request_id = ? AND t.state = ? AND t.expires_at > ?",
            (_QUEUED, now, request_id, _QUEUED, now),
        )
        return None if row is None else int(row[0])

    # --- webhook outbox (see `sqlite_outbox`) ----------------------------------------------------
    def claim_due_webhooks(self, lease_seconds: float, limit: int) -> list[WebhookDelivery]:
        """Lease up to `limit` due webhook messages for `lease_seconds`; see the protocol."""
        if not outbox.any_due(self._conn(), self._clock()):
            return []
        return self._write(
            lambda conn: outbox.claim_due(conn, self._clock(), lease_seconds, limit)
        )

    def webhook_delivered(self, delivery_id: str) -> bool:
        """The receiver answered 2xx: the message is done."""
        return self._write(lambda conn: outbox.mark_delivered(conn, delivery_id, self._clock()))

    def webhook_retry(self, delivery_id: str, error: str, next_attempt_at: float | None) -> bool:
        """Record a failed attempt; due again at `next_attempt_at`, or never (None: give up)."""
        return self._write(
            lambda conn: outbox.schedule_retry(conn, delivery_id, error, next_attempt_at)
        )

    def get_webhook_deliveries(self, request_id: str) -> list[WebhookDelivery]:
        """The webhook messages of a request (at most one), with their delivery state."""
        return outbox.deliveries_of(self._conn(), request_id)

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
        key_hash = hash_secret(secret)

        def body(conn: sqlite3.Connection) -> ApiKey:
            row = conn.execute(
                f"SELECT {API_KEY_COLUMNS} FROM api_keys WHERE key_hash = ?", (key_hash,)
            ).fetchone()
            if row is not None:
                return row_to_api_key(row)
            key = ApiKey(
                key_id=new_key_id(),
                key_hash=key_hash,
                name=name,
                credits=_money(credits),
                free_credits=_money(free_credits),
                created_at=self._clock(),
            )
            conn.execute(INSERT_API_KEY, api_key_values(key))
            return key

        return self._write(body), secret

    def find_api_key(self, secret: str) -> ApiKey | None:
        """The key whose secret this is (revoked keys included), or None."""
        row = self._read_one(
            f"SELECT {API_KEY_COLUMNS} FROM api_keys WHERE key_hash = ?", (hash_secret(secret),)
        )
        return None if row is None else row_to_api_key(row)

    def get_api_key(self, key_id: str) -> ApiKey | None:
        """The key with this public id, or None."""
        row = self._read_one(f"SELECT {API_KEY_COLUMNS} FROM api_keys WHERE key_id = ?", (key_id,))
        return None if row is None else row_to_api_key(row)

    def list_api_keys(self) -> list[ApiKey]:
        """Every key, oldest first."""
        rows = self._read(f"SELECT {API_KEY_COLUMNS} FROM api_keys ORDER BY created_at, key_id")
        return [row_to_api_key(row) for row in rows]

    def revoke_api_key(self, key_id: str) -> bool:
        """Mark the key revoked; False when there is no such key."""

        def body(conn: sqlite3.Connection) -> bool:
            cur = conn.execute("UPDATE api_keys SET revoked = 1 WHERE key_id = ?", (key_id,))
            return cur.rowcount == 1

        return self._write(body)

    def add_credits(self, key_id: str, amount: float) -> ApiKey:
        """Add (or with a negative amount, remove) paid credits; `UnknownApiKey` if none."""

        def body(conn: sqlite3.Connection) -> ApiKey:
            rows = conn.execute(
                f"UPDATE api_keys SET credits = round(credits + ?, {MONEY_DIGITS})"
                f" WHERE key_id = ? RETURNING {API_KEY_COLUMNS}",
                (amount, key_id),
            ).fetchall()
            if not rows:
                raise UnknownApiKey(key_id)
            return row_to_api_key(rows[0])

        return self._write(body)

    def close(self) -> None:
        """Close every connection this store opened, in all threads."""
        self._closed = True
        with self._connections_lock:
            connections, self._connections = self._connections, []
        for conn in connections:
            conn.close()
