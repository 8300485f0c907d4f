"""Operations: liveness (`/healthz`), readiness (`/readyz`) and Prometheus metrics (`/metrics`)."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool

from openremix import metrics
from openremix.api.openapi import HEALTH_RESPONSES, READY_RESPONSES
from openremix.api.state import app_state
from openremix.jobs.store import JobStore
from openremix.jobs.store_wait import waiting_at_most

log = logging.getLogger("openremix.api")
READY_WAIT_SECONDS = 1.0
"""The most `/readyz` waits for the store: probes (Kubernetes: 1 s by default) give up soon,
and an answer of 503 in time says more than no answer."""
router = APIRouter(tags=["operations"])


@router.get("/healthz", responses=HEALTH_RESPONSES, summary="Liveness")
async def healthz() -> JSONResponse:
    return JSONResponse({"status": "ok"})


@router.get("/readyz", responses=READY_RESPONSES,
            summary="Readiness: the job store takes writes and the model is loaded")
async def readyz(request: Request) -> JSONResponse:
    state = app_state(request)
    try:
        depth = await run_in_threadpool(_probe_store, state.store)
    except Exception as exc:
        why = f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0][:200]}"
        return _unavailable(f"the job store cannot take writes: {why}")
    reason = state.readiness()
    if reason:
        return _unavailable(reason)
    return JSONResponse({"status": "ready", "queue_depth": depth})


def _probe_store(store: JobStore) -> int:
    """Whether the store takes a write, then the queue depth; each waits at most
    `READY_WAIT_SECONDS`. A write, not only a read: with SQLite locked by another process
    reads still work, but no job can be submitted or claimed."""
    with waiting_at_most(READY_WAIT_SECONDS):
        store.check_writable()
        return store.queue_depth()


def _unavailable(reason: str) -> JSONResponse:
    return JSONResponse({"status": "unavailable", "error": reason}, status_code=503,
                        headers={"Retry-After": "5"})


@router.get("/metrics", summary="Prometheus metrics", include_in_schema=False)
async def prometheus_metrics(request: Request) -> Response:
    store = app_state(request).store
    try:
        metrics.queue_depth.set(await run_in_threadpool(store.queue_depth))
        metrics.oldest_queued_age.set(await run_in_threadpool(store.oldest_queued_age))
    except Exception:
        log.exception("could not read queue gauges")
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
