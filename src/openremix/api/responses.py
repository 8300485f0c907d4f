"""The JSON bodies of CONTRACT.md §2, built from a `Job` and the public base URL.

Pure functions: no I/O, so every shape is unit-testable. One place builds every URL we hand out.
"""

from __future__ import annotations

from typing import Any

from openremix.jobs.model import Job, JobState
from openremix.jobs.params import result_images
from openremix.jobs.status_body import failed_body, job_metrics, terminal_status_body

__all__ = ["Urls", "failed_body", "result_body", "status_body", "submit_body"]


class Urls:
    """Absolute URLs for one public base (e.g. `http://127.0.0.1:8000`)."""

    def __init__(self, base: str) -> None:
        self.base = base.rstrip("/")

    def status(self, request_id: str) -> str:
        return f"{self.base}/v2/requests/{request_id}/status"

    def response(self, request_id: str) -> str:
        return f"{self.base}/v2/requests/{request_id}"

    def poll(self, request_id: str) -> str:
        return f"{self.base}/v1/requests/{request_id}"

    def output(self, key: str) -> str:
        return f"{self.base}/outputs/{key}"


def submit_body(job: Job, urls: Urls) -> dict[str, Any]:
    return {
        "request_id": job.request_id,
        "status": job.state.value,
        "poll_url": urls.poll(job.request_id),
        "status_url": urls.status(job.request_id),
        "response_url": urls.response(job.request_id),
    }


def _progress(job: Job, queue_position: int | None) -> dict[str, Any]:
    """Extension fields on a running job (ignored by hosted-API clients)."""
    extra: dict[str, Any] = {}
    if job.state is JobState.QUEUED and queue_position is not None:
        extra["queue_position"] = queue_position
    if job.state is JobState.PROCESSING and job.progress_total:
        extra["progress"] = {"step": job.progress_step, "total": job.progress_total}
    return extra


def status_body(job: Job, urls: Urls, queue_position: int | None = None) -> dict[str, Any]:
    """`GET /v2/requests/{id}/status`; a finished job's body is also its webhook payload."""
    if job.state.terminal:
        return terminal_status_body(job)
    return {
        "status": job.state.value,
        "request_id": job.request_id,
        "status_url": urls.status(job.request_id),
        "response_url": urls.response(job.request_id),
        "metrics": {},
        **_progress(job, queue_position),
    }


def output_file_name(job: Job, index: int = 0) -> str:
    """`<request_id>.<ext>` for a job's first image, `<request_id>-<n>.<ext>` for the others."""
    stored = [i for i in result_images(job.result) if i.get("output_key")]
    key = stored[index]["output_key"] if index < len(stored) else ""
    extension = key.rsplit(".", 1)[-1] if "." in key else "jpg"
    suffix = f"-{index + 1}" if index else ""
    return f"{job.request_id}{suffix}.{extension}"


def result_body(job: Job, urls: Urls, queue_position: int | None = None) -> dict[str, Any]:
    """`GET /v2/requests/{id}` (and the legacy `/v1/requests/{id}`)."""
    if job.state is JobState.FAILED:
        return failed_body(job)
    if job.state is not JobState.COMPLETED:
        return {"status": job.state.value, "request_id": job.request_id,
                **_progress(job, queue_position)}
    result = job.result or {}
    url = urls.output(result["output_key"])
    return {
        "status": "COMPLETED",
        "request_id": job.request_id,
        "error": None,
        "output": url,
        "images": [
            {
                "url": urls.output(image["output_key"]),
                "content_type": image.get("content_type", "image/jpeg"),
                "file_name": output_file_name(job, i),
                "file_size": image.get("file_size", 0),
            }
            for i, image in enumerate(
                image for image in result_images(result) if image.get("output_key")
            )
        ],
        "seed": result.get("seed"),
        "prompt": result.get("prompt"),
        "resolution": result.get("resolution"),
        "style_type": result.get("style_type"),
        "is_image_safe": result.get("is_image_safe", True),
        "metrics": job_metrics(job),
        "warnings": result.get("warnings", []),
        "engine": result.get("engine"),
        "details": result.get("details", {}),
    }
