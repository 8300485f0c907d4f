"""`AsyncClient` and `AsyncJob`: the asyncio SDK, the same surface as `Client` (`_sync.py`).

Results come back with their image already downloaded, so `Result.bytes`, `.image` and
`.save()` never block the event loop on the network.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, Literal, overload

import httpx
from typing_extensions import Unpack

from openremix.client._inputs import ImageInput, RemixParams, build_body
from openremix.client._results import (
    Credits,
    ProgressCallback,
    Result,
    Status,
    Waiter,
    failure,
)
from openremix.client._transport import (
    DEFAULT_MAX_RETRIES,
    DEFAULT_TIMEOUT,
    RETRY_STATUSES,
    AsyncTransport,
    RequestSpec,
    SSEDecoder,
)
from openremix.contract.params import MODEL_SLUG


class AsyncJob:
    """A submitted remix, known by its `request_id`. Cheap to create: nothing is fetched until
    a method is called."""

    def __init__(self, transport: AsyncTransport, request_id: str,
                 status_url: str | None = None, response_url: str | None = None) -> None:
        self._transport = transport
        self.request_id = request_id
        self.status_url = status_url or transport.url(f"/v2/requests/{request_id}/status")
        self.response_url = response_url or transport.url(f"/v2/requests/{request_id}")

    def __repr__(self) -> str:
        return f"AsyncJob(request_id={self.request_id!r})"

    async def status(self) -> Status:
        """The job's current status (a FAILED job is a status here, not an error)."""
        response = await self._transport.request(
            RequestSpec("GET", self.status_url, accept=frozenset({422})))
        return Status.from_body(response.json(), self.request_id)

    async def wait(self, timeout: float = 600.0, interval: float = 0.5,
                   on_progress: ProgressCallback | None = None) -> Result:
        """Poll until the job ends; its Result. Raises InferenceFailed when it FAILED and
        InferenceTimeout when `timeout` seconds pass first (the job goes on)."""
        waiter = Waiter(self.request_id, timeout, interval, on_progress)
        while not waiter.observe(await self.status()):
            await self._transport.sleep(waiter.pause())
        return await self._completed_result()

    async def result(self) -> Result:
        """The Result; waits (with `wait()`'s defaults) if the job is still running."""
        response = await self._transport.request(
            RequestSpec("GET", self.response_url, accept=frozenset({422})))
        status = Status.from_body(response.json(), self.request_id)
        if status.state == "FAILED":
            raise failure(status)
        if status.state != "COMPLETED":
            return await self.wait()
        return await _loaded(Result.from_body(response.json(), None), self._transport)

    async def cancel(self) -> Status:
        """Cancel the job (extension): a queued one never runs, a running one stops at its next
        step, and its credits are refunded. Returns the FAILED status ("cancelled"); a job that
        already COMPLETED raises Conflict."""
        response = await self._transport.request(
            RequestSpec("DELETE", self._transport.url(f"/v2/requests/{self.request_id}"),
                        accept=frozenset({422})))
        return Status.from_body(response.json(), self.request_id)

    async def events(self, timeout: float = 600.0) -> AsyncIterator[Status]:
        """Follow the job as Server-Sent Events (extension): a Status per change of state,
        queue position or step, ending with the terminal one."""
        spec = RequestSpec("GET", self._transport.url(f"/v2/requests/{self.request_id}/events"),
                           timeout=timeout)
        decoder = SSEDecoder()
        async with self._transport.stream(spec) as response:
            async for line in response.aiter_lines():
                event = decoder.feed(line)
                if event is not None:
                    status = Status.from_body(event[1], self.request_id, event[0])
                    yield status
                    if status.done:
                        return

    async def _completed_result(self) -> Result:
        response = await self._transport.request(RequestSpec("GET", self.response_url))
        return await _loaded(Result.from_body(response.json(), None), self._transport)


