"""`SQLJobStore`: every `JobStore` method whose SQL SQLite and PostgreSQL agree on, written once.

A backend subclasses it, names its `Dialect`, and supplies what the databases do differently:

- `_run(body, access)`: how `body(conn)` gets a connection and a transaction (SQLite: a
  connection per thread, writes in `BEGIN IMMEDIATE` with lock retries; PostgreSQL: a pool that
  reconnects, single statements in autocommit), see `sql.base`;
- `enqueue` and `claim_batch`, the two hot paths, each tuned to its database;
- `_may_sweep(conn)`: whether this transaction may sweep (PostgreSQL: one process at a time);
- the schema and its migrations.

The API-key methods are `sql.api_keys`, the outbox's statements `sql.outbox`. Everything here
is guarded the same way in both: a worker's update needs its lease (`state = PROCESSING AND
lease_owner = worker`), a FAILED transition refunds exactly once (`extra` records it), and a
finished job's webhook message is written in the finishing transaction.
"""

from __future__ import annotations

import json
from typing import Any

from openremix.jobs.accounts import money, partial_refund
from openremix.jobs.model import ExpiredJob, Job, JobState, NewJob, allowed_transition
from openremix.jobs.outbox import WebhookDelivery
from openremix.jobs.params import WEBHOOK_KEY
from openremix.jobs.sql import outbox
from openremix.jobs.sql.api_keys import SQLApiKeys
from openremix.jobs.sql.base import Access
from openremix.jobs.sql.dialect import Connection, Row
from openremix.jobs.sql.rows import JOB_COLUMNS, row_to_job
from openremix.jobs.store import QueueFull

QUEUED = JobState.QUEUED.value
PROCESSING = JobState.PROCESSING.value

# States are written as literals (not parameters) so that PostgreSQL can use its partial
# indexes (`WHERE state = 'QUEUED'`, `'PROCESSING'`) in every plan, prepared ones included.
COMPLETE_OWNED = (
    f"UPDATE jobs SET state = '{JobState.COMPLETED.value}', result = ?, error = NULL,"
    f" finished_at = ?, lease_expires_at = NULL"
    f" WHERE request_id = ? AND state = '{PROCESSING}' AND lease_owner = ?"
)
_FAIL = (
    f"UPDATE jobs SET state = '{JobState.FAILED.value}', error = ?, finished_at = ?,"
    f" result = COALESCE(?, result), lease_expires_at = NULL, extra = ? WHERE request_id = ?"
    f" RETURNING {JOB_COLUMNS}"
)
_REFUND = (
    "UPDATE api_keys SET free_credits = openremix_money(free_credits + ?),"
    " credits = openremix_money(credits + ?) WHERE key_id = ?"
)
_EXPIRED_LEASE = f"state = '{PROCESSING}' AND lease_expires_at < ?"
_UNEXPIRED_QUEUED = f"state = '{QUEUED}' AND expires_at > ?"
_QUEUE_DEPTH = f"SELECT COUNT(*) AS n FROM jobs WHERE {_UNEXPIRED_QUEUED}"


