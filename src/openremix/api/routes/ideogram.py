"""Ideogram's own remix wire: `POST /v1/ideogram-v3/remix` and `POST /v1/ideogram-v4/remix`.

Synchronous, as Ideogram's are: a submit followed by a wait on the same job
(`api.submission`), so these share the queue, keys, credits, limits and metrics with every other
wire. Errors leave in Ideogram's envelope (`api.errors`).
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from openremix.api.errors import ApiError
from openremix.api.request_body import FormRules, read_wire_form
from openremix.api.responses import Urls
from openremix.api.submission import Submission, admit, enqueue_remix, wait_finished
from openremix.contract import ideogram
from openremix.contract.params import MODEL_SLUG
from openremix.jobs.model import Job, JobState
from openremix.jobs.params import result_images

router = APIRouter(tags=["ideogram"])
_FORM = FormRules(files=ideogram.FILE_FIELDS, lists=ideogram.LIST_FIELDS,
                  json_fields=ideogram.JSON_FIELDS, uploads_only=True)

_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ideogram.IdeogramError, "description": description}
    for status, description in {
        400: "Invalid input: the message names the field and the rule",
        401: "Missing or invalid Api-Key",
        406: "Insufficient credits",
        413: "Body too large",
        422: "The prompt or the image failed the safety check (refunded)",
        429: "Too many requests (see Retry-After)",
        500: "The remix failed",
        503: "Overloaded (see Retry-After)",
        504: "The remix outlived the sync deadline; it goes on (x-request-id)",
    }.items()
}


def created_at(job: Job) -> str:
    """When the request was created, as Ideogram writes it (ISO 8601, UTC)."""
    return datetime.fromtimestamp(job.created_at, tz=timezone.utc).isoformat()


def ideogram_body(job: Job, urls: Urls, version: ideogram.IdeogramVersion) -> dict[str, Any]:
    """The 200 answer of a COMPLETED job: every image, a blocked one without a URL."""
    result = job.result or {}
    data = [
        {
            "url": urls.output(image["output_key"]) if image.get("output_key") else None,
            "prompt": image.get("prompt", result.get("prompt")),
            "resolution": result.get("resolution"),
            "is_image_safe": bool(image.get("is_image_safe", True) and image.get("output_key")),
            "seed": image.get("seed", result.get("seed")),
            "style_type": result.get("style_type"),
        }
        for image in result_images(result)
    ]
    body: dict[str, Any] = {"created": created_at(job), "data": data}
    if version == "4":
        body["response_type"] = "url"
    return body


async def _remix(request: Request, version: ideogram.IdeogramVersion) -> JSONResponse:
    started = time.monotonic()
    state, key = await admit(request, MODEL_SLUG, "ideogram")
    form = await read_wire_form(request, state.settings.max_body_bytes, _FORM)
    remix, num_images = ideogram.parse_ideogram_remix(form, version)
    job = await enqueue_remix(request, state, key, MODEL_SLUG,
                              Submission(remix, [], num_images=num_images))
    done = await wait_finished(request, state, job, started,
                               state.settings.wire_sync_timeout_seconds)
    headers = {"x-request-id": done.request_id}
    if done.state is JobState.FAILED:
        if (done.result or {}).get("is_image_safe") is False:
            raise ApiError(422, f"{ideogram.SAFETY_ERROR}: {done.error}", headers=headers)
        raise ApiError(500, f"The remix failed: {done.error}", headers=headers)
    return JSONResponse(ideogram_body(done, state.urls(request), version), headers=headers)


@router.post(
    "/v1/ideogram-v3/remix",
    summary="Remix with Ideogram 3.0 (Ideogram's wire)",
    response_model=ideogram.IdeogramRemixResponse,
    responses=_ERRORS,
    openapi_extra={"requestBody": ideogram.form_schema("3")},
)
async def remix_v3(request: Request) -> JSONResponse:
    return await _remix(request, "3")


@router.post(
    "/v1/ideogram-v4/remix",
    summary="Remix with Ideogram 4.0 (Ideogram's wire; 2K resolutions)",
    response_model=ideogram.IdeogramRemixResponse,
    responses=_ERRORS,
    openapi_extra={"requestBody": ideogram.form_schema("4")},
)
async def remix_v4(request: Request) -> JSONResponse:
    return await _remix(request, "4")
