"""`Client` and `Job`: the blocking SDK. `AsyncClient` (`_async.py`) mirrors it line for line."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Literal, overload

import httpx
from typing_extensions import Unpack

from openremix.client._base import ClientBase, JobBase, check_sync_wait
from openremix.client._errors import APIError, ConnectionError
from openremix.client._inputs import ImageInput, RemixParams
from openremix.client._results import Credits, ProgressCallback, Result, Status, Waiter
from openremix.client._transport import DEFAULT_MAX_RETRIES, DEFAULT_TIMEOUT, SyncTransport
from openremix.contract.errors import OpenRemixError


class Job(JobBase[SyncTransport]):
    """A submitted remix, known by its `request_id`. Cheap to create: nothing is fetched until
    a method is called."""

    def status(self) -> Status:
        """The job's current status (a FAILED job is a status here, not an error)."""
        return self._status_from(self._transport.request(self._status_request()))

    def wait(self, timeout: float = 600.0, interval: float = 0.5,
             on_progress: ProgressCallback | None = None) -> Result:
        """Poll until the job ends; its Result. Raises InferenceFailed when it FAILED and
        InferenceTimeout when `timeout` seconds pass first (the job goes on)."""
        waiter = Waiter(self.request_id, timeout, interval, on_progress)
        while not waiter.observe(self.status()):
            self._transport.sleep(waiter.pause())
        return self._completed_result()

    def result(self) -> Result:
        """The Result; waits (with `wait()`'s defaults) if the job is still running."""
        body = self._completed_body(self._transport.request(self._result_request()))
        if body is None:
            return self.wait()
        return Result.from_body(body, self._transport.download)

    def cancel(self) -> Status:
        """Cancel the job (extension): a queued one never runs, a running one stops at its next
        step, and its credits are refunded. Returns the FAILED status ("cancelled"); a job that
        already COMPLETED raises Conflict."""
        return self._status_from(self._transport.request(self._cancel_request()))

    def events(self, timeout: float = 600.0) -> Iterator[Status]:
        """Follow the job as Server-Sent Events (extension): a Status per change of state,
        queue position or step, ending with the terminal one. A dropped connection is reopened
        with `Last-Event-ID`, so the stream goes on where it stopped (up to `max_retries`
        reopenings in a row); `timeout` bounds each wait for data, in seconds."""
        follower = self._event_follower(timeout)
        while True:
            error: OpenRemixError | None = None
            try:
                with self._transport.stream(follower.connection()) as response:
                    for line in response.iter_lines():
                        status = follower.feed(line)
                        if status is not None:
                            yield status
                            if status.done:
                                return
            except (ConnectionError, APIError) as exc:
                error = exc
            self._transport.sleep(follower.reconnect_delay(error))

    def _completed_result(self) -> Result:
        response = self._transport.request(self._result_request(failed_is_an_answer=False))
        return Result.from_body(response.json(), self._transport.download)


class Client(ClientBase[SyncTransport]):
    """The openremix API, blocking. Configured by arguments or the environment
    (`OPENREMIX_API_KEY`, `OPENREMIX_BASE_URL`, default http://127.0.0.1:8000; a trailing
    `/v1` is dropped, so the hosted API's base works too).

    `timeout` bounds each HTTP call in seconds; `max_retries` repeats calls answered 429, 502,
    503 or 504 or cut by the network, with exponential backoff that honours Retry-After.
    `http_client` lets you bring your own `httpx.Client` (proxies, transports); it is not closed
    by `close()`.
    """

    def __init__(
        self,
        api_key: str | None = None,
        base_url: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        *,
        default_headers: Mapping[str, str] | None = None,
        http_client: httpx.Client | None = None,
        _sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._transport = SyncTransport(api_key, base_url, timeout, max_retries,
                                        default_headers, http_client, _sleep)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the HTTP connections (results keep working: they reconnect to download)."""
        self._transport.close()

    @overload
    def remix(self, image: ImageInput, prompt: str, *, wait: Literal[True] = ...,
              sync: bool = ..., timeout: float = ..., on_progress: ProgressCallback | None = ...,
              idempotency_key: str | None = ..., validate: bool = ...,
              extra_body: Mapping[str, Any] | None = ...,
              **params: Unpack[RemixParams]) -> Result: ...

    @overload
    def remix(self, image: ImageInput, prompt: str, *, wait: Literal[False],
              sync: Literal[False] = ..., timeout: float = ...,
              on_progress: ProgressCallback | None = ..., idempotency_key: str | None = ...,
              validate: bool = ..., extra_body: Mapping[str, Any] | None = ...,
              **params: Unpack[RemixParams]) -> Job: ...

    def remix(
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
    ) -> Result | Job:
        """Remix `image` as `prompt` describes; the Result (a Job when `wait=False`).

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
            return Result.from_sync_response(self._transport.request(spec), request, spec.json)
        job = self.submit(image, prompt, idempotency_key=idempotency_key, validate=validate,
                          extra_body=extra_body, **params)
        return job.wait(timeout=timeout, on_progress=on_progress) if wait else job

    def submit(
        self,
        image: ImageInput,
        prompt: str,
        *,
        idempotency_key: str | None = None,
        validate: bool = True,
        extra_body: Mapping[str, Any] | None = None,
        **params: Unpack[RemixParams],
    ) -> Job:
        """Queue a remix (`POST /v2`) and return its Job at once. An `Idempotency-Key` is always
        sent (a fresh uuid4 unless given), so a retried submit never runs twice."""
        spec = self._submit_request(image, prompt, params, extra_body, validate, idempotency_key)
        return Job(self._transport, *self._submitted(self._transport.request(spec)))

    def job(self, request_id: str) -> Job:
        """The Job of an earlier submit (nothing is fetched yet)."""
        return Job(self._transport, request_id)

    def credits(self) -> Credits:
        """The calling key's balance."""
        return self._credits_from(self._transport.request(self._credits_request()))
