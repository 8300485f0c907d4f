"""Slow clients are cut off: a request that does not arrive whole within
`OPENREMIX_REQUEST_READ_TIMEOUT_SECONDS` loses its connection (real sockets on loopback)."""

from __future__ import annotations

import socket
import time
from typing import Any

import httpx
import pytest

from tests.support.servers import TEST_KEY

READ_TIMEOUT = 1.0
GIVE_UP = 8.0  # without a deadline the server would hold these sockets for as long as asked

HEADERS = (f"POST /v2/ideogram-3-remix HTTP/1.1\r\nHost: x\r\nx-api-key: {TEST_KEY}\r\n"
           "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n")


@pytest.fixture
def slow_server(start_process):
    return start_process(env={"OPENREMIX_WORKERS": "0",
                              "OPENREMIX_REQUEST_READ_TIMEOUT_SECONDS": str(READ_TIMEOUT)})


def _seconds_held(port: int, opening: str, trickle: bytes) -> float:
    """Send `opening`, then one byte of `trickle` every 0.2 s; seconds until the server closed
    the connection (GIVE_UP when it never did)."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port)) as conn:
        conn.settimeout(0.2)
        conn.sendall(opening.encode())
        while time.monotonic() - started < GIVE_UP:
            try:
                if conn.recv(4096) == b"":
                    break
            except TimeoutError:
                pass
            except ConnectionError:
                break
            try:
                conn.sendall(trickle)
            except OSError:
                break
        return time.monotonic() - started


@pytest.mark.parametrize(("opening", "trickle"), [
    ("", b""),  # connects and sends nothing
    ("POST /v2/ideogram-3-remix HTTP/1.1\r\nHost: x\r\n", b"x"),  # headers, a byte at a time
    (HEADERS, b" "),  # the body, a byte at a time
], ids=["silent", "trickled-headers", "trickled-body"])
def test_a_request_that_does_not_arrive_in_time_is_cut_off(slow_server, opening, trickle):
    held = _seconds_held(slow_server.port, opening, trickle)
    assert held < READ_TIMEOUT + 2.0, f"held for {held:.1f} s"


TRICKLERS = 100
"""As many slow sockets as the fault run held open for 20 s (issue 13)."""


def _trickle_until_closed(sockets: list[socket.socket], between: Any) -> float:
    """Send one byte on every open socket each 0.2 s, calling `between()` each round, until the
    server has closed them all (or GIVE_UP); the seconds that took."""
    started = time.monotonic()
    open_sockets = set(sockets)
    while open_sockets and time.monotonic() - started < GIVE_UP:
        for conn in list(open_sockets):
            try:
                closed = conn.recv(4096) == b""
            except BlockingIOError:
                closed = False
            except ConnectionError:  # a reset is closed too
                closed = True
            if not closed:
                try:
                    conn.send(b" ")
                except OSError:
                    closed = True
            if closed:
                open_sockets.discard(conn)
        between()
        time.sleep(0.2)
    held = time.monotonic() - started
    assert not open_sockets, f"{len(open_sockets)} of {len(sockets)} still open after {held:.1f} s"
    return held


def test_100_trickling_clients_are_cut_off_while_others_are_served(slow_server, astronaut_uri):
    """Half trickle their headers, half their bodies, a byte every 0.2 s: every one is cut off
    within the read timeout, and normal requests are answered all the while."""
    sockets = [socket.create_connection(("127.0.0.1", slow_server.port))
               for _ in range(TRICKLERS)]
    for i, conn in enumerate(sockets):
        conn.sendall(HEADERS.encode() + b'{"image": ' if i % 2 else
                     b"POST /v2/ideogram-3-remix HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        conn.setblocking(False)
    served: list[int] = []

    def normal_request() -> None:
        answer = httpx.post(f"{slow_server.base_url}/v2/ideogram-3-remix",
                            headers={"x-api-key": TEST_KEY}, timeout=10,
                            json={"image": astronaut_uri, "prompt": "x"})
        served.append(answer.status_code)

    try:
        held = _trickle_until_closed(sockets, normal_request)
    finally:
        for conn in sockets:
            conn.close()
    assert held < READ_TIMEOUT + 3.0, f"held for {held:.1f} s"
    assert served and set(served) == {200}, served
    # kept-alive connections are fine: each request arrives whole in time
    with httpx.Client(base_url=slow_server.base_url) as client:
        for _ in range(3):
            assert client.get("/readyz").status_code == 200
            time.sleep(READ_TIMEOUT / 2)
    slow_server.stop()
    log = slow_server.log_path.read_text()
    assert "no whole request within 1 s" in log
    assert "Traceback" not in log and "unhandled error" not in log
