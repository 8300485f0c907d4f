"""The SDK's error tree, and the one function that turns an HTTP answer into one of its errors.

    OpenRemixError                 anything openremix raises on purpose (`openremix.contract`)
    ├── ConnectionError            the server could not be reached (after retries)
    └── APIError                   the server (or local validation) said no
        ├── BadRequest             400/413, or a parameter rejected before sending (status None)
        ├── AuthenticationError    401/403
        ├── NotFound               404
        ├── InsufficientCredits    406
        ├── Conflict               409 (e.g. an Idempotency-Key reused with another body)
        ├── InferenceFailed        422: the job ended FAILED
        ├── RateLimited            429 (after retries), with `retry_after`
        ├── ServerError            5xx (after retries)
        └── InferenceTimeout       the job did not finish in time; it goes on (poll request_id)
"""

from __future__ import annotations

import re
import time
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from openremix.contract.errors import OpenRemixError

_FIELD_RE = re.compile(r"\A([A-Za-z_][\w.\[\]-]*): ")


class ConnectionError(OpenRemixError):
    """The server could not be reached, or the connection broke (after all retries)."""


class APIError(OpenRemixError):
    """An error answer. `status` is the HTTP status (None for errors found before sending),
    `error` the server's message (the `error` key of its JSON body), `request_id` the request it
    concerns when known, `body` the decoded JSON body (or {})."""

    def __init__(
        self,
        error: str,
        *,
        status: int | None = None,
        request_id: str | None = None,
        body: dict[str, Any] | None = None,
        headers: httpx.Headers | None = None,
    ) -> None:
        self.status = status
        self.error = error
        self.request_id = request_id
        self.body = body or {}
        self.headers = headers or httpx.Headers()
        text = f"HTTP {status}: {error}" if status is not None else error
        if request_id and isinstance(self, (InferenceFailed, InferenceTimeout)):
            text += f" (request {request_id})"
        super().__init__(text)


class BadRequest(APIError):
    """A parameter or body broke a rule (400, or 413 for a body too large). `field` names the
    parameter when the message starts with one ("resolution: must be one of ...")."""

    @property
    def field(self) -> str | None:
        """The parameter the message names, e.g. "resolution" or "color_palette.members[0]"."""
        match = _FIELD_RE.match(self.error)
        return match.group(1) if match else None


class AuthenticationError(APIError):
    """The API key is missing or invalid (401), or not allowed this route or model (403)."""


class NotFound(APIError):
    """Unknown model, or a request id that does not exist, expired, or belongs to another key."""


class InsufficientCredits(APIError):
    """The key's balance does not cover the cost of the request (406)."""


class Conflict(APIError):
    """The request conflicts with the server's state (409), e.g. an Idempotency-Key reused with
    another body, or cancelling a request that already COMPLETED."""


class InferenceFailed(APIError):
    """The job ended FAILED (including content-safety blocks and cancellation); `error` says
    why and `request_id` names the job."""


class RateLimited(APIError):
    """Too many requests (429) even after retrying; `retry_after` is the server's hint in
    seconds, when it gave one."""

    @property
    def retry_after(self) -> float | None:
        """Seconds the server asked to wait (its Retry-After header), uncapped."""
        return retry_after_seconds(self.headers)


class ServerError(APIError):
    """The server failed (5xx) even after retrying."""


class InferenceTimeout(APIError):
    """The job did not finish in time: the wait deadline passed (status None) or a sync call
    outlived the server's deadline (504). The job goes on: `client.job(e.request_id).wait()`."""


_BY_STATUS: dict[int, type[APIError]] = {
    400: BadRequest,
    401: AuthenticationError,
    403: AuthenticationError,
    404: NotFound,
    406: InsufficientCredits,
    409: Conflict,
    413: BadRequest,
    422: InferenceFailed,
    429: RateLimited,
}


def retry_after_seconds(headers: httpx.Headers) -> float | None:
    """The Retry-After header in seconds (a number or an HTTP date); None when absent or bad."""
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError, IndexError):
            return None
    return max(seconds, 0.0) if seconds == seconds else None  # NaN is no hint


def json_body(response: httpx.Response) -> dict[str, Any]:
    """The response's JSON object, or {} when it is not one."""
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def error_from_response(response: httpx.Response) -> APIError:
    """The error for a non-2xx answer, carrying status, message, request id, body and headers."""
    status = response.status_code
    body = json_body(response)
    message = body.get("error") or body.get("detail")
    if not message:
        message = response.text.strip()[:300] or response.reason_phrase or "error"
    cls = _BY_STATUS.get(status) or (ServerError if status >= 500 else APIError)
    return cls(
        str(message),
        status=status,
        request_id=body.get("request_id") or response.headers.get("x-request-id"),
        body=body,
        headers=response.headers,
    )
