"""Credits, rate limits and retention, each on a server configured for it."""

from __future__ import annotations

import time

import httpx
import pytest
from segmind import InferenceFailed, SegmindClient, SegmindError

from tests.support.servers import TEST_KEY

MODEL = "ideogram-3-remix"


def body(image: str, **extra: object) -> dict:
    return {"image": image, "prompt": "old sepia photograph", "rendering_speed": "TURBO",
            "magic_prompt": "OFF", "seed": 1, **extra}


def credits_of(base_url: str) -> float:
    answer = httpx.get(f"{base_url}/v1/get-user-credits", headers={"x-api-key": TEST_KEY})
    data = answer.json()
    return data["credits"] + data["free-credits"]


def test_insufficient_credits_is_406_and_failed_jobs_are_refunded(start_process, astronaut_uri):
    server = start_process(env={"OPENREMIX_DEFAULT_CREDITS": "0.1",
                                "OPENREMIX_COST_PER_REQUEST": "0.04"})
    client = SegmindClient(api_key=TEST_KEY, base_url=f"{server.base_url}/v1")
    response = client.run_sync(MODEL, **body(astronaut_uri))
    assert float(response.headers["x-cost"]) == pytest.approx(0.04)
    assert float(response.headers["x-remaining-credits"]) == pytest.approx(0.06)
    # A job that fails gives its credits back.
    from openremix.engine.style.engine import DEFAULT_BLOCKLIST

    blocked = sorted(DEFAULT_BLOCKLIST)[0]
    job = client.submit_async(MODEL, **body(astronaut_uri, prompt=blocked, magic_prompt="OFF"))
    with pytest.raises(InferenceFailed):
        job.wait(timeout=60, interval=0.1)
    assert credits_of(server.base_url) == pytest.approx(0.06)
    client.run_sync(MODEL, **body(astronaut_uri))
    assert credits_of(server.base_url) == pytest.approx(0.02)
    with pytest.raises(SegmindError) as caught:
        client.submit_async(MODEL, **body(astronaut_uri))
    assert caught.value.status == 406
    assert caught.value.detail == "Insufficient credits: balance 0.02, cost 0.04"
    assert credits_of(server.base_url) == pytest.approx(0.02)


def test_rate_limit_answers_429_with_retry_after(start_process, astronaut_uri):
    server = start_process(env={"OPENREMIX_RATE_LIMIT_PER_MINUTE": "3"})
    headers = {"x-api-key": TEST_KEY}
    codes = []
    for _ in range(4):
        answer = httpx.post(f"{server.base_url}/v2/{MODEL}", json=body(astronaut_uri),
                            headers=headers)
        codes.append(answer.status_code)
    assert codes == [200, 200, 200, 429]
    assert int(answer.headers["Retry-After"]) >= 1
    assert answer.headers["x-rate-limit-reset-at-utc"].endswith("Z")
    assert "Rate limit" in answer.json()["error"]


def test_requests_and_outputs_expire_after_retention(start_process, astronaut_uri):
    server = start_process(env={"OPENREMIX_RETENTION_SECONDS": "6"})
    client = SegmindClient(api_key=TEST_KEY, base_url=f"{server.base_url}/v1")
    result_time = time.time()
    job = client.submit_async(MODEL, **body(astronaut_uri))
    result = job.wait(timeout=60, interval=0.1)
    assert httpx.get(result["output"]).status_code == 200
    time.sleep(max(0.0, result_time + 6.5 - time.time()))
    status = httpx.get(job.status_url, headers={"x-api-key": TEST_KEY})
    assert status.status_code == 404
    assert status.json()["error"] == f"Request {job.request_id} not found"
    deadline = time.monotonic() + 10
    while httpx.get(result["output"]).status_code != 404 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert httpx.get(result["output"]).status_code == 404


def test_a_full_queue_answers_503_with_retry_after(start_process, astronaut_uri):
    server = start_process(env={"OPENREMIX_WORKERS": "0", "OPENREMIX_MAX_QUEUE_DEPTH": "2"})
    headers = {"x-api-key": TEST_KEY}
    codes = [httpx.post(f"{server.base_url}/v2/{MODEL}", json=body(astronaut_uri),
                        headers=headers) for _ in range(3)]
    assert [c.status_code for c in codes] == [200, 200, 503]
    assert codes[2].headers["Retry-After"] == "5"
    assert codes[2].json()["error"].startswith("Server overloaded")


def test_two_api_replicas_on_postgres_enforce_one_rate_limit_together(
    start_process, postgres_db, astronaut_uri, tmp_path
):
    """Rate limits live in PostgreSQL: two replicas allow the limit once, not twice."""
    env = {"OPENREMIX_DATABASE_URL": postgres_db, "OPENREMIX_STORAGE_URL": str(tmp_path / "out"),
           "OPENREMIX_RATE_LIMIT_PER_MINUTE": "4"}
    replicas = [start_process("api", env=env, data_dir=tmp_path / f"api-{i}") for i in range(2)]
    headers = {"x-api-key": TEST_KEY}
    codes = []
    for n in range(8):  # alternating, as a load balancer would
        answer = httpx.post(f"{replicas[n % 2].base_url}/v2/{MODEL}", json=body(astronaut_uri),
                            headers=headers)
        codes.append(answer.status_code)
    assert codes == [200] * 4 + [429] * 4
    assert int(answer.headers["Retry-After"]) >= 1
    assert "4 requests per minute" in answer.json()["error"]
