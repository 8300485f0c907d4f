"""The error envelopes: every error leaves the API in the envelope of the wire it came in on.

This is the one place where exceptions become HTTP statuses. Routes raise `ApiError` (or a
domain error from `contract`/`jobs`); the handlers installed by `install_error_handlers` turn
them into JSON. Framework defaults (`{"detail": ...}`, the 422 validation answer) never escape.

One envelope per wire, picked by the request's path (`wire_of`):

- Segmind's (every route but the two below): `{"error": "<message>", "request_id"?}`;
- Ideogram's (`/v1/ideogram-v3/...`, `/v1/ideogram-v4/...`): `{"error": "<message>"}`, the body
  of Ideogram's documented errors;
- OpenAI's (`/v1/images/...`): `{"error": {"message", "type", "param", "code"}}`, with OpenAI's
  statuses where they differ (credits run out: 429 `insufficient_quota`, not retried).
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
        field: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}
        self.body = body or {}
        self.field = field
        """The parameter at fault, where one is (OpenAI's envelope reports it as `param`)."""
        self.code = code
        """A machine-readable reason where a wire has one (OpenAI's `code`)."""


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
        return ApiError(400, exc.message, field=exc.field)
    if isinstance(exc, ScopeDenied):
        return ApiError(403, str(exc), code="permission_denied")
    if isinstance(exc, InsufficientCredits):
        return ApiError(406, str(exc), code="insufficient_credits")
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


SEGMIND, IDEOGRAM, OPENAI = "segmind", "ideogram", "openai"


def wire_of(path: str) -> str:
    """Which wire a request path belongs to, and so which error envelope it gets."""
    if path.startswith("/v1/images/"):
        return OPENAI
    if path.startswith(("/v1/ideogram-v3/", "/v1/ideogram-v4/")):
        return IDEOGRAM
    return SEGMIND


# OpenAI's error `type` and `code` by our status (its own statuses, except where remapped).
_OPENAI_KINDS: dict[int, tuple[str, str | None]] = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("permission_error", None),
    404: ("invalid_request_error", "not_found"),
    409: ("invalid_request_error", "conflict"),
    413: ("invalid_request_error", "request_too_large"),
    422: ("invalid_request_error", None),
    429: ("requests", "rate_limit_exceeded"),
    503: ("server_error", "overloaded"),
    504: ("server_error", "timeout"),
}


def openai_error_response(api_error: ApiError) -> JSONResponse:
    """`api_error` in OpenAI's envelope, at OpenAI's status."""
    status, headers = api_error.status, dict(api_error.headers)
    kind, code = _OPENAI_KINDS.get(status, ("server_error", None))
    if api_error.code == "insufficient_credits":
        # OpenAI says 429 insufficient_quota; x-should-retry stops its SDK from retrying it.
        status, kind, code = 429, "insufficient_quota", "insufficient_quota"
        headers["x-should-retry"] = "false"
    elif api_error.code:
        code = api_error.code
    body = {"error": {"message": api_error.message, "type": kind, "param": api_error.field,
                      "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)


def wire_error_response(
    request: Request, api_error: ApiError, *, with_extra: bool = True, with_id: bool = True
) -> JSONResponse:
    """`api_error` in the envelope of the wire `request` came in on (Segmind's carries the
    request id unless `with_id` is false, and the error's extra fields unless `with_extra` is)."""
    wire = wire_of(request.url.path)
    if wire == OPENAI:
        return openai_error_response(api_error)
    if wire == IDEOGRAM:
        return JSONResponse({"error": api_error.message}, status_code=api_error.status,
                            headers=api_error.headers)
    return error_response(
        api_error.status,
        api_error.message,
        request_id=_request_id(request) if with_id else None,
        headers=api_error.headers,
        extra=api_error.body if with_extra else None,
    )


def install_error_handlers(app: FastAPI) -> None:
    async def on_known(request: Request, exc: Exception) -> JSONResponse:
        api_error = to_api_error(exc)
        assert api_error is not None
        return wire_error_response(request, api_error)

    async def on_http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        messages = {404: "Not found", 405: "Method not allowed"}
        message = messages.get(exc.status_code) or str(exc.detail)
        error = ApiError(exc.status_code, message, headers=getattr(exc, "headers", None))
        return wire_error_response(request, error, with_id=False)

    async def on_validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        # Routes validate bodies themselves; this only catches path/query type errors.
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ())[1:]) or "request"
        error = ApiError(400, f"{where}: {first.get('msg', 'is invalid')}", field=where)
        return wire_error_response(request, error, with_id=False)

    async def on_crash(request: Request, exc: Exception) -> JSONResponse:
        api_error = to_api_error(exc)
        if api_error is not None:  # e.g. the job store is unavailable: 503, not a crash
            log.warning("%s: %s", api_error.message, exc,
                        extra={"request_id": _request_id(request)})
            return wire_error_response(request, api_error, with_extra=False)
        log.exception("unhandled error", extra={"request_id": _request_id(request)})
        return wire_error_response(request, ApiError(500, "Internal server error"))

    for cls in (ApiError, InvalidRequest, InputImageError, InsufficientCredits,
                IdempotencyConflict, QueueFull, OutputUnreadable, ScopeDenied):
        app.add_exception_handler(cls, on_known)
    app.add_exception_handler(StarletteHTTPException, on_http)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, on_validation)  # type: ignore[arg-type]
    for cls in database_error_types():  # answered here, not re-raised to the server's log
        app.add_exception_handler(cls, on_crash)
    app.add_exception_handler(Exception, on_crash)
