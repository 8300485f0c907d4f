"""The status body of a finished job: what `/status` answers and what its webhook carries.

Built here once, in `jobs` (not `api`), because the store writes it into the webhook outbox in
the same transaction that finishes the job, and nothing in `jobs` may import `api`.
"""

from __future__ import annotations

from typing import Any

from openremix.jobs.model import Job, JobState


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
