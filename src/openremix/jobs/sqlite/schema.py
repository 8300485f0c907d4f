"""SQLite plumbing of `SQLiteJobStore`: connection settings, lock retries, the schema and its
migrations, and row <-> record conversion.

The schema version lives in `PRAGMA user_version`. `MIGRATIONS[i]` takes a database from
version `i` to `i + 1`; a later change appends a step and never edits an old one.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from openremix.jobs.model import ApiKey, Job, JobState
from openremix.jobs.outbox import WebhookDelivery

T = TypeVar("T")

BUSY_TIMEOUT_SECONDS = 10.0
"""How long SQLite itself waits for another connection's write lock."""
LOCKED_RETRY_SECONDS = 30.0
"""How long we keep retrying when "database is locked" surfaces anyway (e.g. WAL recovery)."""


def connect(path: Path) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit), rows as `sqlite3.Row`.

    WAL is set once per file by the store; `synchronous = NORMAL` is safe with WAL (a power
    cut may lose the last commits, never corrupt) and saves an fsync per commit.
    """
    conn = sqlite3.connect(
        path,
        timeout=BUSY_TIMEOUT_SECONDS,
        isolation_level=None,
        check_same_thread=False,  # used by one thread; only `close()` crosses threads
    )
    conn.row_factory = sqlite3.Row
    conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_SECONDS * 1000):d}")
    conn.execute("PRAGMA synchronous = NORMAL")
    return conn


def retry_locked(fn: Callable[[], T]) -> T:
    """Call `fn`, again with backoff while it fails with "database is locked"/"busy"."""
    deadline = time.monotonic() + LOCKED_RETRY_SECONDS
    delay = 0.005
    while True:
        try:
            return fn()
        except sqlite3.OperationalError as exc:
            message = str(exc).lower()
            locked = "locked" in message or "busy" in message
            if not locked or time.monotonic() > deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.25)


_V1 = """
CREATE TABLE jobs (
    request_id       TEXT PRIMARY KEY,
    model            TEXT NOT NULL,
    api_key_id       TEXT NOT NULL,
    params           TEXT NOT NULL,
    state            TEXT NOT NULL,
    cost             REAL NOT NULL,
    created_at       REAL NOT NULL,
    expires_at       REAL NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    max_attempts     INTEGER NOT NULL DEFAULT 3,
    priority         INTEGER NOT NULL DEFAULT 0,
    started_at       REAL,
    finished_at      REAL,
    lease_owner      TEXT,
    lease_expires_at REAL,
    result           TEXT,
    error            TEXT,
    progress_step    INTEGER NOT NULL DEFAULT 0,
    progress_total   INTEGER NOT NULL DEFAULT 0,
    idempotency_key  TEXT,
    request_hash     TEXT,
    extra            TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX jobs_claim ON jobs (state, priority DESC, created_at);
CREATE INDEX jobs_expiry ON jobs (expires_at);
CREATE INDEX jobs_lease ON jobs (state, lease_expires_at);
CREATE UNIQUE INDEX jobs_idempotency ON jobs (api_key_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

CREATE TABLE api_keys (
    key_id       TEXT PRIMARY KEY,
    key_hash     TEXT NOT NULL UNIQUE,
    name         TEXT NOT NULL,
    credits      REAL NOT NULL,
    free_credits REAL NOT NULL,
    created_at   REAL NOT NULL,
    revoked      INTEGER NOT NULL DEFAULT 0
);
"""

# Version 2: the webhook outbox. One row per message (at most one per job); a row is due while
# `next_attempt_at` is set and not leased (`lease_until` in the past or NULL).
_V2 = """
CREATE TABLE webhook_deliveries (
    delivery_id      TEXT PRIMARY KEY,
    request_id       TEXT NOT NULL,
    url              TEXT NOT NULL,
    event            TEXT NOT NULL,
    payload          TEXT NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    created_at       REAL NOT NULL,
    next_attempt_at  REAL,
    first_attempt_at REAL,
    delivered_at     REAL,
    last_error       TEXT,
    lease_until      REAL
);
CREATE UNIQUE INDEX webhook_deliveries_request ON webhook_deliveries (request_id);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at)
    WHERE next_attempt_at IS NOT NULL;
CREATE INDEX webhook_deliveries_created ON webhook_deliveries (created_at);
"""

MIGRATIONS: list[str] = [_V1, _V2]
"""`MIGRATIONS[i]` upgrades schema version `i` to `i + 1`."""

SCHEMA_VERSION = len(MIGRATIONS)

JOB_COLUMNS = (
    "request_id, model, api_key_id, params, state, cost, created_at, expires_at, attempts, "
    "max_attempts, priority, started_at, finished_at, lease_owner, lease_expires_at, result, "
    "error, progress_step, progress_total, idempotency_key, request_hash, extra"
)
API_KEY_COLUMNS = "key_id, key_hash, name, credits, free_credits, created_at, revoked"
INSERT_JOB = "INSERT INTO jobs ({}) VALUES ({})".format(
    JOB_COLUMNS, ", ".join("?" for _ in JOB_COLUMNS.split(","))
)
INSERT_API_KEY = f"INSERT INTO api_keys ({API_KEY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)"
DELIVERY_COLUMNS = (
    "delivery_id, request_id, url, event, payload, attempts, created_at, next_attempt_at, "
    "first_attempt_at, delivered_at, last_error, lease_until"
)


def migrate(conn: sqlite3.Connection) -> None:
    """Bring the schema to `SCHEMA_VERSION`. The caller holds a write transaction."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise RuntimeError(
            f"database schema version {version} is newer than this openremix "
            f"understands ({SCHEMA_VERSION}); upgrade openremix"
        )
    for step in MIGRATIONS[version:]:
        for statement in step.split(";"):
            if statement.strip():
                conn.execute(statement)
    if version != SCHEMA_VERSION:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION:d}")


