"""`Job.events()` / `AsyncJob.events()`: the event-stream decoder, and resuming a dropped stream.

The decoder follows the WHATWG rules (id, retry, event, multi-line data, comments). A dropped
connection is reopened with `Last-Event-ID`, after the server's `retry`; scripted here with an
httpx MockTransport (tests/test_extensions.py cuts a real server's stream).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from openremix.client import AsyncClient, Client, ConnectionError, NotFound, Status
from openremix.client._events import ServerSentEvent, SSEDecoder
from openremix.contract.errors import OpenRemixError

# --- the decoder ----------------------------------------------------------------------------


def decode(text: str, decoder: SSEDecoder | None = None) -> list[ServerSentEvent]:
    decoder = decoder or SSEDecoder()
    events = [decoder.feed(line) for line in text.split("\n")]
    return [event for event in events if event is not None]


def test_decoder_reads_event_names_multi_line_data_and_comments() -> None:
    events = decode(": keep-alive\n"
                    "event: processing\ndata: {\"a\":\ndata:  1}\n\n"
                    "data:plain\n\n"
                    "data\ndata: x\n\n")
    assert events == [ServerSentEvent("processing", '{"a":\n 1}'),
                      ServerSentEvent("message", "plain"),
                      ServerSentEvent("message", "\nx")]
    assert events[0].json() == {"a": 1}
    assert ServerSentEvent(data="[1]").json() == {"data": [1]}
    with pytest.raises(OpenRemixError, match="bad event data"):
        ServerSentEvent(data="{not json").json()


def test_decoder_keeps_the_last_event_id_and_the_retry_time() -> None:
    decoder = SSEDecoder()
    events = decode("retry: 2500\nid: 7\ndata: a\n\n"
                    "data: b\n\n"  # no id: the last one stands
                    "id: 8\n\n"  # an id alone moves the position without an event
                    "id: bad\0id\nretry: soon\ndata: c\n\n", decoder)
    assert [(e.id, e.data) for e in events] == [("7", "a"), ("7", "b"), ("8", "c")]
    assert decoder.last_event_id == "8"
    assert decoder.retry_ms == 2500
    assert decode("id\ndata: d\n\n", decoder)[0].id == ""  # an empty id resets it


def test_a_new_stream_drops_the_half_received_event_but_keeps_the_position() -> None:
    decoder = SSEDecoder()
    decode("\ufeffid: 101\nevent: processing\ndata: {}\n\nid: 102\nevent: processing\ndata: {",
           decoder)
    assert decoder.last_event_id == "101"
    decoder.new_stream()
    assert decode("data: {}\n\n", decoder) == [ServerSentEvent("message", "{}", "101")]


# --- resuming, scripted ---------------------------------------------------------------------

RID = "r-1"
EVENTS_URL = f"http://h/v2/requests/{RID}/events"


def sse(event_id: int, name: str, data: str) -> bytes:
    return f"id: {event_id}\nevent: {name}\ndata: {data}\n\n".encode()


FIRST = (b"retry: 250\n" + sse(1, "queued", '{"status": "QUEUED", "queue_position": 0}')
         + sse(101, "processing", '{"status": "PROCESSING", "step": 1, "total": 5}')
         + b"id: 102\nevent: processing\ndata: {")  # cut mid-event
REST = (sse(102, "processing", '{"status": "PROCESSING", "step": 2, "total": 5}')
        + sse(1000000, "completed", '{"status": "COMPLETED", "request_id": "r-1"}'))
SEEN = [("QUEUED", None), ("PROCESSING", 1), ("PROCESSING", 2), ("COMPLETED", None)]


class BrokenStream(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A body that stops with a network error after `data` (None: ends cleanly)."""

    def __init__(self, data: bytes, error: Exception | None) -> None:
        self.data, self.error = data, error

    def __iter__(self) -> Iterator[bytes]:
        yield self.data
        if self.error is not None:
            raise self.error

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self:
            yield chunk


def scripted_stream(answers: list[httpx.Response],
                    sent: list[httpx.Request]) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return answers.pop(0)
    return httpx.MockTransport(handler)


def stream_answer(data: bytes, error: Exception | None = None) -> httpx.Response:
    return httpx.Response(200, headers={"content-type": "text/event-stream"},
                          stream=BrokenStream(data, error))


def seen(statuses: list[Status]) -> list[tuple[str, int | None]]:
    return [(s.state, s.progress.step if s.progress else None) for s in statuses]


