"""HTTP for the SDK: configuration, and one request with retries.

The retry policy is pure (`retry_delay`, `_Config.settle`) and shared; `SyncTransport` and
`AsyncTransport` are the same short loop around it, one over `httpx.Client`, the other over
`httpx.AsyncClient`. Server-Sent Events are decoded in `_events.py`.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx

from openremix import __version__
from openremix.client._errors import (
    ConnectionError,
    InferenceTimeout,
    error_from_response,
    retry_after_seconds,
)

DEFAULT_BASE_URL = "http://127.0.0.1:8000"
DEFAULT_TIMEOUT = 60.0
DEFAULT_MAX_RETRIES = 2
RETRY_STATUSES = frozenset({429, 502, 503, 504})
MAX_RETRY_AFTER = 60.0
"""Longest Retry-After we honour, in seconds; a longer hint is capped to this."""
INITIAL_BACKOFF = 0.5
MAX_BACKOFF = 8.0


def resolve_base_url(base_url: str | None) -> str:
    """The server root: the argument, else `OPENREMIX_BASE_URL`, else the local default.

    A trailing `/v1` or `/v2` is dropped, so the hosted API's base (`.../v1`) works as is.
    """
    url = (base_url or os.environ.get("OPENREMIX_BASE_URL") or DEFAULT_BASE_URL).strip()
    url = url.rstrip("/")
    head, _, last = url.rpartition("/")
    if last in ("v1", "v2") and "://" in head:
        url = head
    return url


def resolve_api_key(api_key: str | None) -> str | None:
    """The API key: the argument, else `OPENREMIX_API_KEY`; None sends no key."""
    return api_key or os.environ.get("OPENREMIX_API_KEY") or None


def backoff_delay(attempt: int, retry_after: float | None = None) -> float:
    """Seconds to sleep before retry number `attempt + 1`: the server's Retry-After (capped at
    `MAX_RETRY_AFTER`) when given, else exponential backoff with full jitter."""
    if retry_after is not None:
        return min(retry_after, MAX_RETRY_AFTER)
    return random.uniform(0.0, min(MAX_BACKOFF, INITIAL_BACKOFF * 2**attempt))


@dataclass
class RequestSpec:
    """One API call. `accept` lists non-2xx statuses the caller reads itself (e.g. 422 bodies of
    FAILED jobs); `retry_statuses` those worth repeating; `auth` sends the API key."""

    method: str
    url: str
    json: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    timeout: float | None = None
    auth: bool = True
    accept: frozenset[int] = frozenset()
    retry_statuses: frozenset[int] = RETRY_STATUSES
    sync_remix: bool = False
    """`POST /v1`: its 504 means "the job goes on" (raised as `InferenceTimeout`), and a read
    timeout means the caller's own deadline passed; neither is retried."""


def retry_delay(
    spec: RequestSpec, attempt: int, max_retries: int, outcome: httpx.Response | Exception
) -> float | None:
    """Seconds to wait before trying `spec` again, or None to stop here."""
    if attempt >= max_retries:
        return None
    if isinstance(outcome, httpx.TransportError):
        if spec.sync_remix and isinstance(outcome, httpx.ReadTimeout):
            return None
        return backoff_delay(attempt)
    if isinstance(outcome, httpx.Response) and outcome.status_code in spec.retry_statuses:
        return backoff_delay(attempt, retry_after_seconds(outcome.headers))
    return None


def check_response(spec: RequestSpec, response: httpx.Response) -> httpx.Response:
    """The response when it is a success (or an accepted status), else its error raised."""
    if response.is_success or response.status_code in spec.accept:
        return response
    error = error_from_response(response)
    if spec.sync_remix and response.status_code == 504:
        raise InferenceTimeout(error.error, status=504, request_id=error.request_id,
                               body=error.body, headers=error.headers)
    raise error


def connection_error(spec: RequestSpec, exc: Exception) -> ConnectionError:
    kind = "timed out" if isinstance(exc, httpx.TimeoutException) else "failed"
    return ConnectionError(f"{spec.method} {spec.url} {kind}: {exc}")


