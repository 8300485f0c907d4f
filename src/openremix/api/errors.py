"""The error envelope: every error leaves the API as `{"error": "<message>", ...}`.

This is the one place where exceptions become HTTP statuses. Routes raise `ApiError` (or a
domain error from `contract`/`jobs`); the handlers installed by `install_error_handlers` turn
them into JSON. Framework defaults (`{"detail": ...}`, the 422 validation answer) never escape.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from openremix import metrics
from openremix.contract.errors import InputImageError, InvalidRequest
from openremix.jobs.accounts import ScopeDenied
from openremix.jobs.store import (
    IdempotencyConflict,
    InsufficientCredits,
    QueueFull,
    database_error_types,
    store_unavailable,
)
from openremix.media.storage import OutputUnreadable

log = logging.getLogger("openremix.api")


class ApiError(Exception):
    """An error answer: status, message, optional extra body fields and headers."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        headers: dict[str, str] | None = None,
        body: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}
        self.body = body or {}


def error_response(
    status: int,
    message: str,
    *,
    request_id: str | None = None,
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {"error": message}
    if request_id:
        body["request_id"] = request_id
    if extra:
        body.update(extra)
    return JSONResponse(body, status_code=status, headers=headers)


def _request_id(request: Request) -> str | None:
    return getattr(request.state, "request_id", None)


def to_api_error(exc: Exception) -> ApiError | None:
    """Map a domain exception to its HTTP answer; None when it is not a known one."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, (InvalidRequest, InputImageError)):
        return ApiError(400, exc.message)
    if isinstance(exc, ScopeDenied):
        return ApiError(403, str(exc))
    if isinstance(exc, InsufficientCredits):
        return ApiError(406, str(exc))
    if isinstance(exc, IdempotencyConflict):
        return ApiError(
            409, "Idempotency-Key was already used with a different request body"
        )
    if isinstance(exc, QueueFull):
        return ApiError(503, str(exc), headers={"Retry-After": "5"})
    if isinstance(exc, OutputUnreadable):
        metrics.outputs_unreadable.labels(exc.reason).inc()
        if exc.reason == "missing":
            return ApiError(404, "Output not found: it is missing from storage")
        return ApiError(500, f"The {exc}; it is not served")
    if store_unavailable(exc):
        return ApiError(503, "The job store is unavailable right now; retry later",
                        headers={"Retry-After": "5"})
    return None


def install_error_handlers(app: FastAPI) -> None:
    async def on_known(request: Request, exc: Exception) -> JSONResponse:
        api_error = to_api_error(exc)
        assert api_error is not None
        return error_response(
            api_error.status,
            api_error.message,
            request_id=_request_id(request),
            headers=api_error.headers,
            extra=api_error.body,
        )

    async def on_http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        messages = {404: "Not found", 405: "Method not allowed"}
        message = messages.get(exc.status_code) or str(exc.detail)
        return error_response(exc.status_code, message, headers=getattr(exc, "headers", None))

    async def on_validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        # Routes validate bodies themselves; this only catches path/query type errors.
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ())[1:]) or "request"
        return error_response(400, f"{where}: {first.get('msg', 'is invalid')}")

    async def on_crash(request: Request, exc: Exception) -> JSONResponse:
        api_error = to_api_error(exc)
        if api_error is not None:  # e.g. the job store is unavailable: 503, not a crash
            log.warning("%s: %s", api_error.message, exc,
                        extra={"request_id": _request_id(request)})
            return error_response(api_error.status, api_error.message,
                                  request_id=_request_id(request), headers=api_error.headers)
        log.exception("unhandled error", extra={"request_id": _request_id(request)})
        return error_response(500, "Internal server error", request_id=_request_id(request))

    for cls in (ApiError, InvalidRequest, InputImageError, InsufficientCredits,
                IdempotencyConflict, QueueFull, OutputUnreadable, ScopeDenied):
        app.add_exception_handler(cls, on_known)
    app.add_exception_handler(StarletteHTTPException, on_http)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, on_validation)  # type: ignore[arg-type]
    for cls in database_error_types():  # answered here, not re-raised to the server's log
        app.add_exception_handler(cls, on_crash)
    app.add_exception_handler(Exception, on_crash)
