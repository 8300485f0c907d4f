"""Following a job's Server-Sent Events: the event-stream decoder and the resume rules.

`SSEDecoder` reads `text/event-stream` lines as the WHATWG HTML standard says ("Server-sent
events", interpreting an event stream): `event`, `data` (several lines join with "\\n"), `id`
(kept across events as the last event id), `retry` (the reconnection time), comments.
`EventFollower` holds what following a job needs across connections: it asks for the next
connection with `Last-Event-ID`, turns events into `Status`, and says how long to wait before
reconnecting (the server's `retry`, else backoff) or that it is time to give up. Free of I/O:
`Job.events` and `AsyncJob.events` only open the stream, feed lines, and sleep.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from openremix.client._errors import APIError, ConnectionError, retry_after_seconds
from openremix.client._results import Status
from openremix.client._transport import RETRY_STATUSES, RequestSpec, backoff_delay
from openremix.contract.errors import OpenRemixError


@dataclass(frozen=True)
class ServerSentEvent:
    """One dispatched event. `id` is the stream's last event id when it was dispatched (an
    event without an `id:` line inherits the one before it), "" when none was ever set."""

    event: str = "message"
    data: str = ""
    id: str = ""

    def json(self) -> dict[str, Any]:
        """`data` decoded as JSON; a non-object value comes back as {"data": value}."""
        try:
            value = json.loads(self.data)
        except ValueError as exc:
            raise OpenRemixError(f"bad event data from the server: {self.data[:200]!r}") from exc
        return value if isinstance(value, dict) else {"data": value}


class SSEDecoder:
    """Turns the lines of a `text/event-stream` into `ServerSentEvent`s, one line at a time.

    `last_event_id` and `retry_ms` outlive a connection; call `new_stream()` when the next one
    starts, so a half-received event of a dropped connection is never dispatched.
    """

    def __init__(self) -> None:
        self.last_event_id = ""
        """What a reconnection sends as `Last-Event-ID` ("" sends nothing)."""
        self.retry_ms: int | None = None
        """The reconnection time the server asked for (`retry:`), in milliseconds."""
        self.new_stream()

    def new_stream(self) -> None:
        """Forget the half-received event of the last connection. The id buffer starts from
        `last_event_id` (as browsers do), so an event without `id:` after a reconnection keeps
        the position rather than erase it."""
        self._event = ""
        self._data: list[str] = []
        self._id = self.last_event_id
        self._first_line = True

    def feed(self, line: str) -> ServerSentEvent | None:
        """One line (without its line ending) in; the event a blank line completes, else None."""
        if self._first_line:
            self._first_line = False
            line = line.removeprefix("\ufeff")  # a byte order mark may open the stream
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None  # a comment, e.g. a keep-alive
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        elif name == "id" and "\0" not in value:
            self._id = value
        elif name == "retry" and value.isascii() and value.isdigit():
            self.retry_ms = int(value)
        return None  # other fields, a NUL in an id and a retry that is not digits are ignored

    def _dispatch(self) -> ServerSentEvent | None:
        self.last_event_id = self._id
        event, data = self._event or "message", self._data
        self._event, self._data = "", []
        if not data:
            return None
        return ServerSentEvent(event, "\n".join(data), self.last_event_id)


class EventFollower:
    """The rules of `Job.events` across connections.

    Each connection asks with `Last-Event-ID` once an event carried an id, so the server
    resumes after it: nothing is repeated, and the states passed meanwhile are summed up by the
    current one. A connection that breaks, or ends before the terminal event, is reopened after
    the server's `retry` (else backoff with jitter); after `max_retries` reopenings in a row
    without an event, the error is raised.
    """

    def __init__(self, request_id: str, url: str, timeout: float, max_retries: int) -> None:
        self.request_id = request_id
        self.url = url
        self.timeout = timeout
        self.max_retries = max_retries
        self.decoder = SSEDecoder()
        self._failures = 0

    def connection(self) -> RequestSpec:
        """The request that opens the next connection."""
        self.decoder.new_stream()
        headers = {"Accept": "text/event-stream"}
        if self.decoder.last_event_id:
            headers["Last-Event-ID"] = self.decoder.last_event_id
        return RequestSpec("GET", self.url, headers=headers, timeout=self.timeout)

    def feed(self, line: str) -> Status | None:
        """One line of the stream in; the Status of the event it completes, else None."""
        event = self.decoder.feed(line)
        if event is None:
            return None
        self._failures = 0  # this connection worked: a later drop gets the whole budget again
        return Status.from_body(event.json(), self.request_id, event.event)

    def reconnect_delay(self, error: OpenRemixError | None) -> float:
        """Seconds to wait before reconnecting, after a connection ended early: broken
        (`error`, a ConnectionError or a retryable HTTP status) or closed by the server (None).
        Raises the error instead when it is final or the retries are spent."""
        if error is None:
            error = ConnectionError(
                f"the event stream of request {self.request_id} ended before the request did")
        retryable = isinstance(error, ConnectionError) or (
            isinstance(error, APIError) and error.status in RETRY_STATUSES)
        if not retryable or self._failures >= self.max_retries:
            raise error
        attempt, self._failures = self._failures, self._failures + 1
        hint = retry_after_seconds(error.headers) if isinstance(error, APIError) else None
        if hint is None and self.decoder.retry_ms is not None:
            hint = self.decoder.retry_ms / 1000
        return backoff_delay(attempt, hint)
