"""Submitting a remix, on any wire: admit the caller, enqueue the job, wait for it.

Every wire (Segmind's `routes/remix.py`, Ideogram's `routes/ideogram.py`, OpenAI's
`routes/openai_images.py`) parses its own body into a `Submission` and calls the same three
steps, so all of them share one queue, keys, credits, limits, webhooks and metrics. A sync call
is a submit followed by a wait on the same job.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import secrets
import time
import uuid
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from openremix.api.access import authenticate, require_scope
from openremix.api.errors import ApiError
from openremix.api.state import AppState, app_state
from openremix.contract.params import MODEL_SLUGS, SEED_MAX
from openremix.contract.request import RemixRequest, canonical_body
from openremix.jobs.model import ApiKey, Job, NewJob
from openremix.jobs.params import pack_job_params
from openremix.jobs.store import QueueFull

log = logging.getLogger("openremix.api")


@dataclass
class Submission:
    """A validated remix from any wire: what `enqueue_remix` queues."""

    request: RemixRequest
    warnings: list[str]
    webhook: dict[str, Any] | None = None
    num_images: int = 1


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
        raise ApiError(400, "x-queue-timeout: must be a number of seconds from 0 to 86400",
                       field="x-queue-timeout")
    return seconds


def _request_hash(slug: str, submission: Submission) -> str:
    """What an Idempotency-Key is bound to: the model, the validated request, its webhook and
    (when more than one) its number of images.

    Hashed after validation, so two bodies that say the same thing ("turbo" and "TURBO", another
    key order, `null` for "not given") replay the job rather than answer 409. Taken before the
    server picks a seed, so resending a body without one replays too.
    """
    parts = [slug, canonical_body(submission.request),
             json.dumps(submission.webhook, sort_keys=True, separators=(",", ":"))]
    if submission.num_images > 1:
        parts.append(f"num_images={submission.num_images}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


async def admit(request: Request, slug: str, wire: str) -> tuple[AppState, ApiKey]:
    """Everything checked before the body is read: the key, the model, the key's scopes
    (`wire`: `segmind`, `ideogram` or `openai`), the rate limit, a model that failed to load,
    a full queue. Gives the request its id."""
    state = app_state(request)
    request.state.request_id = str(uuid.uuid4())
    key = await authenticate(request, state.store)
    if slug not in MODEL_SLUGS:
        raise ApiError(404, f"Model {slug} not found", field="model", code="model_not_found")
    require_scope(key, wire=wire, model=slug)
    await state.limiter.take(key.key_id)
    load_error = state.load_error()
    if load_error:
        raise ApiError(503, f"The model failed to load, so no remix can run: {load_error}",
                       headers={"Retry-After": "30"})
    await _refuse_when_overloaded(state)
    return state, key


async def enqueue_remix(
    request: Request, state: AppState, key: ApiKey, slug: str, submission: Submission
) -> Job:
    """Enqueue a validated submission, charging `cost_per_request` per image. Returns the job
    (an existing one on an idempotent replay)."""
    req = submission.request
    idempotency_key = request.headers.get("idempotency-key") or None
    request_hash = _request_hash(slug, submission) if idempotency_key else None
    if req.seed is None:
        req = req.model_copy(update={"seed": secrets.randbelow(SEED_MAX + 1)})
    await run_in_threadpool(_check_inline_images, state, req)
    queue_timeout = _queue_timeout(request)
    webhook = submission.webhook
    params = pack_job_params(
        req,
        submission.warnings,
        queue_deadline=None if queue_timeout is None else time.time() + queue_timeout,
        # With the public base this request was answered with. The terminal status body a
        # webhook carries has no URLs today; stored so the outbox never needs the request.
        webhook=None if webhook is None else {**webhook, "base_url": state.urls(request).base},
        num_images=submission.num_images,
    )
    new = NewJob(
        request_id=request.state.request_id,
        model=slug,
        api_key_id=key.key_id,
        params=params,
        cost=state.settings.cost_per_request * submission.num_images,
        idempotency_key=idempotency_key,
        request_hash=request_hash,
        max_queue_depth=_queue_limit(state),
    )
    job, created = await run_in_threadpool(state.store.enqueue, new)
    request.state.request_id = job.request_id
    if created:
        state.on_enqueue()
        log.info("queued %s", slug, extra={"request_id": job.request_id})
    return job


DRAIN_WAIT_SECONDS = 3.0
"""How long a sync call still waits for its job once the process begins to shut down (less
than the server's 10 s of graceful shutdown), before it answers 503 with its poll URL."""


async def _wait_terminal(state: AppState, request_id: str, deadline: float) -> Job | None:
    delay = 0.02
    while True:
        job = await run_in_threadpool(state.store.get, request_id)
        if job is None or job.state.terminal:
            return job
        if time.monotonic() >= deadline or state.drained(DRAIN_WAIT_SECONDS):
            return job
        await asyncio.sleep(delay)
        delay = min(delay * 1.5, 0.05)


async def wait_finished(
    request: Request, state: AppState, job: Job, started: float, timeout: float | None = None
) -> Job:
    """The job once COMPLETED or FAILED; 504 past `timeout` seconds from `started` (default
    `OPENREMIX_SYNC_TIMEOUT_SECONDS`; the job goes on, pollable by its id), 404 if it
    vanished meanwhile."""
    timeout = state.settings.sync_timeout_seconds if timeout is None else timeout
    deadline = started + timeout
    done = await _wait_terminal(state, job.request_id, deadline)
    headers = {"x-request-id": job.request_id}
    if done is None:
        raise ApiError(404, f"Request {job.request_id} not found", headers=headers)
    if not done.state.terminal and state.drained(DRAIN_WAIT_SECONDS):
        raise ApiError(
            503,
            "The server is shutting down; the remix goes on: "
            f"poll {state.urls(request).response(job.request_id)}",
            headers={**headers, "Retry-After": "1"},
        )
    if not done.state.terminal:
        raise ApiError(
            504,
            f"The remix did not finish within {timeout:g} s; "
            f"it goes on: poll {state.urls(request).response(job.request_id)}",
            headers=headers,
        )
    return done
