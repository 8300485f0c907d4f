"""The OpenAI images API's edit wire: `POST /v1/images/edits`, so the `openai` SDK works.

Synchronous, as OpenAI's is: a submit followed by a wait on the same job (`api.submission`),
sharing the queue, keys, credits, limits and metrics with every other wire. Errors leave in
OpenAI's envelope (`api.errors`); a prompt or image the content filter blocks is OpenAI's
400 `content_policy_violation`.
"""

from __future__ import annotations

import base64
import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from openremix.api.errors import ApiError
from openremix.api.request_body import FormRules, read_wire_form
from openremix.api.responses import Urls
from openremix.api.state import AppState
from openremix.api.submission import Submission, admit, enqueue_remix, wait_finished
from openremix.contract import openai_images as wire
from openremix.contract.params import MODEL_SLUG, MODEL_SLUGS
from openremix.jobs.model import Job, JobState
from openremix.jobs.params import result_images
from openremix.media.storage import read_verified

router = APIRouter(tags=["openai"])
_FORM = FormRules(files=wire.FILE_FIELDS, lists=wire.LIST_FIELDS, json_fields=wire.JSON_FIELDS,
                  uploads_only=True)

_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": wire.OpenAIError, "description": description}
    for status, description in {
        400: "Invalid input (`param` names the field), or content_policy_violation",
        401: "Missing or invalid key (invalid_api_key)",
        404: "Unknown model (model_not_found)",
        413: "Body too large",
        429: "Rate limited (rate_limit_exceeded, see Retry-After) or out of credits "
             "(insufficient_quota)",
        500: "The remix failed (server_error)",
        503: "Overloaded (see Retry-After)",
        504: "The remix outlived the sync deadline; it goes on (x-request-id)",
    }.items()
}


async def _images(state: AppState, job: Job, response_format: str, urls: Urls) -> list[dict]:
    """The answer's `data`: each stored image as a URL or base64, as asked. Blocked images are
    left out (OpenAI has no place for them); the answer's `warnings` counts them."""
    result = job.result or {}
    data = []
    for image in result_images(result):
        key = image.get("output_key")
        if not key:
            continue
        entry: dict[str, Any] = {"revised_prompt": image.get("prompt", result.get("prompt"))}
        if response_format == "b64_json":
            raw = await run_in_threadpool(read_verified, state.storage, key)
            entry["b64_json"] = base64.b64encode(raw).decode("ascii")
        else:
            entry["url"] = urls.output(key)
        data.append(entry)
    return data


@router.post(
    "/v1/images/edits",
    summary="Edit images (the OpenAI images API's wire)",
    response_model=wire.OpenAIImagesResponse,
    responses=_ERRORS,
    openapi_extra={"requestBody": wire.form_schema()},
)
async def images_edit(request: Request) -> JSONResponse:
    started = time.monotonic()
    state, key = await admit(request, MODEL_SLUG, "openai")
    form = await read_wire_form(request, state.settings.max_body_bytes, _FORM)
    edit = wire.parse_openai_edit(form)
    if edit.model is not None and edit.model not in MODEL_SLUGS:
        raise ApiError(404, f"The model `{edit.model}` does not exist; this server serves "
                            + ", ".join(sorted(MODEL_SLUGS)),
                       field="model", code="model_not_found")
    job = await enqueue_remix(request, state, key, MODEL_SLUG,
                              Submission(edit.request, edit.warnings,
                                         num_images=edit.num_images))
    done = await wait_finished(request, state, job, started,
                               state.settings.wire_sync_timeout_seconds)
    headers = {"x-request-id": done.request_id}
    if done.state is JobState.FAILED:
        if (done.result or {}).get("is_image_safe") is False:
            raise ApiError(400, "Your request was rejected by the content filter: "
                                f"{done.error}", headers=headers, code=wire.CONTENT_POLICY_CODE)
        raise ApiError(500, f"The remix failed: {done.error}", headers=headers)
    data = await _images(state, done, edit.response_format, state.urls(request))
    warnings = list(edit.warnings)
    withheld = len(result_images(done.result)) - len(data)
    if withheld:
        warnings.append(f"{withheld} of {edit.num_images} images were withheld by the "
                        "content filter")
    body = {
        "created": int(done.created_at),
        "data": data,
        "size": (done.result or {}).get("resolution"),
        "output_format": edit.request.output_format,
        "warnings": warnings,
    }
    return JSONResponse(body, headers=headers)