class SQLJobStore(SQLApiKeys):
    """The shared part of `SQLiteJobStore` and `PostgresJobStore` (see the module docstring).

    `clock` gives "now" for every timestamp and expiry check (tests pass a fake one). Jobs are
    kept `retention_seconds` after submission; a job is failed after being claimed
    `max_attempts` times by workers that lost their lease.
    """

    def _queued_job(self, new: NewJob, now: float, from_free: float, from_paid: float) -> Job:
        """The record `enqueue` stores. The debit per bucket is kept in `extra` ("debit_free",
        "debit_paid") so that a refund returns credits where they came from."""
        return Job(
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
            extra={"debit_free": from_free, "debit_paid": from_paid},
        )

    def _refund(self, conn: Connection, api_key_id: str, extra: dict[str, Any]) -> None:
        """Put a job's debit back into the buckets it came from, once; marks `extra`."""
        if extra.get("refunded"):
            return
        conn.execute(
            self._sql(_REFUND),
            (extra.get("debit_free", 0.0), extra.get("debit_paid", 0.0), api_key_id),
        )
        extra["refunded"] = True

    def _fail_job(
        self, conn: Connection, row: Row, error: str, result: dict[str, Any] | None, now: float
    ) -> None:
        """Within a transaction: FAILED with `error` (and `result`, when given), refunded, its
        webhook message queued. `row` has the job's request_id, api_key_id and extra."""
        extra = json.loads(row["extra"])
        self._refund(conn, row["api_key_id"], extra)
        stored_result = None if result is None else json.dumps(result)
        failed = conn.execute(
            self._sql(_FAIL),
            (error, now, stored_result, json.dumps(extra), row["request_id"]),
        ).fetchone()
        outbox.record_webhook(conn, self.dialect, row_to_job(failed), now)

    # --- jobs ------------------------------------------------------------------------------------
    def get(self, request_id: str) -> Job | None:
        """The job, or None when unknown or past its `expires_at` (swept or not)."""
        row = self._row(
            f"SELECT {JOB_COLUMNS} FROM jobs WHERE request_id = ? AND expires_at > ?",
            (request_id, self._clock()),
        )
        return None if row is None else row_to_job(row)

    def _update_owned(
        self, sql_set: str, args: tuple[Any, ...], request_id: str, worker: str
    ) -> bool:
        """Apply `SET sql_set` to a PROCESSING job only while `worker` holds its lease."""
        return self._count(
            f"UPDATE jobs SET {sql_set}"
            f" WHERE request_id = ? AND state = '{PROCESSING}' AND lease_owner = ?",
            (*args, request_id, worker),
        ) == 1

    def heartbeat(self, request_id: str, worker_id: str, lease_seconds: float) -> bool:
        """Renew the lease to now + `lease_seconds`; False when the job is not this worker's."""
        expires = self._clock() + lease_seconds
        return self._update_owned("lease_expires_at = ?", (expires,), request_id, worker_id)

    def set_progress(self, request_id: str, worker_id: str, step: int, total: int) -> bool:
        """Record step progress; False when the job is not this worker's."""
        return self._update_owned(
            "progress_step = ?, progress_total = ?", (step, total), request_id, worker_id
        )

    def complete(
        self,
        request_id: str,
        worker_id: str,
        result: dict[str, Any],
        refund_fraction: float = 0.0,
    ) -> bool:
        """PROCESSING -> COMPLETED with `result`, only while `worker_id` holds the lease.

        A job without a webhook or refund is finished by one statement; the others go through a
        transaction that also writes the outbox message and gives back `refund_fraction` of the
        debit (`accounts.partial_refund`), lowering the job's `cost` to what it was charged.
        """
        now = self._clock()
        args = (json.dumps(result), now, request_id, worker_id)
        no_webhook = self.dialect.key_absent("params", WEBHOOK_KEY)
        if not refund_fraction and self._count(f"{COMPLETE_OWNED} AND {no_webhook}", args):
            return True

        def body(conn: Connection) -> bool:
            if refund_fraction and not self._refund_part(conn, request_id, worker_id,
                                                         refund_fraction):
                return False
            sql = self._sql(f"{COMPLETE_OWNED} RETURNING {JOB_COLUMNS}")
            row = conn.execute(sql, args).fetchone()
            if row is None:
                return False
            outbox.record_webhook(conn, self.dialect, row_to_job(row), now)
            return True

        return self._run(body, Access.TRANSACTION)

    def _refund_part(
        self, conn: Connection, request_id: str, worker_id: str, fraction: float
    ) -> bool:
        """Within `complete`'s transaction: give `fraction` of the job's debit back to its key
        and record it (the debit buckets in `extra` shrink, so no later refund returns it
        twice). False when the job is not this worker's."""
        row = conn.execute(
            self._sql(
                "SELECT state, lease_owner, api_key_id, cost, extra FROM jobs"
                f" WHERE request_id = ?{self.dialect.lock_rows}"
            ),
            (request_id,),
        ).fetchone()
        if row is None or row["state"] != PROCESSING or row["lease_owner"] != worker_id:
            return False
        extra = json.loads(row["extra"])
        debit_free, debit_paid = extra.get("debit_free", 0.0), extra.get("debit_paid", 0.0)
        to_free, to_paid = partial_refund(debit_free, debit_paid, fraction)
        conn.execute(self._sql(_REFUND), (to_free, to_paid, row["api_key_id"]))
        extra.update(debit_free=money(debit_free - to_free), debit_paid=money(debit_paid - to_paid),
                     refunded_part=money(to_free + to_paid))
        conn.execute(
            self._sql("UPDATE jobs SET cost = ?, extra = ? WHERE request_id = ?"),
            (money(row["cost"] - to_free - to_paid), json.dumps(extra), request_id),
        )
        return True

    def claim_next(self, worker_id: str, lease_seconds: float) -> Job | None:
        """`claim_batch` with a limit of one: the next job (fair across keys), or None."""
        batch = self.claim_batch(worker_id, lease_seconds, 1)
        return batch[0] if batch else None

    def claim_batch(self, worker_id: str, lease_seconds: float, limit: int) -> list[Job]:
        raise NotImplementedError

    def complete_many(self, worker_id: str, results: dict[str, dict[str, Any]]) -> set[str]:
        """`complete` for several jobs; see the protocol. A backend may finish the jobs without
        a webhook in one statement (`_complete_without_webhook`); the rest go one by one."""
        if not results:
            return set()
        done = self._complete_without_webhook(worker_id, results, self._clock())
        for request_id, result in results.items():
            if request_id not in done and self.complete(request_id, worker_id, result):
                done.add(request_id)
        return done

    def _complete_without_webhook(
        self, worker_id: str, results: dict[str, dict[str, Any]], now: float
    ) -> set[str]:
        """Complete those of `results` that carry no webhook and are this worker's, in one
        statement where the database allows; the ids it completed."""
        return set()

    def fail(
        self,
        request_id: str,
        worker_id: str | None,
        error: str,
        result: dict[str, Any] | None = None,
    ) -> bool:
        """-> FAILED with `error`, refunding the cost exactly once; see `JobStore.fail`."""

        def body(conn: Connection) -> bool:
            row = conn.execute(
                self._sql(
                    "SELECT request_id, state, lease_owner, api_key_id, extra FROM jobs"
                    f" WHERE request_id = ?{self.dialect.lock_rows}"
                ),
                (request_id,),
            ).fetchone()
            if row is None or not allowed_transition(JobState(row["state"]), JobState.FAILED):
                return False
            if worker_id is not None and (
                row["state"] != PROCESSING or row["lease_owner"] != worker_id
            ):
                return False
            self._fail_job(conn, row, error, result, self._clock())
            return True

        return self._run(body, Access.TRANSACTION)

    def requeue_expired_leases(self) -> int:
        """Re-queue PROCESSING jobs whose lease ended, or fail (and refund) those out of
        attempts. Returns how many jobs changed (0 while another process is sweeping)."""

        def body(conn: Connection) -> int:
            if not self._may_sweep(conn):
                return 0
            now = self._clock()
            requeued = conn.execute(  # PostgreSQL: the update's trigger sends the NOTIFY
                self._sql(
                    f"UPDATE jobs SET state = '{QUEUED}', lease_owner = NULL,"
                    f" lease_expires_at = NULL, progress_step = 0, progress_total = 0"
                    f" WHERE {_EXPIRED_LEASE} AND attempts < max_attempts RETURNING request_id"
                ),
                (now,),
            ).fetchall()
            lost = conn.execute(
                self._sql(
                    f"SELECT request_id, attempts, api_key_id, extra FROM jobs"
                    f" WHERE {_EXPIRED_LEASE} AND attempts >= max_attempts"
                    f" ORDER BY request_id{self.dialect.lock_rows}"
                ),
                (now,),
            ).fetchall()
            for row in lost:
                error = f"worker lost while processing ({row['attempts']} attempts); giving up"
                self._fail_job(conn, row, error, None, now)
            return len(requeued) + len(lost)

        return self._run(body, Access.TRANSACTION)

    def expire(self) -> list[ExpiredJob]:
        """Delete jobs past `expires_at`; return them (to delete their blobs).

        Also deletes webhook messages finished more than the retention ago (and any a day old).
        Returns [] while another process is sweeping (it deletes those blobs).
        """

        def body(conn: Connection) -> list[ExpiredJob]:
            if not self._may_sweep(conn):
                return []
            now = self._clock()
            outbox.delete_old(conn, self.dialect, now, self.retention_seconds)
            rows = conn.execute(
                self._sql(
                    "DELETE FROM jobs WHERE expires_at <= ?"
                    " RETURNING request_id, result, state, api_key_id, extra, started_at"
                ),
                (now,),
            ).fetchall()
            for row in rows:
                # A job that never finished within the retention never ran: give its cost back.
                if row["state"] in (QUEUED, PROCESSING):
                    self._refund(conn, row["api_key_id"], json.loads(row["extra"]))
            return [
                ExpiredJob(row["request_id"],
                           None if row["result"] is None else json.loads(row["result"]),
                           row["started_at"] is not None)
                for row in rows
            ]

        return self._run(body, Access.TRANSACTION)

    def queue_depth(self) -> int:
        """QUEUED (and unexpired) jobs now."""
        row = self._row(_QUEUE_DEPTH, (self._clock(),))
        return int(row["n"]) if row else 0

    def check_writable(self) -> None:
        """See `JobStore.check_writable`: an empty transaction (SQLite's `BEGIN IMMEDIATE`
        takes the write lock)."""
        self._run(lambda conn: conn.execute("SELECT 1").fetchall(), Access.TRANSACTION)

    def _refuse_when_full(self, conn: Connection, new: NewJob, now: float) -> None:
        """Within the enqueue transaction: raise `QueueFull` when `new.max_queue_depth` jobs
        already wait. The caller's transaction must exclude other enqueues until it ends."""
        if new.max_queue_depth is None:
            return
        row = conn.execute(self._sql(_QUEUE_DEPTH), (now,)).fetchone()
        depth = int(row["n"]) if row else 0
        if depth >= new.max_queue_depth:
            raise QueueFull(depth, new.max_queue_depth)

    def oldest_queued_age(self) -> float:
        """Seconds the oldest QUEUED job has waited (0 when none waits)."""
        now = self._clock()
        row = self._row(
            f"SELECT MIN(created_at) AS oldest FROM jobs WHERE {_UNEXPIRED_QUEUED}", (now,)
        )
        oldest = None if row is None else row["oldest"]
        return 0.0 if oldest is None else max(0.0, now - float(oldest))

    def queue_position(self, request_id: str) -> int | None:
        """0-based count of QUEUED jobs claimed before this one, in `claim_batch`'s fair order
        (priority, then slot, then age; a per-key cap is not foreseen); None when not QUEUED."""
        now = self._clock()
        order = self.dialect.insert_order
        row = self._row(
            f"WITH running AS (SELECT api_key_id, COUNT(*) AS n FROM jobs"
            f"   WHERE state = '{PROCESSING}' GROUP BY api_key_id),"
            f" queued AS (SELECT j.request_id, j.priority, j.created_at, j.{order} AS ord,"
            f"   COALESCE(r.n, 0) + ROW_NUMBER() OVER (PARTITION BY j.api_key_id"
            f"     ORDER BY j.priority DESC, j.created_at, j.{order}) AS slot"
            f"   FROM jobs AS j LEFT JOIN running AS r ON r.api_key_id = j.api_key_id"
            f"   WHERE j.state = '{QUEUED}' AND j.expires_at > ?)"
            f" SELECT (SELECT COUNT(*) FROM queued AS o WHERE o.priority > t.priority"
            f"   OR (o.priority = t.priority AND (o.slot < t.slot OR (o.slot = t.slot"
            f"   AND (o.created_at < t.created_at"
            f"   OR (o.created_at = t.created_at AND o.ord < t.ord)))))) AS position"
            f" FROM queued AS t WHERE t.request_id = ?",
            (now, request_id),
        )
        return None if row is None else int(row["position"])

    # --- webhook outbox (statements: `jobs.sql.outbox`) ------------------------------------------
    def claim_due_webhooks(self, lease_seconds: float, limit: int) -> list[WebhookDelivery]:
        """Lease up to `limit` due webhook messages for `lease_seconds`; see the protocol."""
        return self._run(
            lambda conn: outbox.claim_due(conn, self.dialect, self._clock(), lease_seconds,
                                          limit),
            Access.WRITE,
        )

    def webhook_delivered(self, delivery_id: str) -> bool:
        """The receiver answered 2xx: the message is done."""
        return self._run(
            lambda conn: outbox.mark_delivered(conn, self.dialect, delivery_id, self._clock()),
            Access.WRITE,
        )

    def webhook_retry(self, delivery_id: str, error: str, next_attempt_at: float | None) -> bool:
        """Record a failed attempt; due again at `next_attempt_at`, or never (None: give up)."""
        return self._run(
            lambda conn: outbox.schedule_retry(conn, self.dialect, delivery_id, error,
                                               next_attempt_at),
            Access.WRITE,
        )

    def get_webhook_deliveries(self, request_id: str) -> list[WebhookDelivery]:
        """The webhook messages of a request (at most one), with their delivery state."""
        return self._run(lambda conn: outbox.deliveries_of(conn, self.dialect, request_id),
                         Access.READ)