def test_a_dropped_stream_resumes_with_last_event_id_after_the_servers_retry() -> None:
    sent: list[httpx.Request] = []
    sleeps: list[float] = []
    answers = [stream_answer(FIRST, httpx.ReadError("connection reset")), stream_answer(REST)]
    http = httpx.Client(transport=scripted_stream(answers, sent))
    with Client(api_key="k", base_url="http://h", http_client=http, _sleep=sleeps.append) as sdk:
        statuses = list(sdk.job(RID).events())
    assert seen(statuses) == SEEN
    assert [r.url for r in sent] == [EVENTS_URL, EVENTS_URL]
    assert "last-event-id" not in sent[0].headers
    assert sent[1].headers["last-event-id"] == "101"
    assert sleeps == [0.25]


def test_the_async_client_resumes_the_same_way() -> None:
    sent: list[httpx.Request] = []
    sleeps: list[float] = []
    # The server closed the stream early this time: that is a drop too.
    answers = [stream_answer(FIRST), stream_answer(REST)]

    async def fake_sleep(seconds: float) -> None:
        sleeps.append(seconds)

    async def main() -> list[Status]:
        http = httpx.AsyncClient(transport=scripted_stream(answers, sent))
        async with AsyncClient(api_key="k", base_url="http://h", http_client=http,
                               _sleep=fake_sleep) as sdk:
            return [status async for status in sdk.job(RID).events()]

    assert seen(asyncio.run(main())) == SEEN
    assert sent[1].headers["last-event-id"] == "101"
    assert sleeps == [0.25]


def test_reconnecting_gives_up_after_max_retries_in_a_row_without_an_event() -> None:
    sent: list[httpx.Request] = []
    sleeps: list[float] = []
    answers = [
        stream_answer(FIRST, httpx.ReadError("reset")),
        stream_answer(sse(102, "processing", '{"status": "PROCESSING", "step": 2, "total": 5}'),
                      httpx.ReadError("reset")),
        stream_answer(b": nothing yet\n", httpx.ReadError("reset")),
    ]
    http = httpx.Client(transport=scripted_stream(answers, sent))
    sdk = Client(api_key="k", base_url="http://h", max_retries=1, http_client=http,
                 _sleep=sleeps.append)
    with pytest.raises(ConnectionError, match="reset"):
        list(sdk.job(RID).events())
    # Each drop after an event had the whole budget (one reopening); the last one had none.
    assert len(sent) == 3 and sleeps == [0.25, 0.25]
    assert [r.headers.get("last-event-id") for r in sent] == [None, "101", "102"]


def test_an_unknown_request_is_not_retried() -> None:
    sent: list[httpx.Request] = []
    sleeps: list[float] = []
    answers = [httpx.Response(404, json={"error": f"Request {RID} not found"})]
    http = httpx.Client(transport=scripted_stream(answers, sent))
    sdk = Client(api_key="k", base_url="http://h", http_client=http, _sleep=sleeps.append)
    with pytest.raises(NotFound):
        list(sdk.job(RID).events())
    assert len(sent) == 1 and sleeps == []


def test_a_preview_event_is_a_processing_status_and_moves_no_resume_position() -> None:
    """The server's `preview` events carry no id: a stream cut after one resumes after the
    last `processing` event, and the SDK reports the preview as a PROCESSING status whose raw
    body holds the image."""
    preview = ('{"status": "PROCESSING", "request_id": "r-1", "step": 1, "total": 5, '
               '"image": "data:image/jpeg;base64,/9j/"}')
    first = (sse(101, "processing", '{"status": "PROCESSING", "step": 1, "total": 5}')
             + f"event: preview\ndata: {preview}\n\n".encode())
    sent: list[httpx.Request] = []
    answers = [stream_answer(first, httpx.ReadError("connection reset")), stream_answer(REST)]
    http = httpx.Client(transport=scripted_stream(answers, sent))
    with Client(api_key="k", base_url="http://h", http_client=http, _sleep=lambda s: None) as sdk:
        statuses = list(sdk.job(RID).events())
    assert seen(statuses) == [("PROCESSING", 1), ("PROCESSING", 1), ("PROCESSING", 2),
                              ("COMPLETED", None)]
    assert statuses[1].raw["image"].startswith("data:image/jpeg;base64,")
    assert sent[1].headers["last-event-id"] == "101"
