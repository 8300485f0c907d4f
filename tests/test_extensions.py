"""Beyond the hosted API: idempotency, cancel, live events (and the SDK resuming them), queue
deadlines, metrics, health."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
import threading
import time

import httpx
import pytest

from openremix.client import AsyncClient, Client, Status
from tests.support.servers import OTHER_KEY, TEST_KEY, OpenRemixProcess

MODEL = "ideogram-3-remix"
HEADERS = {"x-api-key": TEST_KEY}


def body(image: str, **extra: object) -> dict:
    return {"image": image, "prompt": "stained glass window", "seed": 2,
            "rendering_speed": "TURBO", **extra}


def submit(base: str, payload: dict, **headers: str) -> httpx.Response:
    return httpx.post(f"{base}/v2/{MODEL}", json=payload, headers={**HEADERS, **headers})


def credits(base: str) -> float:
    data = httpx.get(f"{base}/v1/get-user-credits", headers=HEADERS).json()
    return data["credits"] + data["free-credits"]


def read_events(base: str, request_id: str, last_event_id: str | None = None,
                timeout: float = 60) -> list[tuple[str, str, dict]]:
    """(id, event, data) of each SSE event until the stream ends."""
    headers = dict(HEADERS)
    if last_event_id:
        headers["Last-Event-ID"] = last_event_id
    events: list[tuple[str, str, dict]] = []
    with httpx.stream("GET", f"{base}/v2/requests/{request_id}/events", headers=headers,
                      timeout=timeout) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        fields: dict[str, str] = {}
        for line in response.iter_lines():
            if line.startswith(":"):
                continue
            if not line:
                if fields:
                    events.append((fields.get("id", ""), fields["event"],
                                   json.loads(fields["data"])))
                fields = {}
                continue
            name, _, value = line.partition(": ")
            fields[name] = value
    return events


@pytest.fixture(scope="module")
def queue_only(tmp_path_factory) -> OpenRemixProcess:
    """A server with no worker: jobs stay QUEUED until something happens to them."""
    proc = OpenRemixProcess("serve", tmp_path_factory.mktemp("queue-only"),
                            {"OPENREMIX_WORKERS": "0"}).wait_ready()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def slow(tmp_path_factory) -> OpenRemixProcess:
    """A server whose engine pauses between steps (a test double over the real engine)."""
    proc = OpenRemixProcess("serve", tmp_path_factory.mktemp("slow"), {
        "OPENREMIX_ENGINE": "tests.support.slow_engine:SlowStyleEngine",
        "SLOW_ENGINE_STEP_SECONDS": "0.3",
    }).wait_ready()
    yield proc
    proc.stop()


def test_idempotency_key_returns_the_same_request_and_conflicts_on_another_body(
        queue_only, astronaut_uri):
    first = submit(queue_only.base_url, body(astronaut_uri), **{"Idempotency-Key": "order-1"})
    balance = credits(queue_only.base_url)
    again = submit(queue_only.base_url, body(astronaut_uri), **{"Idempotency-Key": "order-1"})
    assert first.status_code == again.status_code == 200
    assert again.json()["request_id"] == first.json()["request_id"]
    assert credits(queue_only.base_url) == balance  # charged once
    other = submit(queue_only.base_url, body(astronaut_uri, seed=3),
                   **{"Idempotency-Key": "order-1"})
    assert other.status_code == 409
    assert "Idempotency-Key" in other.json()["error"]
    fresh = submit(queue_only.base_url, body(astronaut_uri), **{"Idempotency-Key": "order-2"})
    assert fresh.json()["request_id"] != first.json()["request_id"]


def test_idempotency_key_matches_the_request_not_its_spelling(queue_only, astronaut_uri):
    """Bodies that validate to the same request replay it; another request (webhook included)
    under the same key is a conflict."""
    key = {"Idempotency-Key": "spelling-1"}
    hook = {"webhook_url": "https://hooks.example.com/done",
            "webhook_events": ["completed", "failed"]}
    first = submit(queue_only.base_url, body(astronaut_uri, **hook), **key)
    assert first.status_code == 200
    respelled = {  # other key order, other case, a whole float, nulls, an explicit default
        "webhook_events": ["FAILED", "completed"], "rendering_speed": "turbo", "seed": 2.0,
        "prompt": "stained glass window", "image": f"  {astronaut_uri}", "style_codes": [],
        "negative_prompt": None, "image_weight": 50, "webhook_url": hook["webhook_url"],
    }
    again = submit(queue_only.base_url, respelled, **key)
    assert again.status_code == 200, again.text
    assert again.json()["request_id"] == first.json()["request_id"]
    for other in (body(astronaut_uri, **hook, rendering_speed="QUALITY"),
                  body(astronaut_uri, **hook, negative_prompt="blur"),
                  body(astronaut_uri, webhook_url="https://hooks.example.com/other"),
                  body(astronaut_uri, **{**hook, "webhook_events": ["failed"]}),
                  body(astronaut_uri)):
        answer = submit(queue_only.base_url, other, **key)
        assert answer.status_code == 409, other


def test_cancel_a_queued_request_refunds_and_never_runs(queue_only, astronaut_uri):
    balance = credits(queue_only.base_url)
    request_id = submit(queue_only.base_url, body(astronaut_uri)).json()["request_id"]
    assert credits(queue_only.base_url) < balance
    url = f"{queue_only.base_url}/v2/requests/{request_id}"
    assert httpx.delete(url, headers={"x-api-key": OTHER_KEY}).status_code == 404
    cancelled = httpx.delete(url, headers=HEADERS)
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "FAILED"
    assert cancelled.json()["error"] == "cancelled"
    status = httpx.get(f"{url}/status", headers=HEADERS)
    assert status.status_code == 422
    assert status.json()["error"] == "cancelled"
    assert credits(queue_only.base_url) == pytest.approx(balance)
    # Cancelling twice is harmless; the POST form answers the same.
    assert httpx.post(f"{url}/cancel", headers=HEADERS).json()["error"] == "cancelled"


def test_queue_timeout_fails_a_request_no_worker_took(queue_only, astronaut_uri):
    answer = submit(queue_only.base_url, body(astronaut_uri), **{"x-queue-timeout": "0.5"})
    request_id = answer.json()["request_id"]
    time.sleep(0.8)
    status = httpx.get(f"{queue_only.base_url}/v2/requests/{request_id}/status", headers=HEADERS)
    assert status.status_code == 422
    assert status.json()["error"].startswith("queue timeout")
    bad = submit(queue_only.base_url, body(astronaut_uri), **{"x-queue-timeout": "soon"})
    assert bad.status_code == 400
    assert bad.json()["error"].startswith("x-queue-timeout:")


def test_events_of_a_queued_request_report_its_position(queue_only, astronaut_uri):
    request_id = submit(queue_only.base_url, body(astronaut_uri)).json()["request_id"]
    url = f"{queue_only.base_url}/v2/requests/{request_id}"
    with httpx.stream("GET", f"{url}/events", headers=HEADERS, timeout=10) as response:
        lines = response.iter_lines()
        first = [next(lines) for _ in range(3)]
    assert first[1] == "event: queued"
    assert json.loads(first[2].removeprefix("data: "))["queue_position"] >= 0
    httpx.delete(url, headers=HEADERS)
    events = read_events(queue_only.base_url, request_id)
    assert [e[1] for e in events] == ["failed"]  # a client that comes late gets the end


def test_events_follow_a_run_to_the_end_and_resume(slow, astronaut_uri):
    request_id = submit(slow.base_url, body(astronaut_uri)).json()["request_id"]
    events = read_events(slow.base_url, request_id)
    names = [name for _, name, _ in events]
    assert names[-1] == "completed"
    processing = [data for _, name, data in events if name == "processing"]
    assert processing, names
    assert [d["step"] for d in processing] == sorted(d["step"] for d in processing)
    assert processing[-1]["total"] >= processing[-1]["step"]
    status = httpx.get(f"{slow.base_url}/v2/requests/{request_id}/status", headers=HEADERS)
    assert events[-1][2] == status.json()
    resumed = read_events(slow.base_url, request_id, last_event_id=events[-2][0])
    assert [name for _, name, _ in resumed] == ["completed"]


def test_cancel_a_running_request_stops_it_at_the_next_step(slow, astronaut_uri):
    balance = credits(slow.base_url)
    request_id = submit(slow.base_url, body(astronaut_uri)).json()["request_id"]
    url = f"{slow.base_url}/v2/requests/{request_id}"
    deadline = time.monotonic() + 30
    while httpx.get(f"{url}/status", headers=HEADERS).json()["status"] != "PROCESSING":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert httpx.delete(url, headers=HEADERS).json()["error"] == "cancelled"
    time.sleep(1.0)  # the worker reaches its next step and drops the job
    final = httpx.get(url, headers=HEADERS)
    assert final.status_code == 422
    assert final.json()["error"] == "cancelled"
    assert credits(slow.base_url) == pytest.approx(balance)
    # The worker is free again: the next job completes.
    after = submit(slow.base_url, body(astronaut_uri)).json()["request_id"]
    assert read_events(slow.base_url, after)[-1][1] == "completed"


def test_cancelling_a_completed_request_is_409(slow, astronaut_uri):
    request_id = submit(slow.base_url, body(astronaut_uri)).json()["request_id"]
    read_events(slow.base_url, request_id)
    answer = httpx.delete(f"{slow.base_url}/v2/requests/{request_id}", headers=HEADERS)
    assert answer.status_code == 409


def test_metrics_and_health(slow, astronaut_uri):
    request_id = submit(slow.base_url, body(astronaut_uri)).json()["request_id"]
    read_events(slow.base_url, request_id)
    text = httpx.get(f"{slow.base_url}/metrics").text
    assert 'openremix_http_requests_total{code="200",method="POST",route="/v2/{slug}"}' in text
    assert "openremix_queue_depth" in text
    assert "openremix_queue_oldest_age_seconds" in text
    assert 'openremix_job_seconds_count{phase="inference"}' in text
    assert "openremix_batch_size_count" in text
    assert "openremix_engine_step_seconds_count" in text
    assert httpx.get(f"{slow.base_url}/healthz").json() == {"status": "ok"}
    assert httpx.get(f"{slow.base_url}/readyz").json()["status"] == "ready"


# --- the SDK resumes a cut event stream (Last-Event-ID) -------------------------------------


class CuttingProxy:
    """A loopback TCP proxy in front of a server. It cuts the first answer that has carried
    `cut_after` complete events (the connection just closes, as on a network drop), and keeps
    what each connection sent and received."""

    def __init__(self, upstream_port: int, cut_after: int) -> None:
        self.upstream_port = upstream_port
        self.cut_after = cut_after
        self.sent: list[bytes] = []
        self.received: list[bytes] = []
        self.cuts = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.base_url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self._listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            index = len(self.sent)
            self.sent.append(b"")
            self.received.append(b"")
            for pump in (self._pump_requests, self._pump_answers):
                threading.Thread(target=pump, args=(client, upstream, index), daemon=True).start()

    def _pump_requests(self, client: socket.socket, upstream: socket.socket, index: int) -> None:
        while (data := _recv(client)) and _send(upstream, data):
            self.sent[index] += data
        _close(client, upstream)

    def _pump_answers(self, client: socket.socket, upstream: socket.socket, index: int) -> None:
        while (data := _recv(upstream)) and _send(client, data):
            self.received[index] += data
            if self.cuts == 0 and self.received[index].count(b"\n\n") >= self.cut_after:
                self.cuts += 1
                break
        _close(client, upstream)


def _recv(sock: socket.socket) -> bytes:
    try:
        return sock.recv(65536)
    except OSError:
        return b""


def _send(sock: socket.socket, data: bytes) -> bool:
    try:
        sock.sendall(data)
    except OSError:
        return False
    return True


def _close(*socks: socket.socket) -> None:
    for sock in socks:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()


def assert_resumed_without_repeats(proxy: CuttingProxy, statuses: list[Status]) -> None:
    assert proxy.cuts == 1
    assert statuses[-1].state == "COMPLETED"
    markers = [(s.state, s.progress.step if s.progress else 0, s.queue_position)
               for s in statuses]
    steps = [step for state, step, _ in markers if state == "PROCESSING"]
    assert steps == sorted(steps), markers
    # The reconnection named the last event that came whole through the cut connection, and
    # the server sent only later ones (the same step may come again while a slow step runs:
    # its ETA is refreshed, as a new event).
    complete = proxy.received[0][: proxy.received[0].rindex(b"\n\n")]
    seen = [int(i) for i in re.findall(rb"\nid: (\d+)\n", complete)]
    assert len(proxy.sent) >= 2
    assert f"last-event-id: {seen[-1]}\r\n".encode() in proxy.sent[1].lower()
    resent = [int(i) for i in re.findall(rb"\nid: (\d+)\n", b"".join(proxy.received[1:]))]
    assert resent and min(resent) > seen[-1], (seen, resent)  # nothing repeated
    assert len(set(seen + resent)) == len(seen + resent)


def test_sdk_events_resume_after_the_stream_is_cut(slow, astronaut_uri):
    request_id = submit(slow.base_url, body(astronaut_uri)).json()["request_id"]
    proxy = CuttingProxy(slow.port, cut_after=2)
    try:
        with Client(api_key=TEST_KEY, base_url=proxy.base_url) as sdk:
            statuses = list(sdk.job(request_id).events(timeout=60))
    finally:
        proxy.close()
    assert_resumed_without_repeats(proxy, statuses)
    assert all(s.request_id == request_id for s in statuses)


def test_async_sdk_events_resume_after_the_stream_is_cut(slow, astronaut_uri):
    request_id = submit(slow.base_url, body(astronaut_uri)).json()["request_id"]
    proxy = CuttingProxy(slow.port, cut_after=2)

    async def main() -> list[Status]:
        async with AsyncClient(api_key=TEST_KEY, base_url=proxy.base_url) as sdk:
            return [status async for status in sdk.job(request_id).events(timeout=60)]

    try:
        statuses = asyncio.run(main())
    finally:
        proxy.close()
    assert_resumed_without_repeats(proxy, statuses)
