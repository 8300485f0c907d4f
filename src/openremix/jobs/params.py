"""What a stored job carries: the envelope of `Job.params`.

A job's params are the validated request (`RemixRequest.model_dump(mode="json")`, seed filled
in) plus a few keys the service adds at submit. This module is the one statement of those keys:
the API packs them (`pack_job_params`), the worker unpacks them (`unpack_job_params`), and the
store reads the webhook when it finishes a job (`outbox.webhook_event`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from openremix.contract.request import RemixRequest
from openremix.jobs.model import Job

WARNINGS_KEY = "warnings"
"""The submit-time warnings (unknown parameters that were ignored)."""
QUEUE_DEADLINE_KEY = "queue_deadline"
"""Unix time after which a job still waiting for a worker fails (from `x-queue-timeout`)."""
WEBHOOK_KEY = "webhook"
"""The job's webhook: `{"url", "events", "base_url"}`."""

_ENVELOPE_KEYS = (WARNINGS_KEY, QUEUE_DEADLINE_KEY, WEBHOOK_KEY)


@dataclass
class JobParams:
    """A stored job's params, unpacked."""

    request: RemixRequest
    warnings: list[str]
    queue_deadline: float | None = None
    webhook: dict[str, Any] | None = None


def pack_job_params(
    request: RemixRequest,
    warnings: list[str],
    *,
    queue_deadline: float | None = None,
    webhook: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The params a new job is stored with (JSON-ready)."""
    params: dict[str, Any] = {**request.model_dump(mode="json"), WARNINGS_KEY: list(warnings)}
    if queue_deadline is not None:
        params[QUEUE_DEADLINE_KEY] = queue_deadline
    if webhook is not None:
        params[WEBHOOK_KEY] = webhook
    return params


def unpack_job_params(params: dict[str, Any]) -> JobParams:
    """A stored job's params -> the validated request and the envelope around it."""
    data = dict(params)
    envelope = {key: data.pop(key, None) for key in _ENVELOPE_KEYS}
    deadline = envelope[QUEUE_DEADLINE_KEY]
    return JobParams(
        request=RemixRequest.model_validate(data),
        warnings=list(envelope[WARNINGS_KEY] or []),
        queue_deadline=None if deadline is None else float(deadline),
        webhook=envelope[WEBHOOK_KEY],
    )


def queue_timeout_error(job: Job, now: float) -> str | None:
    """The error for a job that waited past its `x-queue-timeout`, or None."""
    deadline = job.params.get(QUEUE_DEADLINE_KEY)
    if deadline is None or now <= float(deadline):
        return None
    waited = float(deadline) - job.created_at
    return f"queue timeout: no worker took the request within {waited:g} s (x-queue-timeout)"