class AsyncClient:
    """The openremix API for asyncio: `Client`'s surface, awaited. Configured by arguments or
    the environment (`OPENREMIX_API_KEY`, `OPENREMIX_BASE_URL`, default http://127.0.0.1:8000;
    a trailing `/v1` is dropped, so the hosted API's base works too).

    `timeout` bounds each HTTP call in seconds; `max_retries` repeats calls answered 429, 502,
    503 or 504 or cut by the network, with exponential backoff that honours Retry-After.
    `http_client` lets you bring your own `httpx.AsyncClient` (proxies, transports); it is not
    closed by `close()`.
    """

    def __init__(
        self,
        api_key: str | None = None,
        base_url: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        *,
        default_headers: Mapping[str, str] | None = None,
        http_client: httpx.AsyncClient | None = None,
        _sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._transport = AsyncTransport(api_key, base_url, timeout, max_retries,
                                         default_headers, http_client, _sleep)

    @property
    def base_url(self) -> str:
        """The server root the client talks to (no trailing `/v1`)."""
        return self._transport.base_url

    @property
    def api_key(self) -> str | None:
        """The key sent as `x-api-key`."""
        return self._transport.api_key

    def __repr__(self) -> str:
        return f"AsyncClient(base_url={self.base_url!r})"

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the HTTP connections."""
        await self._transport.close()

    @overload
    async def remix(self, image: ImageInput, prompt: str, *, wait: Literal[True] = ...,
              sync: bool = ..., timeout: float = ..., on_progress: ProgressCallback | None = ...,
              idempotency_key: str | None = ..., validate: bool = ...,
              extra_body: Mapping[str, Any] | None = ...,
              **params: Unpack[RemixParams]) -> Result: ...

    @overload
    async def remix(self, image: ImageInput, prompt: str, *, wait: Literal[False],
              sync: Literal[False] = ..., timeout: float = ...,
              on_progress: ProgressCallback | None = ..., idempotency_key: str | None = ...,
              validate: bool = ..., extra_body: Mapping[str, Any] | None = ...,
              **params: Unpack[RemixParams]) -> AsyncJob: ...

    async def remix(
        self,
        image: ImageInput,
        prompt: str,
        *,
        wait: bool = True,
        sync: bool = False,
        timeout: float = 600.0,
        on_progress: ProgressCallback | None = None,
        idempotency_key: str | None = None,
        validate: bool = True,
        extra_body: Mapping[str, Any] | None = None,
        **params: Unpack[RemixParams],
    ) -> Result | AsyncJob:
        """Remix `image` as `prompt` describes; the Result (an AsyncJob when `wait=False`).

        By default the job is submitted and polled (`on_progress` sees each new Status), for at
        most `timeout` seconds. `sync=True` makes one `POST /v1` call that answers the image;
        its 504 (server deadline) is not retried but raised as InferenceTimeout carrying the
        request id, since the job goes on. Parameters are checked locally first (BadRequest,
        status None) unless `validate=False`; `extra_body` adds keys sent as they are.
        """
        if sync:
            if not wait:
                raise ValueError("sync=True always waits; use wait=False without sync")
            return await self._remix_sync(image, prompt, timeout, idempotency_key, validate,
                                    extra_body, params)
        job = await self.submit(image, prompt, idempotency_key=idempotency_key, validate=validate,
                          extra_body=extra_body, **params)
        return await job.wait(timeout=timeout, on_progress=on_progress) if wait else job

    async def submit(
        self,
        image: ImageInput,
        prompt: str,
        *,
        idempotency_key: str | None = None,
        validate: bool = True,
        extra_body: Mapping[str, Any] | None = None,
        **params: Unpack[RemixParams],
    ) -> AsyncJob:
        """Queue a remix (`POST /v2`) and return its AsyncJob at once. An `Idempotency-Key` is
        always sent (a fresh uuid4 unless given), so a retried submit never runs twice."""
        body, _ = build_body(image, prompt, params, extra_body, validate)
        response = await self._transport.request(RequestSpec(
            "POST", self._transport.url(f"/v2/{MODEL_SLUG}"), json=body,
            headers={"Idempotency-Key": idempotency_key or str(uuid.uuid4())}))
        data = response.json()
        return AsyncJob(self._transport, str(data["request_id"]), data.get("status_url"),
                   data.get("response_url"))

    def job(self, request_id: str) -> AsyncJob:
        """The AsyncJob of an earlier submit (nothing is fetched yet)."""
        return AsyncJob(self._transport, request_id)

    async def credits(self) -> Credits:
        """The calling key's balance."""
        response = await self._transport.request(
            RequestSpec("GET", self._transport.url("/v1/get-user-credits")))
        return Credits.from_body(response.json())

    async def _remix_sync(self, image: ImageInput, prompt: str, timeout: float,
                    idempotency_key: str | None, validate: bool,
                    extra_body: Mapping[str, Any] | None, params: Mapping[str, Any]) -> Result:
        body, request = build_body(image, prompt, params, extra_body, validate)
        response = await self._transport.request(RequestSpec(
            "POST", self._transport.url(f"/v1/{MODEL_SLUG}"), json=body, timeout=timeout,
            headers={"Idempotency-Key": idempotency_key or str(uuid.uuid4())},
            retry_statuses=RETRY_STATUSES - {504}, sync_remix=True))
        return Result.from_sync_response(response, request, body)


async def _loaded(result: Result, transport: AsyncTransport) -> Result:
    """`result` with its image downloaded (async results never fetch lazily)."""
    if result.output_url is not None:
        result._content = await transport.download(result.output_url)
    return result