class _Config:
    """What both transports share: base URL, headers, timeout and retry budget."""

    def __init__(
        self,
        api_key: str | None,
        base_url: str | None,
        timeout: float,
        max_retries: int,
        default_headers: Mapping[str, str] | None,
    ) -> None:
        if max_retries < 0:
            raise ValueError("max_retries must be 0 or more")
        self.api_key = resolve_api_key(api_key)
        self.base_url = resolve_base_url(base_url)
        self.timeout = timeout
        self.max_retries = max_retries
        self.default_headers = {"User-Agent": f"openremix-python/{__version__}",
                                **(default_headers or {})}

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    def headers(self, spec: RequestSpec) -> dict[str, str]:
        headers = dict(self.default_headers)
        if spec.auth and self.api_key:
            headers["x-api-key"] = self.api_key
        headers.update(spec.headers)
        return headers

    def http_timeout(self, spec: RequestSpec) -> httpx.Timeout:
        total = spec.timeout if spec.timeout is not None else self.timeout
        return httpx.Timeout(total, connect=min(total, 10.0))

    def send_args(self, spec: RequestSpec) -> dict[str, Any]:
        """What `httpx` needs to send `spec` (no body for a stream, which only GETs)."""
        return {"method": spec.method, "url": spec.url, "headers": self.headers(spec),
                "timeout": self.http_timeout(spec)}

    def settle(
        self, spec: RequestSpec, attempt: int, outcome: httpx.Response | Exception
    ) -> httpx.Response | float:
        """After attempt number `attempt`: the response to return, or the seconds to wait before
        the next attempt. Raises the error of a final failure."""
        delay = retry_delay(spec, attempt, self.max_retries, outcome)
        if delay is not None:
            return delay
        if isinstance(outcome, Exception):
            raise connection_error(spec, outcome) from outcome
        return check_response(spec, outcome)


class SyncTransport(_Config):
    """Requests over an `httpx.Client`, retried per `retry_delay`."""

    def __init__(
        self,
        api_key: str | None,
        base_url: str | None,
        timeout: float,
        max_retries: int,
        default_headers: Mapping[str, str] | None = None,
        http_client: httpx.Client | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__(api_key, base_url, timeout, max_retries, default_headers)
        self._own_http = http_client is None
        self.http = http_client or httpx.Client()
        self.sleep = sleep

    def request(self, spec: RequestSpec, http: httpx.Client | None = None) -> httpx.Response:
        """`spec`'s answer, retried per `retry_delay`; `http` overrides the client's pool."""
        attempt = 0
        while True:
            outcome: httpx.Response | Exception
            try:
                outcome = (http or self.http).request(**self.send_args(spec), json=spec.json)
            except httpx.TransportError as exc:
                outcome = exc
            step = self.settle(spec, attempt, outcome)
            if isinstance(step, httpx.Response):
                return step
            self.sleep(step)
            attempt += 1

    def download(self, url: str) -> bytes:
        """An output image (no API key: the URL may point at another host)."""
        spec = RequestSpec("GET", url, auth=False)
        if self.http.is_closed:  # a Result outlived its `with Client()` block
            with httpx.Client() as http:
                return self.request(spec, http).content
        return self.request(spec).content

    @contextmanager
    def stream(self, spec: RequestSpec) -> Iterator[httpx.Response]:
        """A streamed answer (no retries); errors are raised with their body read."""
        try:
            with self.http.stream(**self.send_args(spec)) as response:
                if not response.is_success:
                    response.read()
                    check_response(spec, response)
                yield response
        except httpx.TransportError as exc:
            raise connection_error(spec, exc) from exc

    def close(self) -> None:
        if self._own_http:
            self.http.close()


class AsyncTransport(_Config):
    """Requests over an `httpx.AsyncClient`, retried per `retry_delay`."""

    def __init__(
        self,
        api_key: str | None,
        base_url: str | None,
        timeout: float,
        max_retries: int,
        default_headers: Mapping[str, str] | None = None,
        http_client: httpx.AsyncClient | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        super().__init__(api_key, base_url, timeout, max_retries, default_headers)
        self._own_http = http_client is None
        self.http = http_client or httpx.AsyncClient()
        self.sleep = sleep

    async def request(self, spec: RequestSpec) -> httpx.Response:
        """`spec`'s answer, retried per `retry_delay`."""
        attempt = 0
        while True:
            outcome: httpx.Response | Exception
            try:
                outcome = await self.http.request(**self.send_args(spec), json=spec.json)
            except httpx.TransportError as exc:
                outcome = exc
            step = self.settle(spec, attempt, outcome)
            if isinstance(step, httpx.Response):
                return step
            await self.sleep(step)
            attempt += 1

    async def download(self, url: str) -> bytes:
        """An output image (no API key: the URL may point at another host)."""
        return (await self.request(RequestSpec("GET", url, auth=False))).content

    @asynccontextmanager
    async def stream(self, spec: RequestSpec) -> AsyncIterator[httpx.Response]:
        """A streamed answer (no retries); errors are raised with their body read."""
        try:
            async with self.http.stream(**self.send_args(spec)) as response:
                if not response.is_success:
                    await response.aread()
                    check_response(spec, response)
                yield response
        except httpx.TransportError as exc:
            raise connection_error(spec, exc) from exc

    async def close(self) -> None:
        if self._own_http:
            await self.http.aclose()
