"""Cutting off slow clients: a request must arrive whole within a deadline, or its connection
is closed.

uvicorn bounds only the idle time between requests (`timeout_keep_alive`); a socket that
trickles its headers or its body a byte at a time, or connects and sends nothing, is held for
as long as the client likes, each one holding a connection slot. `read_deadline_protocol` is
uvicorn's h11 protocol with one timer per connection: armed when the connection opens and when
a new request starts arriving, disarmed once the request (headers and body) has been received,
and when it fires the connection is closed. A route still reading the body then sees the client
gone (`request_body` answers that with one log line). Time during which the server itself has
stopped reading (flow control: the app has not consumed the body yet) is not the client's
fault: the timer starts again instead.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger("openremix.api")

_RECEIVING = (h11.IDLE, h11.SEND_BODY)
"""The client's h11 states in which a request has started or may start but is not whole."""


class _ReadDeadlineProtocol(H11Protocol):
    read_timeout: float = 30.0
    """Seconds a request may take to arrive whole (set by `read_deadline_protocol`)."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._read_deadline: asyncio.TimerHandle | None = None
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state not in _RECEIVING:
            self._disarm()  # the request is whole (or the connection is ending)
        elif self._read_deadline is None:
            self._arm()  # the next request on a kept-alive connection started arriving

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._read_deadline = self.loop.call_later(self.read_timeout, self._on_deadline)

    def _disarm(self) -> None:
        if self._read_deadline is not None:
            self._read_deadline.cancel()
            self._read_deadline = None

    def _on_deadline(self) -> None:
        self._read_deadline = None
        if self.transport.is_closing() or self.conn.their_state not in _RECEIVING:
            return
        if self.flow.read_paused:  # the server stopped reading, not the client
            self._arm()
            return
        peer = f"{self.client[0]}:{self.client[1]}" if self.client else "a client"
        log.info("closed the connection of %s: no whole request within %g s", peer,
                 self.read_timeout)
        self.transport.close()


def read_deadline_protocol(read_timeout: float) -> type[Any]:
    """The uvicorn `http` protocol class that closes connections whose request has not arrived
    whole `read_timeout` seconds after the connection opened or the request began."""
    return type("ReadDeadlineProtocol", (_ReadDeadlineProtocol,),
                {"read_timeout": read_timeout})
