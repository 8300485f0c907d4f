"""Rows <-> records, for both backends: the column lists of `jobs`, `api_keys` and
`webhook_deliveries`, and their conversion to `Job`, `ApiKey` and `WebhookDelivery`.

Both schemas use the same column names and the same Unix-seconds floats; JSON columns are read
and written as text (PostgreSQL's `json` columns are read as text, see
`postgres.schema.register_json_as_text`), so one converter serves both.
"""

from __future__ import annotations

import json
from typing import Any

from openremix.jobs.model import ApiKey, Job, JobState
from openremix.jobs.outbox import WebhookDelivery
from openremix.jobs.sql.dialect import Row

JOB_FIELDS = (
    "request_id", "model", "api_key_id", "params", "state", "cost", "created_at", "expires_at",
    "attempts", "max_attempts", "priority", "started_at", "finished_at", "lease_owner",
    "lease_expires_at", "result", "error", "progress_step", "progress_total", "idempotency_key",
    "request_hash", "extra",
)
_JOB_JSON_FIELDS = ("params", "result", "extra")
API_KEY_FIELDS = ("key_id", "key_hash", "name", "credits", "free_credits", "created_at",
                  "revoked", "scopes")
DELIVERY_FIELDS = (
    "delivery_id", "request_id", "url", "event", "payload", "attempts", "created_at",
    "next_attempt_at", "first_attempt_at", "delivered_at", "last_error", "lease_until",
)

JOB_COLUMNS = ", ".join(JOB_FIELDS)
API_KEY_COLUMNS = ", ".join(API_KEY_FIELDS)
DELIVERY_COLUMNS = ", ".join(DELIVERY_FIELDS)


def _insert(table: str, fields: tuple[str, ...]) -> str:
    return f"INSERT INTO {table} ({', '.join(fields)}) VALUES ({', '.join('?' for _ in fields)})"


INSERT_JOB = _insert("jobs", JOB_FIELDS)
INSERT_API_KEY = _insert("api_keys", API_KEY_FIELDS)


def job_values(job: Job) -> tuple[Any, ...]:
    """The values of `job` in `JOB_FIELDS` order, JSON fields encoded."""
    values = {name: getattr(job, name) for name in JOB_FIELDS}
    values["state"] = job.state.value
    for name in _JOB_JSON_FIELDS:
        values[name] = None if values[name] is None else json.dumps(values[name])
    return tuple(values.values())


def api_key_values(key: ApiKey) -> tuple[Any, ...]:
    """The values of `key` in `API_KEY_FIELDS` order (`revoked` a bool, which sqlite3 stores
    as 1/0 and psycopg as a boolean; `scopes` a JSON list, or NULL for "everything")."""
    values = {name: getattr(key, name) for name in API_KEY_FIELDS}
    values["scopes"] = scopes_json(key.scopes)
    return tuple(values.values())


def scopes_json(scopes: tuple[str, ...] | None) -> str | None:
    """How `api_keys.scopes` stores a key's scopes."""
    return None if scopes is None else json.dumps(list(scopes))


def row_to_job(row: Row) -> Job:
    """A `jobs` row (selected with `JOB_COLUMNS`) as a `Job`."""
    values = {name: row[name] for name in JOB_FIELDS}
    values["state"] = JobState(values["state"])
    for name in _JOB_JSON_FIELDS:
        values[name] = None if values[name] is None else json.loads(values[name])
    return Job(**values)


def row_to_api_key(row: Row) -> ApiKey:
    """An `api_keys` row (selected with `API_KEY_COLUMNS`) as an `ApiKey`."""
    values = {name: row[name] for name in API_KEY_FIELDS}
    values["revoked"] = bool(values["revoked"])
    scopes = values["scopes"]
    values["scopes"] = None if scopes is None else tuple(json.loads(scopes))
    return ApiKey(**values)


def row_to_delivery(row: Row) -> WebhookDelivery:
    """A `webhook_deliveries` row (selected with `DELIVERY_COLUMNS`) as a `WebhookDelivery`."""
    return WebhookDelivery(**{name: row[name] for name in DELIVERY_FIELDS})
