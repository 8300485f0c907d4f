"""The webhook outbox of `PostgresJobStore`: statements over one connection, inside the caller's
transaction (see `sqlite_outbox` for the design; the two differ only in SQL dialect).

Dispatchers lease due messages with `FOR UPDATE SKIP LOCKED`, so two of them, on any machine,
never take the same message; one that dies mid-send leaves it to be taken when the lease ends.
"""

from __future__ import annotations

import psycopg

from openremix.jobs.model import Job
from openremix.jobs.outbox import (
    FINISHED_DELIVERY_MAX_AGE,
    WebhookDelivery,
    encode_payload,
    new_delivery_id,
    webhook_event,
)
from openremix.jobs.params import WEBHOOK_KEY
from openremix.jobs.sqlite.schema import DELIVERY_COLUMNS, row_to_delivery
from openremix.jobs.status_body import terminal_status_body

_DUE = (
    "next_attempt_at IS NOT NULL AND next_attempt_at <= %(now)s"
    " AND COALESCE(lease_until, 0) < %(now)s"
)


def record_webhook(conn: psycopg.Connection, job: Job, now: float) -> None:
    """Queue the webhook of a job that has just become COMPLETED or FAILED, if it wants one."""
    event = webhook_event(job)
    if event is None:
        return
    conn.execute(
        "INSERT INTO webhook_deliveries (delivery_id, request_id, url, event, payload,"
        " attempts, created_at, next_attempt_at) VALUES (%s, %s, %s, %s, %s, 0, %s, %s)"
        " ON CONFLICT (request_id) DO NOTHING",
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


def claim_due(
    conn: psycopg.Connection, now: float, lease_seconds: float, limit: int
) -> list[WebhookDelivery]:
    """Lease up to `limit` due messages (oldest due first), counting the attempt."""
    rows = conn.execute(
        f"UPDATE webhook_deliveries SET lease_until = %(until)s, attempts = attempts + 1,"
        f" first_attempt_at = COALESCE(first_attempt_at, %(now)s)"
        f" WHERE delivery_id IN (SELECT delivery_id FROM webhook_deliveries WHERE {_DUE}"
        f"  ORDER BY next_attempt_at, seq LIMIT %(limit)s FOR UPDATE SKIP LOCKED)"
        f" RETURNING {DELIVERY_COLUMNS}",
        {"until": now + lease_seconds, "now": now, "limit": limit},
    ).fetchall()
    deliveries = [row_to_delivery(row) for row in rows]
    return sorted(deliveries, key=lambda d: (d.next_attempt_at or 0.0, d.created_at))


def mark_delivered(conn: psycopg.Connection, delivery_id: str, now: float) -> bool:
    cur = conn.execute(
        "UPDATE webhook_deliveries SET delivered_at = %s, next_attempt_at = NULL,"
        " lease_until = NULL, last_error = NULL WHERE delivery_id = %s AND delivered_at IS NULL",
        (now, delivery_id),
    )
    return cur.rowcount == 1


def schedule_retry(
    conn: psycopg.Connection, delivery_id: str, error: str, next_attempt_at: float | None
) -> bool:
    cur = conn.execute(
        "UPDATE webhook_deliveries SET last_error = %s, next_attempt_at = %s, lease_until = NULL"
        " WHERE delivery_id = %s AND delivered_at IS NULL",
        (error, next_attempt_at, delivery_id),
    )
    return cur.rowcount == 1


def deliveries_of(conn: psycopg.Connection, request_id: str) -> list[WebhookDelivery]:
    rows = conn.execute(
        f"SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE request_id = %s"
        f" ORDER BY created_at, seq",
        (request_id,),
    ).fetchall()
    return [row_to_delivery(row) for row in rows]


def delete_old(conn: psycopg.Connection, now: float, retention_seconds: float) -> int:
    """Drop finished messages older than the retention, and any older than a day."""
    cur = conn.execute(
        "DELETE FROM webhook_deliveries WHERE (next_attempt_at IS NULL AND created_at <= %s)"
        " OR created_at <= %s",
        (now - retention_seconds, now - FINISHED_DELIVERY_MAX_AGE),
    )
    return cur.rowcount
