"""The webhook outbox's records and rules: which event a finished job sends, and its message.

The store writes one message in the same transaction that finishes a job (its payload is the
job's terminal status body, `status_body.terminal_status_body`); `openremix.webhooks` sends them.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import Any

from openremix.jobs.model import Job, JobState
from openremix.jobs.params import WEBHOOK_KEY

EVENTS: dict[JobState, str] = {JobState.COMPLETED: "completed", JobState.FAILED: "failed"}
"""The event each terminal state sends."""

FINISHED_DELIVERY_MAX_AGE = 24 * 3600.0
"""A delivery older than this is deleted by `expire` whatever its state (a safety net for an
outbox no dispatcher drains; finished ones go with the retention)."""


def new_delivery_id() -> str:
    """A Standard Webhooks message id: "msg_" and 24 random hex digits."""
    return "msg_" + secrets.token_hex(12)


def encode_payload(body: dict[str, Any]) -> str:
    """JSON text exactly as the API's JSONResponse writes it, so a webhook body is byte for
    byte the `/status` body."""
    return json.dumps(body, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def webhook_event(job: Job) -> str | None:
    """The event to deliver for this (just finished) job, or None: no webhook, not wanted."""
    meta = job.params.get(WEBHOOK_KEY)
    event = EVENTS.get(job.state)
    if not isinstance(meta, dict) or not meta.get("url") or event is None:
        return None
    return event if event in meta.get("events", list(EVENTS.values())) else None


@dataclass
class WebhookDelivery:
    """One message in the webhook outbox: one POST, retried under the same `delivery_id`."""

    delivery_id: str
    """"msg_..." - sent as `webhook-id`, the same on every retry (receivers dedupe on it)."""
    request_id: str
    url: str
    event: str
    payload: str
    """The JSON body, as sent."""
    attempts: int
    created_at: float
    next_attempt_at: float | None
    """When it is due; None once delivered or given up."""
    first_attempt_at: float | None = None
    delivered_at: float | None = None
    last_error: str | None = None
    lease_until: float | None = None

    @property
    def pending(self) -> bool:
        return self.next_attempt_at is not None
