"""The PostgreSQL schema of `PostgresJobStore`: versioned migrations and how they are applied.

`MIGRATIONS[i]` takes a database from version `i` to `i + 1`; a later change appends a step and
never edits an old one. Applied versions are rows of `schema_migrations`. Every upgrade runs in
one transaction under a cluster-wide advisory lock, so replicas that start together apply each
step once (the others wait, then find nothing to do).

Columns are those of the SQLite store (same names, same Unix-seconds floats from the store's
clock), so rows convert with the same functions (`jobs.sql.rows`). JSON columns are `json`, not
`jsonb`: the text is kept as written and read back as is (`register_json_as_text`), and any JSON
the SQLite store takes is taken (`jsonb` refuses the character U+0000, which a prompt may carry).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.types.string import TextLoader

from openremix.jobs.postgres.credit_rule import credit_rule_sql
from openremix.jobs.postgres.enqueue_function import ENQUEUE_FUNCTION
from openremix.jobs.postgres.queue_schema import QUEUE_AT_SCALE

MIGRATION_LOCK = 0x6F70656E72656D78  # "openremx": the advisory lock id of schema upgrades
NOTIFY_CHANNEL = "openremix_jobs"
"""Versions 1 and 2 sent a notification on this channel whenever a job became claimable;
version 3 notifies one registered idle worker on its own channel instead (`queue_schema`)."""

_V1 = """
CREATE TABLE jobs (
    seq              bigint GENERATED ALWAYS AS IDENTITY,
    request_id       text PRIMARY KEY,
    model            text NOT NULL,
    api_key_id       text NOT NULL,
    params           json NOT NULL,
    state            text NOT NULL,
    cost             double precision NOT NULL,
    created_at       double precision NOT NULL,
    expires_at       double precision NOT NULL,
    attempts         integer NOT NULL DEFAULT 0,
    max_attempts     integer NOT NULL DEFAULT 3,
    priority         integer NOT NULL DEFAULT 0,
    started_at       double precision,
    finished_at      double precision,
    lease_owner      text,
    lease_expires_at double precision,
    result           json,
    error            text,
    progress_step    integer NOT NULL DEFAULT 0,
    progress_total   integer NOT NULL DEFAULT 0,
    idempotency_key  text,
    request_hash     text,
    extra            json NOT NULL DEFAULT '{}'
);
-- Claims walk this partial index in claim order; it only holds the (few) QUEUED rows.
CREATE INDEX jobs_claim ON jobs (priority DESC, created_at, seq) WHERE state = 'QUEUED';
CREATE INDEX jobs_expiry ON jobs (expires_at);
CREATE INDEX jobs_lease ON jobs (lease_expires_at) WHERE state = 'PROCESSING';
CREATE UNIQUE INDEX jobs_idempotency ON jobs (api_key_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

-- Wake idle workers (LISTEN openremix_jobs) whenever a transaction makes a job claimable: once
-- per inserting statement, and for each job put back in the queue.
CREATE FUNCTION openremix_notify_jobs() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('openremix_jobs', '');
    RETURN NULL;
END
$$;
CREATE TRIGGER jobs_notify_insert AFTER INSERT ON jobs
    FOR EACH STATEMENT EXECUTE FUNCTION openremix_notify_jobs();
CREATE TRIGGER jobs_notify_requeue AFTER UPDATE OF state ON jobs
    FOR EACH ROW WHEN (NEW.state = 'QUEUED' AND OLD.state <> 'QUEUED')
    EXECUTE FUNCTION openremix_notify_jobs();

CREATE TABLE api_keys (
    key_id       text PRIMARY KEY,
    key_hash     text NOT NULL UNIQUE,
    name         text NOT NULL,
    credits      double precision NOT NULL,
    free_credits double precision NOT NULL,
    created_at   double precision NOT NULL,
    revoked      boolean NOT NULL DEFAULT false
);

-- The webhook outbox: one row per message (at most one per job); a row is due while
-- `next_attempt_at` is set and not leased (`lease_until` in the past or NULL).
CREATE TABLE webhook_deliveries (
    seq              bigint GENERATED ALWAYS AS IDENTITY,
    delivery_id      text PRIMARY KEY,
    request_id       text NOT NULL UNIQUE,
    url              text NOT NULL,
    event            text NOT NULL,
    payload          text NOT NULL,
    attempts         integer NOT NULL DEFAULT 0,
    created_at       double precision NOT NULL,
    next_attempt_at  double precision,
    first_attempt_at double precision,
    delivered_at     double precision,
    last_error       text,
    lease_until      double precision
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at, seq)
    WHERE next_attempt_at IS NOT NULL;
CREATE INDEX webhook_deliveries_created ON webhook_deliveries (created_at);
"""

# Enqueue in one round trip: lock the key's row (serialising its submits), honour the
# idempotency key, check and debit credits (free first), insert. The same steps as
# `SQLiteJobStore.enqueue`. Outcomes: 'created' (with the debit per bucket), 'existing' /
# 'conflict' (with the earlier job's id), 'unknown_key', 'insufficient' (with the balance).
# (Version 1's text, kept as applied; version 2 replaces both functions.)
_V1_ENQUEUE = """
CREATE FUNCTION openremix_money(amount double precision) RETURNS double precision
    LANGUAGE sql IMMUTABLE AS $$ SELECT round(amount::numeric, 9)::double precision $$;

CREATE FUNCTION openremix_enqueue(
    p_request_id text, p_model text, p_api_key_id text, p_params json,
    p_cost double precision, p_now double precision, p_expires_at double precision,
    p_max_attempts integer, p_priority integer, p_idempotency_key text, p_request_hash text,
    OUT outcome text, OUT balance double precision, OUT debit_free double precision,
    OUT debit_paid double precision, OUT prior_id text
) LANGUAGE plpgsql AS $$
DECLARE
    key record;
    prior record;
BEGIN
    SELECT free_credits, credits INTO key FROM api_keys WHERE key_id = p_api_key_id
        FOR UPDATE;
    IF p_idempotency_key IS NOT NULL THEN
        SELECT request_id, request_hash, expires_at INTO prior FROM jobs
            WHERE api_key_id = p_api_key_id AND idempotency_key = p_idempotency_key;
        IF prior.request_id IS NOT NULL THEN
            IF prior.expires_at > p_now THEN
                outcome := CASE WHEN prior.request_hash IS NOT DISTINCT FROM p_request_hash
                                THEN 'existing' ELSE 'conflict' END;
                prior_id := prior.request_id;
                RETURN;
            END IF;
            -- expired, not yet swept: the idempotency key is free again
            UPDATE jobs SET idempotency_key = NULL WHERE request_id = prior.request_id;
        END IF;
    END IF;
    IF key IS NULL THEN
        outcome := 'unknown_key';
        RETURN;
    END IF;
    balance := openremix_money(key.free_credits + key.credits);
    IF balance < p_cost THEN
        outcome := 'insufficient';
        RETURN;
    END IF;
    debit_free := openremix_money(least(greatest(key.free_credits, 0), p_cost));
    debit_paid := openremix_money(p_cost - debit_free);
    UPDATE api_keys SET free_credits = openremix_money(key.free_credits - debit_free),
                        credits = openremix_money(key.credits - debit_paid)
        WHERE key_id = p_api_key_id;
    INSERT INTO jobs (request_id, model, api_key_id, params, state, cost, created_at,
                      expires_at, max_attempts, priority, idempotency_key, request_hash, extra)
        VALUES (p_request_id, p_model, p_api_key_id, p_params, 'QUEUED', p_cost, p_now,
                p_expires_at, p_max_attempts, p_priority, p_idempotency_key, p_request_hash,
                json_build_object('debit_free', debit_free, 'debit_paid', debit_paid));
    outcome := 'created';
END
$$;
"""

# Version 2: one credit rule and the queue limit. `openremix_money` and the debit
# (`openremix_split_debit`) are formatted from `jobs.accounts` (see `credit_rule`);
# `openremix_enqueue` calls the debit function instead of spelling the rule out, and checks
# `OPENREMIX_MAX_QUEUE_DEPTH` in the same transaction (see `enqueue_function`).
# Version 3: the queue at scale (issue 15): fair batch claims, one wake-up per job, shared rate
# limits, key scopes (see `queue_schema`).
MIGRATIONS: list[str] = [_V1 + _V1_ENQUEUE, credit_rule_sql() + ENQUEUE_FUNCTION, QUEUE_AT_SCALE]
"""`MIGRATIONS[i]` upgrades schema version `i` to `i + 1`."""

SCHEMA_VERSION = len(MIGRATIONS)
_CREATE_VERSIONS = (
    "CREATE TABLE IF NOT EXISTS schema_migrations ("
    " version integer PRIMARY KEY, applied_at double precision NOT NULL)"
)


class SchemaError(RuntimeError):
    """The database's schema is not one this openremix can use (newer, or not upgraded)."""


@dataclass
class SchemaStatus:
    version: int
    """Applied version (0: an empty database)."""
    known: int = SCHEMA_VERSION
    """The newest version this openremix knows."""

    @property
    def pending(self) -> int:
        return max(0, self.known - self.version)

    def describe(self) -> str:
        if self.version > self.known:
            return (f"schema version {self.version} is newer than this openremix knows "
                    f"({self.known}): upgrade openremix")
        if self.pending:
            return (f"schema version {self.version}; {self.pending} migration(s) pending "
                    f"(to {self.known}): run `openremix db upgrade`")
        return f"schema version {self.version} (up to date)"


def register_json_as_text(conn: psycopg.Connection) -> None:
    """Read `json` columns as their text, which `jobs.sql.rows.row_to_job` decodes."""
    conn.adapters.register_loader("json", TextLoader)


def schema_version(conn: psycopg.Connection) -> int:
    """The applied schema version; 0 when there is no `schema_migrations` table."""
    row = conn.execute(
        "SELECT to_regclass('schema_migrations') IS NOT NULL AS present", prepare=False
    ).fetchone()
    if not row or not _first(row):
        return 0
    row = conn.execute("SELECT COALESCE(MAX(version), 0) AS version FROM schema_migrations",
                       prepare=False).fetchone()
    return int(_first(row)) if row else 0


def _first(row: Any) -> Any:
    """The first value of a row, whichever row factory the connection uses."""
    return next(iter(row.values())) if isinstance(row, dict) else row[0]


def check_version(version: int, *, upgrading: bool) -> None:
    """Refuse a database newer than this code, and (unless upgrading) one not yet upgraded."""
    status = SchemaStatus(version)
    if version > SCHEMA_VERSION or (status.pending and not upgrading):
        raise SchemaError(f"PostgreSQL job store: {status.describe()}")


def upgrade(conn: psycopg.Connection) -> tuple[int, int]:
    """Apply the pending migrations; returns (version before, version after).

    Runs in one transaction under `MIGRATION_LOCK`, so concurrent callers apply each step once.
    `conn` must be in autocommit mode (outside a transaction).
    """
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        conn.execute(_CREATE_VERSIONS)
        before = schema_version(conn)
        check_version(before, upgrading=True)
        for version in range(before, SCHEMA_VERSION):
            conn.execute(MIGRATIONS[version])
            conn.execute(
                "INSERT INTO schema_migrations (version, applied_at) VALUES (%s, %s)",
                (version + 1, time.time()),
            )
    return before, SCHEMA_VERSION


def prepare(conn: psycopg.Connection, *, auto_migrate: bool) -> int:
    """At store start: upgrade (when allowed) or check the schema; returns its version."""
    version = schema_version(conn)
    if version != SCHEMA_VERSION and auto_migrate:
        return upgrade(conn)[1]
    check_version(version, upgrading=False)
    return version


def _connect(url: str) -> psycopg.Connection:
    return psycopg.connect(url, autocommit=True, connect_timeout=10)


def upgrade_database(url: str) -> tuple[int, int]:
    """`openremix db upgrade`: apply pending migrations; (version before, version after)."""
    with _connect(url) as conn:
        return upgrade(conn)


def database_status(url: str) -> SchemaStatus:
    """`openremix db status`: the applied version against the newest known one."""
    with _connect(url) as conn:
        return SchemaStatus(schema_version(conn))
