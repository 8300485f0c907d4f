"""Reading requests and outputs, credits, and health."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request, Response
from fastapi.responses import FileResponse, JSONResponse
from starlette.concurrency import run_in_threadpool

from openremix.api.access import authenticate
from openremix.api.bodies import result_body, status_body
from openremix.api.errors import ApiError
from openremix.api.state import AppState, app_state
from openremix.jobs.model import Job, JobState
from openremix.worker import queue_timeout_error

router = APIRouter()

_CONTENT_TYPES = {"jpg": "image/jpeg", "jpeg": "image/jpeg", "png": "image/png",
                  "webp": "image/webp"}


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


@router.get("/v2/requests/{request_id}/status", summary="Light status of a request")
async def request_status(request_id: str, request: Request) -> JSONResponse:
    state, job, position = await owned_job(request, request_id)
    return _answer(job, status_body(job, state.urls(request), position))


@router.get("/v2/requests/{request_id}", summary="Full result of a request")
async def request_result(request_id: str, request: Request) -> JSONResponse:
    state, job, position = await owned_job(request, request_id)
    return _answer(job, result_body(job, state.urls(request), position))


@router.get("/v1/requests/{request_id}", summary="Legacy poll URL (same body as v2)")
async def request_result_v1(request_id: str, request: Request) -> JSONResponse:
    return await request_result(request_id, request)


@router.get("/outputs/{key}", summary="An output image (no key needed: the URL is unguessable)")
async def output_file(key: str, request: Request) -> Response:
    state = app_state(request)
    extension = key.rsplit(".", 1)[-1].lower() if "." in key else ""
    media_type = _CONTENT_TYPES.get(extension)
    if media_type is None:
        raise ApiError(404, "Output not found")
    try:
        path = state.storage.path_for(key)
    except ValueError:
        raise ApiError(404, "Output not found") from None
    headers = {"Cache-Control": "private, max-age=3600"}
    if path is not None:
        if not path.is_file():
            raise ApiError(404, "Output not found")
        return FileResponse(path, media_type=media_type, headers=headers)
    data = await run_in_threadpool(state.storage.get, key)
    if data is None:
        raise ApiError(404, "Output not found")
    return Response(data, media_type=media_type, headers=headers)


@router.get("/v1/get-user-credits", summary="Credits left for the calling key")
async def user_credits(request: Request) -> JSONResponse:
    key = await authenticate(request, app_state(request).store)
    return JSONResponse({"credits": key.credits, "free-credits": key.free_credits})


@router.get("/healthz", summary="Liveness")
async def healthz() -> JSONResponse:
    return JSONResponse({"status": "ok"})


@router.get("/readyz", summary="Readiness: the job store answers and the model is loaded")
async def readyz(request: Request) -> JSONResponse:
    state = app_state(request)
    try:
        depth = await run_in_threadpool(state.store.queue_depth)
    except Exception:
        return JSONResponse({"status": "unavailable", "error": "job store unreachable"},
                            status_code=503, headers={"Retry-After": "5"})
    reason = state.readiness()
    if reason:
        return JSONResponse({"status": "unavailable", "error": reason}, status_code=503,
                            headers={"Retry-After": "5"})
    return JSONResponse({"status": "ready", "queue_depth": depth})
