"""SQLite plumbing of `SQLiteJobStore`: connection settings, lock retries, the schema and its
migrations. (Rows convert to records in `jobs.sql.rows`, shared with PostgreSQL.)

The schema version lives in `PRAGMA user_version`. `MIGRATIONS[i]` takes a database from
version `i` to `i + 1`; a later change appends a step and never edits an old one.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from openremix.jobs.accounts import money
from openremix.jobs.store_wait import wait_limit

T = TypeVar("T")

BUSY_TIMEOUT_SECONDS = 10.0
"""How long SQLite itself waits for another connection's write lock."""
LOCKED_RETRY_SECONDS = 30.0
"""How long we keep retrying when "database is locked" surfaces anyway (e.g. WAL recovery).
Both are the most a call waits: a thread inside `store_wait.waiting_at_most` (the API's calls)
waits less."""


def connect(path: Path) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit), rows as `sqlite3.Row`.

    WAL is set once per file by the store; `synchronous = NORMAL` is safe with WAL (a power
    cut may lose the last commits, never corrupt) and saves an fsync per commit. The shared
    statements round balances with `openremix_money`: here, the credit rule's own `money`.
    """
    conn = sqlite3.connect(
        path,
        timeout=BUSY_TIMEOUT_SECONDS,
        isolation_level=None,
        check_same_thread=False,  # used by one thread; only `close()` crosses threads
    )
    conn.row_factory = sqlite3.Row
    set_busy_timeout(conn, BUSY_TIMEOUT_SECONDS)
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.create_function("openremix_money", 1, money, deterministic=True)
    return conn


def set_busy_timeout(conn: sqlite3.Connection, seconds: float) -> None:
    """How long SQLite waits on `conn` for another connection's lock before "locked"."""
    conn.execute(f"PRAGMA busy_timeout = {int(seconds * 1000):d}")


def retry_locked(fn: Callable[[], T]) -> T:
    """Call `fn`, again with backoff while it fails with "database is locked"/"busy", for
    `LOCKED_RETRY_SECONDS` or this thread's shorter `wait_limit`."""
    deadline = time.monotonic() + wait_limit(LOCKED_RETRY_SECONDS)
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

# Version 3 (issue 15): the fair claim walks keys with QUEUED jobs and counts each key's
# PROCESSING ones (`SQLiteJobStore.claim_batch`); keys may be limited to wires and models.
_V3 = """
CREATE INDEX jobs_key_state ON jobs (state, api_key_id, priority DESC, created_at);
ALTER TABLE api_keys ADD COLUMN scopes TEXT;
"""

MIGRATIONS: list[str] = [_V1, _V2, _V3]
"""`MIGRATIONS[i]` upgrades schema version `i` to `i + 1`."""

SCHEMA_VERSION = len(MIGRATIONS)


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