def job_values(job: Job) -> tuple[Any, ...]:
    """The values of `job` in `JOB_COLUMNS` order, JSON fields encoded."""
    return (
        job.request_id,
        job.model,
        job.api_key_id,
        json.dumps(job.params),
        job.state.value,
        job.cost,
        job.created_at,
        job.expires_at,
        job.attempts,
        job.max_attempts,
        job.priority,
        job.started_at,
        job.finished_at,
        job.lease_owner,
        job.lease_expires_at,
        None if job.result is None else json.dumps(job.result),
        job.error,
        job.progress_step,
        job.progress_total,
        job.idempotency_key,
        job.request_hash,
        json.dumps(job.extra),
    )


def api_key_values(key: ApiKey) -> tuple[Any, ...]:
    """The values of `key` in `API_KEY_COLUMNS` order."""
    return (
        key.key_id,
        key.key_hash,
        key.name,
        key.credits,
        key.free_credits,
        key.created_at,
        int(key.revoked),
    )


def row_to_job(row: sqlite3.Row) -> Job:
    """A `jobs` row (selected with `JOB_COLUMNS`) as a `Job`."""
    return Job(
        request_id=row["request_id"],
        model=row["model"],
        api_key_id=row["api_key_id"],
        params=json.loads(row["params"]),
        state=JobState(row["state"]),
        cost=row["cost"],
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        attempts=row["attempts"],
        max_attempts=row["max_attempts"],
        priority=row["priority"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        lease_owner=row["lease_owner"],
        lease_expires_at=row["lease_expires_at"],
        result=None if row["result"] is None else json.loads(row["result"]),
        error=row["error"],
        progress_step=row["progress_step"],
        progress_total=row["progress_total"],
        idempotency_key=row["idempotency_key"],
        request_hash=row["request_hash"],
        extra=json.loads(row["extra"]),
    )


def row_to_api_key(row: sqlite3.Row) -> ApiKey:
    """An `api_keys` row (selected with `API_KEY_COLUMNS`) as an `ApiKey`."""
    return ApiKey(
        key_id=row["key_id"],
        key_hash=row["key_hash"],
        name=row["name"],
        credits=row["credits"],
        free_credits=row["free_credits"],
        created_at=row["created_at"],
        revoked=bool(row["revoked"]),
    )


def row_to_delivery(row: sqlite3.Row) -> WebhookDelivery:
    """A `webhook_deliveries` row (selected with `DELIVERY_COLUMNS`) as a `WebhookDelivery`."""
    return WebhookDelivery(
        delivery_id=row["delivery_id"],
        request_id=row["request_id"],
        url=row["url"],
        event=row["event"],
        payload=row["payload"],
        attempts=row["attempts"],
        created_at=row["created_at"],
        next_attempt_at=row["next_attempt_at"],
        first_attempt_at=row["first_attempt_at"],
        delivered_at=row["delivered_at"],
        last_error=row["last_error"],
        lease_until=row["lease_until"],
    )
