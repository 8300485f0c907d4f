"""What a stored job carries: the envelope of `Job.params`.

A job's params are the validated request (`RemixRequest.model_dump(mode="json")`, seed filled
in) plus a few keys the service adds at submit. This module is the one statement of those keys:
the API packs them (`pack_job_params`), the worker unpacks them (`unpack_job_params`), and the
store reads the webhook when it finishes a job (`outbox.webhook_event`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from openremix.contract.params import ALL_RESOLUTIONS, SEED_MAX
from openremix.contract.request import RemixRequest
from openremix.jobs.model import Job

WARNINGS_KEY = "warnings"
"""The submit-time warnings (unknown parameters that were ignored)."""
QUEUE_DEADLINE_KEY = "queue_deadline"
"""Unix time after which a job still waiting for a worker fails (from `x-queue-timeout`)."""
WEBHOOK_KEY = "webhook"
"""The job's webhook: `{"url", "events", "base_url"}`."""
NUM_IMAGES_KEY = "num_images"
"""How many images the job makes (stored only when more than one): seeds `seed, seed + 1, ...`."""

_ENVELOPE_KEYS = (WARNINGS_KEY, QUEUE_DEADLINE_KEY, WEBHOOK_KEY, NUM_IMAGES_KEY)


@dataclass
class JobParams:
    """A stored job's params, unpacked."""

    request: RemixRequest
    warnings: list[str]
    queue_deadline: float | None = None
    webhook: dict[str, Any] | None = None
    num_images: int = 1

    def image_requests(self) -> list[RemixRequest]:
        """One request per image: the same parameters with the seeds `seed, seed + 1, ...`
        (wrapping past the largest seed), so image i is the image a single request with seed
        `seed + i` makes."""
        seed = int(self.request.seed or 0)
        return [
            self.request.model_copy(update={"seed": (seed + i) % (SEED_MAX + 1)})
            for i in range(self.num_images)
        ]


def pack_job_params(
    request: RemixRequest,
    warnings: list[str],
    *,
    queue_deadline: float | None = None,
    webhook: dict[str, Any] | None = None,
    num_images: int = 1,
) -> dict[str, Any]:
    """The params a new job is stored with (JSON-ready)."""
    params: dict[str, Any] = {**request.model_dump(mode="json"), WARNINGS_KEY: list(warnings)}
    if queue_deadline is not None:
        params[QUEUE_DEADLINE_KEY] = queue_deadline
    if webhook is not None:
        params[WEBHOOK_KEY] = webhook
    if num_images > 1:
        params[NUM_IMAGES_KEY] = num_images
    return params


def unpack_job_params(params: dict[str, Any]) -> JobParams:
    """A stored job's params -> the validated request and the envelope around it."""
    data = dict(params)
    envelope = {key: data.pop(key, None) for key in _ENVELOPE_KEYS}
    deadline = envelope[QUEUE_DEADLINE_KEY]
    return JobParams(
        # Its wire validated the size at submit; any size a wire allows is valid here.
        request=RemixRequest.model_validate(data, context={"resolutions": ALL_RESOLUTIONS}),
        warnings=list(envelope[WARNINGS_KEY] or []),
        queue_deadline=None if deadline is None else float(deadline),
        webhook=envelope[WEBHOOK_KEY],
        num_images=int(envelope[NUM_IMAGES_KEY] or 1),
    )


def result_images(result: dict[str, Any] | None) -> list[dict[str, Any]]:
    """A finished job's images, one dict each (`seed`, `prompt`, `is_image_safe`, and for a
    stored one `output_key`, `content_type`, `file_size`). A result written before jobs made
    several images has only the single image's top-level fields: it is read as one image."""
    result = result or {}
    images = result.get("images")
    if isinstance(images, list):
        return [image for image in images if isinstance(image, dict)]
    if not result.get("output_key"):
        return []
    keys = ("seed", "prompt", "is_image_safe", "output_key", "content_type", "file_size")
    return [{key: result[key] for key in keys if key in result}]


def result_output_keys(result: dict[str, Any] | None) -> list[str]:
    """Every stored output of a result (for deleting them)."""
    keys = [image.get("output_key") for image in result_images(result)]
    top = (result or {}).get("output_key")
    return list(dict.fromkeys(k for k in [top, *keys] if k))


def queue_timeout_error(job: Job, now: float) -> str | None:
    """The error for a job that waited past its `x-queue-timeout`, or None."""
    deadline = job.params.get(QUEUE_DEADLINE_KEY)
    if deadline is None or now <= float(deadline):
        return None
    waited = float(deadline) - job.created_at
    return f"queue timeout: no worker took the request within {waited:g} s (x-queue-timeout)"
