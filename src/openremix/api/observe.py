"""`/metrics`, and a middleware that counts, times and logs every request with its id."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from fastapi import APIRouter, FastAPI, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool

from openremix import observability as metrics
from openremix.api.state import app_state

log = logging.getLogger("openremix.api")
router = APIRouter()


@router.get("/metrics", summary="Prometheus metrics", include_in_schema=False)
async def prometheus_metrics(request: Request) -> Response:
    store = app_state(request).store
    try:
        metrics.queue_depth.set(await run_in_threadpool(store.queue_depth))
        metrics.oldest_queued_age.set(await run_in_threadpool(store.oldest_queued_age))
    except Exception:
        log.exception("could not read queue gauges")
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


def _route_template(request: Request) -> str:
    route = request.scope.get("route")
    return getattr(route, "path", None) or "unmatched"


def install_request_observer(app: FastAPI) -> None:
    @app.middleware("http")
    async def observe(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        elapsed = time.perf_counter() - started
        route = _route_template(request)
        metrics.http_requests.labels(route, request.method, str(response.status_code)).inc()
        metrics.http_latency.labels(route).observe(elapsed)
        request_id = getattr(request.state, "request_id", None)
        log.info(
            "%s %s -> %d in %.3fs", request.method, route, response.status_code, elapsed,
            extra={"request_id": request_id},
        )
        return response
