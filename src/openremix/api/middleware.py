"""The middleware that counts, times and logs every request with its id (`/metrics` shows it)."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request, Response

from openremix import metrics

log = logging.getLogger("openremix.api")


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
