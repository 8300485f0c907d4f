"""What the blocking and asyncio SDKs share: every request they make and how its answer reads.

`Client`/`Job` (`_sync.py`) and `AsyncClient`/`AsyncJob` (`_async.py`) mirror each other, as in
openai-python; each of their methods builds its request here, sends it (or awaits it), and
reads the answer here, so the two differ only where they do I/O.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any, Generic, TypeVar

import httpx

from openremix.client._events import EventFollower
from openremix.client._inputs import ImageInput, build_body
from openremix.client._results import Credits, Status, failure
from openremix.client._transport import RETRY_STATUSES, AsyncTransport, RequestSpec, SyncTransport
from openremix.contract.params import MODEL_SLUG
from openremix.contract.request import RemixRequest

TransportT = TypeVar("TransportT", SyncTransport, AsyncTransport)

_FAILED_IS_AN_ANSWER = frozenset({422})
"""Job routes answer a FAILED job with 422; the job methods read it as a Status."""


class JobBase(Generic[TransportT]):
    """A submitted remix, known by its `request_id`. Cheap to create: nothing is fetched until
    a method is called."""

    def __init__(self, transport: TransportT, request_id: str,
                 status_url: str | None = None, response_url: str | None = None) -> None:
        self._transport = transport
        self.request_id = request_id
        self.status_url = status_url or transport.url(f"/v2/requests/{request_id}/status")
        self.response_url = response_url or transport.url(f"/v2/requests/{request_id}")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(request_id={self.request_id!r})"

    def _status_request(self) -> RequestSpec:
        return RequestSpec("GET", self.status_url, accept=_FAILED_IS_AN_ANSWER)

    def _result_request(self, failed_is_an_answer: bool = True) -> RequestSpec:
        accept = _FAILED_IS_AN_ANSWER if failed_is_an_answer else frozenset()
        return RequestSpec("GET", self.response_url, accept=accept)

    def _cancel_request(self) -> RequestSpec:
        return RequestSpec("DELETE", self._transport.url(f"/v2/requests/{self.request_id}"),
                           accept=_FAILED_IS_AN_ANSWER)

    def _status_from(self, response: httpx.Response) -> Status:
        return Status.from_body(response.json(), self.request_id)

    def _completed_body(self, response: httpx.Response) -> dict[str, Any] | None:
        """The body of a COMPLETED result answer; None while the job runs; InferenceFailed
        raised when it FAILED."""
        status = self._status_from(response)
        if status.state == "FAILED":
            raise failure(status)
        return status.raw if status.state == "COMPLETED" else None

    def _event_follower(self, timeout: float) -> EventFollower:
        url = self._transport.url(f"/v2/requests/{self.request_id}/events")
        return EventFollower(self.request_id, url, timeout, self._transport.max_retries)


class ClientBase(Generic[TransportT]):
    """The configuration read-outs and the requests of `Client` and `AsyncClient`."""

    _transport: TransportT

    @property
    def base_url(self) -> str:
        """The server root the client talks to (no trailing `/v1`)."""
        return self._transport.base_url

    @property
    def api_key(self) -> str | None:
        """The key sent as `x-api-key`."""
        return self._transport.api_key

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r})"

    def _submit_request(
        self, image: ImageInput, prompt: str, params: Mapping[str, Any],
        extra_body: Mapping[str, Any] | None, validate: bool, idempotency_key: str | None,
    ) -> RequestSpec:
        """`POST /v2`, always with an `Idempotency-Key` (a fresh uuid4 unless given), so a
        retried submit never runs twice."""
        body, _ = build_body(image, prompt, params, extra_body, validate)
        return RequestSpec("POST", self._transport.url(f"/v2/{MODEL_SLUG}"), json=body,
                           headers=_idempotency(idempotency_key))

    def _sync_remix_request(
        self, image: ImageInput, prompt: str, params: Mapping[str, Any],
        extra_body: Mapping[str, Any] | None, validate: bool, idempotency_key: str | None,
        timeout: float,
    ) -> tuple[RequestSpec, RemixRequest | None]:
        """`POST /v1`, and the validated request (None with `validate=False`) that the Result
        reads its resolution from. A 504 (the server's deadline: the job goes on) is not
        retried but raised as InferenceTimeout."""
        body, request = build_body(image, prompt, params, extra_body, validate)
        spec = RequestSpec("POST", self._transport.url(f"/v1/{MODEL_SLUG}"), json=body,
                           timeout=timeout, headers=_idempotency(idempotency_key),
                           retry_statuses=RETRY_STATUSES - {504}, sync_remix=True)
        return spec, request

    def _credits_request(self) -> RequestSpec:
        return RequestSpec("GET", self._transport.url("/v1/get-user-credits"))

    @staticmethod
    def _credits_from(response: httpx.Response) -> Credits:
        return Credits.from_body(response.json())

    @staticmethod
    def _submitted(response: httpx.Response) -> tuple[str, str | None, str | None]:
        """(request_id, status_url, response_url) of a submit answer."""
        data = response.json()
        return str(data["request_id"]), data.get("status_url"), data.get("response_url")


def check_sync_wait(sync: bool, wait: bool) -> None:
    if sync and not wait:
        raise ValueError("sync=True always waits; use wait=False without sync")


def _idempotency(key: str | None) -> dict[str, str]:
    return {"Idempotency-Key": key or str(uuid.uuid4())}
