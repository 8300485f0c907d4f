"""Follow a request as Server-Sent Events (an extension): `GET /v2/requests/{id}/events`.

The stream polls the store every `POLL_SECONDS`. While the job runs it sends `processing` on
each step change and refreshes it every `ETA_REFRESH_SECONDS` with the time left, measured
from the step changes it watched (`api.eta`). Where the engine stores live previews
(`media.previews`), it sends each new one as a `preview` event (a data URI and the step it
shows), read at most every `PREVIEW_READ_SECONDS`.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from openremix.api.eta import StepTimer
from openremix.api.openapi import EVENT_RESPONSES
from openremix.api.responses import status_body
from openremix.api.routes.requests import owned_job
from openremix.api.state import AppState
from openremix.jobs.model import Job, JobState
from openremix.media.previews import preview_key, preview_step

router = APIRouter(tags=["requests"])

KEEPALIVE_SECONDS = 15.0
POLL_SECONDS = 0.1
ETA_REFRESH_SECONDS = 0.5
PREVIEW_READ_SECONDS = 0.5

# Event ids grow through a request's life, so `Last-Event-ID` resumes after what was seen.
# (`preview` events carry no id: a preview is worth seeing again after a reconnection.)
_QUEUED_ID = 1
_PROCESSING_BASE_ID = 100
_TERMINAL_ID = 1_000_000


def _sse(event: str, event_id: int | None, data: dict[str, Any]) -> str:
    head = "" if event_id is None else f"id: {event_id}\n"
    return f"{head}event: {event}\ndata: {json.dumps(data)}\n\n"


def _progress_event(job: Job, position: int | None, timer: StepTimer,
                    now: float) -> tuple[str, int, dict]:
    if job.state is JobState.QUEUED:
        return "queued", _QUEUED_ID, {"status": "QUEUED", "request_id": job.request_id,
                                      "queue_position": position}
    step, total = job.progress_step, job.progress_total
    data: dict[str, Any] = {"status": "PROCESSING", "request_id": job.request_id,
                            "step": step, "total": total, "eta_seconds": None}
    left = timer.seconds_left(now)
    if left is not None:
        data["eta_seconds"] = max(round(left, 2), 0.01)  # never 0 while steps remain
    return "processing", _PROCESSING_BASE_ID + step, data


class _PreviewReader:
    """Reads a job's stored preview now and then; hands back each new one once."""

    def __init__(self, state: AppState, request_id: str) -> None:
        self.state, self.request_id = state, request_id
        self.key = preview_key(request_id)
        self.read_at = 0.0
        self.sent = ""

    async def new_preview(self, now: float) -> dict[str, Any] | None:
        # Previews off (the workers share these settings): no storage reads for nothing.
        if self.state.settings.preview_seconds <= 0 or now - self.read_at < PREVIEW_READ_SECONDS:
            return None
        self.read_at = now
        try:
            data = await run_in_threadpool(self.state.storage.get, self.key)
        except Exception:  # a preview is a courtesy: storage trouble only skips it
            return None
        if not data:
            return None
        digest = hashlib.sha256(data).hexdigest()
        shown = preview_step(data)
        if digest == self.sent or shown is None:
            return None
        self.sent = digest
        return {"status": "PROCESSING", "request_id": self.request_id, "step": shown[0],
                "total": shown[1],
                "image": "data:image/jpeg;base64," + base64.b64encode(data).decode()}


@router.get("/v2/requests/{request_id}/events", responses=EVENT_RESPONSES,
            response_class=StreamingResponse, summary="Server-Sent Events of a request")
async def request_events(request_id: str, request: Request) -> StreamingResponse:
    """`queued` (with queue position), `processing` (step/total, `eta_seconds`: null until
    measured), `preview` (a low-resolution JPEG data URI of a step, where the engine makes
    them), then one terminal event (`completed` or `failed`) whose data is the /status body.
    Resumable with Last-Event-ID."""
    state, job, _ = await owned_job(request, request_id)
    last_seen = request.headers.get("last-event-id", "")
    resume_after = int(last_seen) if last_seen.isdigit() else 0
    urls = state.urls(request)

    async def stream() -> AsyncIterator[str]:
        sent: tuple[str, int, Any] | None = None
        last_write = last_progress = time.monotonic()
        timer = StepTimer()
        previews = _PreviewReader(state, request_id)
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
            now = time.monotonic()
            position = None
            if current.state is JobState.QUEUED:
                position = await run_in_threadpool(state.store.queue_position, request_id)
            timer.observe(current.progress_step, current.progress_total, now)
            name, event_id, data = _progress_event(current, position, timer, now)
            marker = (name, event_id, data.get("queue_position"))
            refresh = (name == "processing" and data["eta_seconds"] is not None
                       and now - last_progress >= ETA_REFRESH_SECONDS)
            if (marker != sent or refresh) and event_id > resume_after:
                sent = marker
                last_write = last_progress = now
                yield _sse(name, event_id, data)
            elif now - last_write >= KEEPALIVE_SECONDS:
                last_write = now
                yield ": keep-alive\n\n"
            if current.state is JobState.PROCESSING:
                preview = await previews.new_preview(now)
                if preview is not None:
                    last_write = now
                    yield _sse("preview", None, preview)
            if await request.is_disconnected():
                return
            if state.drained():  # shutting down: the client resumes elsewhere (Last-Event-ID)
                yield "retry: 1000\n\n"
                return
            await asyncio.sleep(POLL_SECONDS)
            current = await run_in_threadpool(state.store.get, request_id)

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)
