"""The webhook outbox's statements, for both backends: each runs on one connection inside the
caller's transaction.

A message is written by `record_webhook` in the very transaction that finishes its job, so a
job is never COMPLETED/FAILED without its message, nor a message sent for a job that rolled
back. Dispatchers take due messages with a lease (`claim_due`), so two of them, in any thread,
process or machine, never send the same message at once (SQLite: the claim runs under the
database's write lock; PostgreSQL: `FOR UPDATE SKIP LOCKED`); a dispatcher that dies mid-send
leaves the message to be taken again when the lease ends. The records and rules (which event,
which payload) are `openremix.jobs.outbox`.
"""

from __future__ import annotations

from openremix.jobs.model import Job
from openremix.jobs.outbox import (
    FINISHED_DELIVERY_MAX_AGE,
    WebhookDelivery,
    encode_payload,
    new_delivery_id,
    webhook_event,
)
from openremix.jobs.params import WEBHOOK_KEY
from openremix.jobs.sql.dialect import Connection, Dialect
from openremix.jobs.sql.rows import DELIVERY_COLUMNS, row_to_delivery
from openremix.jobs.status_body import terminal_status_body

_DUE = "next_attempt_at IS NOT NULL AND next_attempt_at <= ? AND COALESCE(lease_until, 0) < ?"
"""A message is due while it has a next attempt that has come and no dispatcher leases it."""


def record_webhook(conn: Connection, dialect: Dialect, job: Job, now: float) -> None:
    """Queue the webhook of a job that has just become COMPLETED or FAILED, if it wants one."""
    event = webhook_event(job)
    if event is None:
        return
    conn.execute(
        dialect.sql(
            "INSERT INTO webhook_deliveries (delivery_id, request_id, url, event, payload,"
            " attempts, created_at, next_attempt_at) VALUES (?, ?, ?, ?, ?, 0, ?, ?)"
            " ON CONFLICT (request_id) DO NOTHING"
        ),
        (
            new_delivery_id(),
            job.request_id,
            job.params[WEBHOOK_KEY]["url"],
            event,
            encode_payload(terminal_status_body(job)),
            now,
            now,
        ),
    )


def any_due(conn: Connection, dialect: Dialect, now: float) -> bool:
    """A cheap read: is any message due? (Spares SQLite's idle dispatchers the write lock.)"""
    sql = dialect.sql(f"SELECT 1 AS due FROM webhook_deliveries WHERE {_DUE} LIMIT 1")
    return conn.execute(sql, (now, now)).fetchone() is not None


def claim_due(
    conn: Connection, dialect: Dialect, now: float, lease_seconds: float, limit: int
) -> list[WebhookDelivery]:
    """Lease up to `limit` due messages (oldest due first), counting the attempt."""
    rows = conn.execute(
        dialect.sql(
            f"UPDATE webhook_deliveries SET lease_until = ?, attempts = attempts + 1,"
            f" first_attempt_at = COALESCE(first_attempt_at, ?)"
            f" WHERE delivery_id IN (SELECT delivery_id FROM webhook_deliveries WHERE {_DUE}"
            f"  ORDER BY next_attempt_at, {dialect.insert_order} LIMIT ?{dialect.skip_locked})"
            f" RETURNING {DELIVERY_COLUMNS}"
        ),
        (now + lease_seconds, now, now, now, limit),
    ).fetchall()
    deliveries = [row_to_delivery(row) for row in rows]
    return sorted(deliveries, key=lambda d: (d.next_attempt_at or 0.0, d.created_at))


def mark_delivered(conn: Connection, dialect: Dialect, delivery_id: str, now: float) -> bool:
    """The receiver took it: never due again. False when unknown or already done."""
    cur = conn.execute(
        dialect.sql(
            "UPDATE webhook_deliveries SET delivered_at = ?, next_attempt_at = NULL,"
            " lease_until = NULL, last_error = NULL WHERE delivery_id = ? AND delivered_at IS NULL"
        ),
        (now, delivery_id),
    )
    return cur.rowcount == 1


def schedule_retry(
    conn: Connection, dialect: Dialect, delivery_id: str, error: str,
    next_attempt_at: float | None,
) -> bool:
    """Release the lease; due again at `next_attempt_at`, or never (None), `error` kept."""
    cur = conn.execute(
        dialect.sql(
            "UPDATE webhook_deliveries SET last_error = ?, next_attempt_at = ?, lease_until = NULL"
            " WHERE delivery_id = ? AND delivered_at IS NULL"
        ),
        (error, next_attempt_at, delivery_id),
    )
    return cur.rowcount == 1


def deliveries_of(conn: Connection, dialect: Dialect, request_id: str) -> list[WebhookDelivery]:
    """The messages of one request, oldest first."""
    rows = conn.execute(
        dialect.sql(
            f"SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE request_id = ?"
            f" ORDER BY created_at, {dialect.insert_order}"
        ),
        (request_id,),
    ).fetchall()
    return [row_to_delivery(row) for row in rows]


def delete_old(conn: Connection, dialect: Dialect, now: float, retention_seconds: float) -> int:
    """Drop finished messages older than the retention, and any older than a day."""
    cur = conn.execute(
        dialect.sql(
            "DELETE FROM webhook_deliveries WHERE (next_attempt_at IS NULL AND created_at <= ?)"
            " OR created_at <= ?"
        ),
        (now - retention_seconds, now - FINISHED_DELIVERY_MAX_AGE),
    )
    return cur.rowcount
