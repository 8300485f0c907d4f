"""`AsyncClient` and `AsyncJob`: the asyncio SDK, the same surface as `Client` (`_sync.py`).

Results come back with their image already downloaded, so `Result.bytes`, `.image` and
`.save()` never block the event loop on the network.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, Literal, overload

import httpx
from typing_extensions import Unpack

from openremix.client._base import ClientBase, JobBase, check_sync_wait
from openremix.client._errors import APIError, ConnectionError
from openremix.client._inputs import ImageInput, RemixParams
from openremix.client._results import Credits, ProgressCallback, Result, Status, Waiter
from openremix.client._transport import DEFAULT_MAX_RETRIES, DEFAULT_TIMEOUT, AsyncTransport
from openremix.contract.errors import OpenRemixError


class AsyncJob(JobBase[AsyncTransport]):
    """A submitted remix, known by its `request_id`. Cheap to create: nothing is fetched until
    a method is called."""

    async def status(self) -> Status:
        """The job's current status (a FAILED job is a status here, not an error)."""
        return self._status_from(await self._transport.request(self._status_request()))

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
        body = self._completed_body(await self._transport.request(self._result_request()))
        if body is None:
            return await self.wait()
        return await _loaded(Result.from_body(body, None), self._transport)

    async def cancel(self) -> Status:
        """Cancel the job (extension): a queued one never runs, a running one stops at its next
        step, and its credits are refunded. Returns the FAILED status ("cancelled"); a job that
        already COMPLETED raises Conflict."""
        return self._status_from(await self._transport.request(self._cancel_request()))

    async def events(self, timeout: float = 600.0) -> AsyncIterator[Status]:
        """Follow the job as Server-Sent Events (extension): a Status per change of state,
        queue position or step, ending with the terminal one. A dropped connection is reopened
        with `Last-Event-ID`, so the stream goes on where it stopped (up to `max_retries`
        reopenings in a row); `timeout` bounds each wait for data, in seconds."""
        follower = self._event_follower(timeout)
        while True:
            error: OpenRemixError | None = None
            try:
                async with self._transport.stream(follower.connection()) as response:
                    async for line in response.aiter_lines():
                        status = follower.feed(line)
                        if status is not None:
                            yield status
                            if status.done:
                                return
            except (ConnectionError, APIError) as exc:
                error = exc
            await self._transport.sleep(follower.reconnect_delay(error))

    async def _completed_result(self) -> Result:
        response = await self._transport.request(self._result_request(failed_is_an_answer=False))
        return await _loaded(Result.from_body(response.json(), None), self._transport)


class AsyncClient(ClientBase[AsyncTransport]):
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

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the HTTP connections."""
        await self._transport.close()

    @overload
    async def remix(self, image: ImageInput, prompt: str, *, wait: Literal[True] = ...,
                    sync: bool = ..., timeout: float = ...,
                    on_progress: ProgressCallback | None = ...,
                    idempotency_key: str | None = ..., validate: bool = ...,
                    extra_body: Mapping[str, Any] | None = ...,
                    **params: Unpack[RemixParams]) -> Result: ...

    @overload
    async def remix(self, image: ImageInput, prompt: str, *, wait: Literal[False],
                    sync: Literal[False] = ..., timeout: float = ...,
                    on_progress: ProgressCallback | None = ...,
                    idempotency_key: str | None = ..., validate: bool = ...,
                    extra_body: Mapping[str, Any] | None = ...,
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
        check_sync_wait(sync, wait)
        if sync:
            spec, request = self._sync_remix_request(image, prompt, params, extra_body, validate,
                                                     idempotency_key, timeout)
            response = await self._transport.request(spec)
            return Result.from_sync_response(response, request, spec.json)
        job = await self.submit(image, prompt, idempotency_key=idempotency_key,
                                validate=validate, extra_body=extra_body, **params)
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
        spec = self._submit_request(image, prompt, params, extra_body, validate, idempotency_key)
        return AsyncJob(self._transport, *self._submitted(await self._transport.request(spec)))

    def job(self, request_id: str) -> AsyncJob:
        """The AsyncJob of an earlier submit (nothing is fetched yet)."""
        return AsyncJob(self._transport, request_id)

    async def credits(self) -> Credits:
        """The calling key's balance."""
        return self._credits_from(await self._transport.request(self._credits_request()))


async def _loaded(result: Result, transport: AsyncTransport) -> Result:
    """`result` with its image downloaded (async results never fetch lazily)."""
    if result.output_url is not None:
        result._content = await transport.download(result.output_url)
    return result
