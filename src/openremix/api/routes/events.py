"""Follow a request as Server-Sent Events (an extension): `GET /v2/requests/{id}/events`."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from openremix.api.openapi import EVENT_RESPONSES
from openremix.api.responses import status_body
from openremix.api.routes.requests import owned_job
from openremix.jobs.model import Job, JobState

router = APIRouter()

KEEPALIVE_SECONDS = 15.0
POLL_SECONDS = 0.1

# Event ids grow through a request's life, so `Last-Event-ID` resumes after what was seen.
_QUEUED_ID = 1
_PROCESSING_BASE_ID = 100
_TERMINAL_ID = 1_000_000


def _sse(event: str, event_id: int, data: dict[str, Any]) -> str:
    return f"id: {event_id}\nevent: {event}\ndata: {json.dumps(data)}\n\n"


def _progress_event(job: Job, position: int | None, started: dict[str, float]) -> tuple[str, int,
                                                                                    dict]:
    if job.state is JobState.QUEUED:
        return "queued", _QUEUED_ID, {"status": "QUEUED", "request_id": job.request_id,
                                      "queue_position": position}
    step, total = job.progress_step, job.progress_total
    data: dict[str, Any] = {"status": "PROCESSING", "request_id": job.request_id,
                            "step": step, "total": total}
    if step and total:
        first = started.setdefault("at", time.monotonic())
        per_step = (time.monotonic() - first) / max(step, 1)
        data["eta_seconds"] = round(per_step * (total - step), 2)
    return "processing", _PROCESSING_BASE_ID + step, data


@router.get("/v2/requests/{request_id}/events", responses=EVENT_RESPONSES,
            response_class=StreamingResponse, summary="Server-Sent Events of a request")
async def request_events(request_id: str, request: Request) -> StreamingResponse:
    """`queued` (with queue position), `processing` (step/total, ETA), then one terminal event
    (`completed` or `failed`) whose data is the /status body. Resumable with Last-Event-ID."""
    state, job, _ = await owned_job(request, request_id)
    last_seen = request.headers.get("last-event-id", "")
    resume_after = int(last_seen) if last_seen.isdigit() else 0
    urls = state.urls(request)

    async def stream() -> AsyncIterator[str]:
        sent: tuple[str, Any] | None = None
        last_write = time.monotonic()
        started: dict[str, float] = {}
        current: Job | None = job
        while True:
            if current is None:
                yield _sse("failed", _TERMINAL_ID, {"status": "FAILED", "request_id": request_id,
                                                   "error": f"Request {request_id} expired"})
                return
            if current.state.terminal:
                name = "completed" if current.state is JobState.COMPLETED else "failed"
                yield _sse(name, _TERMINAL_ID, status_body(current, urls))
                return
            position = None
            if current.state is JobState.QUEUED:
                position = await run_in_threadpool(state.store.queue_position, request_id)
            name, event_id, data = _progress_event(current, position, started)
            marker = (name, event_id, data.get("queue_position"))
            if marker != sent and event_id > resume_after:
                sent = marker
                last_write = time.monotonic()
                yield _sse(name, event_id, data)
            elif time.monotonic() - last_write >= KEEPALIVE_SECONDS:
                last_write = time.monotonic()
                yield ": keep-alive\n\n"
            if await request.is_disconnected():
                return
            await asyncio.sleep(POLL_SECONDS)
            current = await run_in_threadpool(state.store.get, request_id)

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)
