"""Submitting remixes: `POST /v1/{slug}` (sync, image bytes) and `POST /v2/{slug}` (async).

A sync call is a submit followed by a wait on the same job, so both get the same limits,
credits and durability.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import secrets
import time
import uuid
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from openremix.api.access import authenticate, require_scope
from openremix.api.errors import ApiError
from openremix.api.request_body import read_submit_body
from openremix.api.responses import failed_body, submit_body
from openremix.api.state import AppState, app_state
from openremix.contract.params import MODEL_SLUGS, SEED_MAX
from openremix.contract.request import RemixRequest, canonical_body, parse_remix_request
from openremix.jobs.model import ApiKey, Job, JobState, NewJob
from openremix.jobs.params import pack_job_params
from openremix.jobs.store import QueueFull
from openremix.media.storage import read_verified
from openremix.webhooks.request_fields import parse_webhook_fields

log = logging.getLogger("openremix.api")
router = APIRouter()
SEGMIND_WIRE = "segmind"
"""The wire name of these routes in key scopes (`wire:segmind`)."""

_REMIX_BODY_DOC = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": RemixRequest.model_json_schema()},
            "multipart/form-data": {"schema": {"type": "object"}},
        },
    }
}


def _check_inline_images(state: AppState, req: RemixRequest) -> None:
    """Reject bad inline images at submit (400) instead of failing the job later."""
    state.loader.check_inline(req.image, "image")
    state.loader.check_inline_references(req.style_reference_images)


def _queue_limit(state: AppState) -> int | None:
    """`OPENREMIX_MAX_QUEUE_DEPTH`, None when unlimited (0)."""
    limit = state.settings.max_queue_depth
    return limit if limit > 0 else None


async def _refuse_when_overloaded(state: AppState) -> None:
    """Refuse early (`QueueFull`: 503 with Retry-After), before the body is read, while the
    queue is already full. Only a shortcut: the enqueue checks the limit again in its
    transaction, which is what holds under concurrent submits."""
    limit = _queue_limit(state)
    if limit is None:
        return
    depth = await run_in_threadpool(state.store.queue_depth)
    if depth >= limit:
        raise QueueFull(depth, limit)


def _queue_timeout(request: Request) -> float | None:
    """Seconds from `x-queue-timeout`: how long the job may wait for a worker."""
    raw = request.headers.get("x-queue-timeout")
    if raw is None or not raw.strip():
        return None
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if not 0 < seconds <= 86400:
        raise ApiError(400, "x-queue-timeout: must be a number of seconds from 0 to 86400")
    return seconds


def _request_hash(slug: str, req: RemixRequest, webhook: dict[str, Any] | None) -> str:
    """What an Idempotency-Key is bound to: the model, the validated request and its webhook.

    Hashed after validation, so two bodies that say the same thing ("turbo" and "TURBO", another
    key order, `null` for "not given") replay the job rather than answer 409. Taken before the
    server picks a seed, so resending a body without one replays too.
    """
    canonical = "\n".join(
        (slug, canonical_body(req), json.dumps(webhook, sort_keys=True, separators=(",", ":")))
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


async def submit_job(request: Request, slug: str) -> tuple[Job, ApiKey]:
    """Authenticate, validate and enqueue. Returns the job (an existing one on an idempotent
    replay) and the caller's key."""
    state = app_state(request)
    request.state.request_id = str(uuid.uuid4())
    key = await authenticate(request, state.store)
    if slug not in MODEL_SLUGS:
        raise ApiError(404, f"Model {slug} not found")
    require_scope(key, wire=SEGMIND_WIRE, model=slug)
    await state.limiter.take(key.key_id)
    load_error = state.load_error()
    if load_error:
        raise ApiError(503, f"The model failed to load, so no remix can run: {load_error}",
                       headers={"Retry-After": "30"})
    await _refuse_when_overloaded(state)
    body = await read_submit_body(request, state.settings.max_body_bytes)
    remix_fields, webhook = parse_webhook_fields(
        body, allow_private=state.settings.allow_private_urls
    )
    req, warnings = parse_remix_request(remix_fields)
    idempotency_key = request.headers.get("idempotency-key") or None
    request_hash = _request_hash(slug, req, webhook) if idempotency_key else None
    if req.seed is None:
        req = req.model_copy(update={"seed": secrets.randbelow(SEED_MAX + 1)})
    await run_in_threadpool(_check_inline_images, state, req)
    queue_timeout = _queue_timeout(request)
    params = pack_job_params(
        req,
        warnings,
        queue_deadline=None if queue_timeout is None else time.time() + queue_timeout,
        # With the public base this request was answered with. The terminal status body a
        # webhook carries has no URLs today; stored so the outbox never needs the request.
        webhook=None if webhook is None else {**webhook, "base_url": state.urls(request).base},
    )
    new = NewJob(
        request_id=request.state.request_id,
        model=slug,
        api_key_id=key.key_id,
        params=params,
        cost=state.settings.cost_per_request,
        idempotency_key=idempotency_key,
        request_hash=request_hash,
        max_queue_depth=_queue_limit(state),
    )
    job, created = await run_in_threadpool(state.store.enqueue, new)
    request.state.request_id = job.request_id
    if created:
        state.on_enqueue()
        log.info("queued %s", slug, extra={"request_id": job.request_id})
    return job, key


@router.post("/v2/{slug}", openapi_extra=_REMIX_BODY_DOC, summary="Submit a remix (async)")
async def submit_async(slug: str, request: Request) -> JSONResponse:
    job, _ = await submit_job(request, slug)
    return JSONResponse(submit_body(job, app_state(request).urls(request)))


async def _wait_terminal(state: AppState, request_id: str, deadline: float) -> Job | None:
    delay = 0.02
    while True:
        job = await run_in_threadpool(state.store.get, request_id)
        if job is None or job.state.terminal:
            return job
        if time.monotonic() >= deadline:
            return job
        await asyncio.sleep(delay)
        delay = min(delay * 1.5, 0.05)


@router.post("/v1/{slug}", openapi_extra=_REMIX_BODY_DOC, summary="Run a remix (sync)")
async def run_sync(slug: str, request: Request) -> Response:
    state = app_state(request)
    started = time.monotonic()
    job, key = await submit_job(request, slug)
    deadline = started + state.settings.sync_timeout_seconds
    done = await _wait_terminal(state, job.request_id, deadline)
    headers = {"x-request-id": job.request_id}
    if done is None:
        raise ApiError(404, f"Request {job.request_id} not found")
    if not done.state.terminal:
        raise ApiError(
            504,
            f"The remix did not finish within {state.settings.sync_timeout_seconds:g} s; "
            f"it goes on: poll {state.urls(request).response(job.request_id)}",
            headers=headers,
        )
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
