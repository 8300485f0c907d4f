"""Submitting remixes: `POST /v1/{slug}` (sync, image bytes) and `POST /v2/{slug}` (async).

A sync call is a submit followed by a wait on the same job, so both get the same limits,
credits and durability (`api.submission`, shared with the Ideogram and OpenAI wires).
"""

from __future__ import annotations

import base64
import time

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from openremix.api.openapi import REMIX_BODY_DOC, SUBMIT_RESPONSES, SYNC_RESPONSES
from openremix.api.request_body import read_submit_body
from openremix.api.responses import failed_body, submit_body
from openremix.api.state import AppState, app_state
from openremix.api.submission import Submission, admit, enqueue_remix, wait_finished
from openremix.contract.request import parse_remix_request
from openremix.jobs.model import ApiKey, Job, JobState
from openremix.media.storage import read_verified
from openremix.webhooks.request_fields import parse_webhook_fields

router = APIRouter(tags=["segmind"])


async def submit_job(request: Request, slug: str) -> tuple[Job, ApiKey]:
    """Authenticate, validate and enqueue a Segmind-wire body. Returns the job (an existing
    one on an idempotent replay) and the caller's key."""
    state, key = await admit(request, slug, "segmind")
    body = await read_submit_body(request, state.settings.max_body_bytes)
    remix_fields, webhook = parse_webhook_fields(
        body, allow_private=state.settings.allow_private_urls
    )
    req, warnings = parse_remix_request(remix_fields)
    job = await enqueue_remix(request, state, key, slug, Submission(req, warnings, webhook))
    return job, key


@router.post("/v2/{slug}", openapi_extra=REMIX_BODY_DOC, responses=SUBMIT_RESPONSES,
             summary="Submit a remix (async)")
async def submit_async(slug: str, request: Request) -> JSONResponse:
    job, _ = await submit_job(request, slug)
    return JSONResponse(submit_body(job, app_state(request).urls(request)))


@router.post("/v1/{slug}", openapi_extra=REMIX_BODY_DOC, responses=SYNC_RESPONSES,
             response_class=Response, summary="Run a remix (sync)")
async def run_sync(slug: str, request: Request) -> Response:
    state = app_state(request)
    started = time.monotonic()
    job, key = await submit_job(request, slug)
    done = await wait_finished(request, state, job, started)
    headers = {"x-request-id": job.request_id}
    if done.state is JobState.FAILED:
        return JSONResponse(failed_body(done), status_code=422, headers=headers)
    return await _image_response(state, done, key, headers)


async def _image_response(
    state: AppState, job: Job, key: ApiKey, headers: dict[str, str]
) -> Response:
    result = job.result or {}
    data = await run_in_threadpool(read_verified, state.storage, result["output_key"])
    fresh = await run_in_threadpool(state.store.get_api_key, key.key_id)
    remaining = (fresh or key).credits + (fresh or key).free_credits
    headers.update(
        {
            "x-generation-time": f"{result.get('inference_time', 0.0):.3f}",
            "x-seed-value": str(result.get("seed")),
            "x-cost": f"{job.cost:g}",
            "x-remaining-credits": f"{remaining:g}",
        }
    )
    params = job.params
    if params.get("base64"):
        body = {
            "image": base64.b64encode(data).decode("ascii"),
            "content_type": result.get("content_type"),
            "seed": result.get("seed"),
            "prompt": result.get("prompt"),
            "request_id": job.request_id,
        }
        return JSONResponse(body, headers=headers)
    return Response(data, media_type=result.get("content_type", "image/jpeg"), headers=headers)
