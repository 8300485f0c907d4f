"""Reading a request: its status and its full result (`/v2/requests/{id}[/status]`)."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from openremix.api.access import authenticate
from openremix.api.errors import ApiError
from openremix.api.openapi import RESULT_RESPONSES, STATUS_RESPONSES
from openremix.api.responses import result_body, status_body
from openremix.api.state import AppState, app_state
from openremix.jobs.model import Job, JobState
from openremix.jobs.params import queue_timeout_error

router = APIRouter(tags=["requests"])

async def owned_job(request: Request, request_id: str) -> tuple[AppState, Job, int | None]:
    """The caller's job and its queue position; another key's job is reported as not found."""
    state = app_state(request)
    request.state.request_id = request_id
    key = await authenticate(request, state.store)
    job = await run_in_threadpool(state.store.get, request_id)
    if job is None or job.api_key_id != key.key_id:
        raise ApiError(404, f"Request {request_id} not found")
    if job.state is JobState.QUEUED:
        expired = queue_timeout_error(job, time.time())
        if expired:  # fail it now rather than wait for a worker to notice
            await run_in_threadpool(state.store.fail, request_id, None, expired)
            job = await run_in_threadpool(state.store.get, request_id) or job
    position = None
    if job.state is JobState.QUEUED:
        position = await run_in_threadpool(state.store.queue_position, request_id)
    return state, job, position


def _answer(job: Job, body: dict) -> JSONResponse:
    return JSONResponse(body, status_code=422 if job.state is JobState.FAILED else 200)


@router.get("/v2/requests/{request_id}/status", responses=STATUS_RESPONSES,
            summary="Light status of a request")
async def request_status(request_id: str, request: Request) -> JSONResponse:
    state, job, position = await owned_job(request, request_id)
    return _answer(job, status_body(job, state.urls(request), position))


@router.get("/v2/requests/{request_id}", responses=RESULT_RESPONSES,
            summary="Full result of a request")
async def request_result(request_id: str, request: Request) -> JSONResponse:
    state, job, position = await owned_job(request, request_id)
    return _answer(job, result_body(job, state.urls(request), position))


@router.get("/v1/requests/{request_id}", responses=RESULT_RESPONSES,
            summary="Legacy poll URL (same body as v2)")
async def request_result_v1(request_id: str, request: Request) -> JSONResponse:
    return await request_result(request_id, request)
