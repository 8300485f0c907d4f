"""Cancel a request (an extension beyond the hosted API): `DELETE /v2/requests/{id}` or `POST
/v2/requests/{id}/cancel`. The job ends FAILED with error "cancelled"; its credits come back."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from openremix.api.errors import ApiError
from openremix.api.openapi import CANCEL_RESPONSES
from openremix.api.responses import status_body
from openremix.api.routes.requests import owned_job
from openremix.jobs.model import JobState

router = APIRouter(tags=["requests"])

CANCELLED = "cancelled"


async def _cancel(request_id: str, request: Request) -> JSONResponse:
    state, job, _ = await owned_job(request, request_id)
    if job.state is JobState.COMPLETED:
        raise ApiError(409, f"Request {request_id} is already COMPLETED; nothing to cancel")
    if not job.state.terminal:
        await run_in_threadpool(state.store.fail, request_id, None, CANCELLED)
        state.on_enqueue()  # wake idle workers' loops; a running one stops at its next step
    fresh = await run_in_threadpool(state.store.get, request_id)
    return JSONResponse(status_body(fresh or job, state.urls(request)))


@router.delete("/v2/requests/{request_id}", responses=CANCEL_RESPONSES,
               summary="Cancel a request (extension)")
async def cancel_request(request_id: str, request: Request) -> JSONResponse:
    """A queued job never reaches a worker; a running one stops at its next step. The
    request ends FAILED with error "cancelled" and its credits are refunded."""
    return await _cancel(request_id, request)


@router.post("/v2/requests/{request_id}/cancel", responses=CANCEL_RESPONSES,
             summary="Cancel a request (extension)")
async def cancel_request_post(request_id: str, request: Request) -> JSONResponse:
    return await _cancel(request_id, request)
