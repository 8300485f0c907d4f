"""What a webhook delivers: the terminal status body of a job, and the outbox record.

The API's `/status` answer for a finished job and the webhook payload are the same dict, built
here once. It lives in `jobs` (not `api`) because the store writes the payload into its outbox
in the same transaction that finishes the job, and nothing in `jobs` may import `api`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from openremix.jobs.model import Job, JobState

WEBHOOK_KEY = "webhook"
"""Key in a job's `params` holding its webhook: `{"url", "events", "base_url"}`."""

EVENTS: dict[JobState, str] = {JobState.COMPLETED: "completed", JobState.FAILED: "failed"}
"""The event each terminal state sends."""

FINISHED_DELIVERY_MAX_AGE = 24 * 3600.0
"""A delivery older than this is deleted by `expire` whatever its state (a safety net for an
outbox no dispatcher drains; finished ones go with the retention)."""


def job_metrics(job: Job) -> dict[str, Any]:
    """The `metrics` of a finished job (status, result and webhook bodies)."""
    result = job.result or {}
    return {
        "inference_time": result.get("inference_time", 0.0),
        "queue_time": round(job.queue_time or 0.0, 4),
        "total_time": round(job.total_time or 0.0, 4),
        "cost": job.cost,
    }


def failed_body(job: Job) -> dict[str, Any]:
    """FAILED, served with HTTP 422 on every request route."""
    result = job.result or {}
    body: dict[str, Any] = {
        "status": "FAILED",
        "request_id": job.request_id,
        "error": job.error or "failed",
        "metrics": job_metrics(job) if job.finished_at else {},
    }
    if result.get("is_image_safe") is False:
        body["is_image_safe"] = False
    return body


def terminal_status_body(job: Job) -> dict[str, Any]:
    """`GET /v2/requests/{id}/status` of a COMPLETED or FAILED job (it carries no URLs)."""
    if job.state is JobState.FAILED:
        return failed_body(job)
    if job.state is JobState.COMPLETED:
        result = job.result or {}
        return {
            "status": "COMPLETED",
            "request_id": job.request_id,
            "metrics": {"inference_time": result.get("inference_time", 0.0)},
        }
    raise ValueError(f"job {job.request_id} is {job.state.value}, not finished")


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
