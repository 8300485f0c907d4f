"""Beyond the hosted API: idempotency, cancel, live events, queue deadlines, metrics, health."""

from __future__ import annotations

import json
import time

import httpx
import pytest

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
