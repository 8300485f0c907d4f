"""Durability: a restart loses no queued job; a killed worker's job is re-claimed."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sqlite3
import subprocess
import time
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest
from segmind import SegmindClient

from openremix.jobs.sqlite.store import SQLiteJobStore
from tests.support.faults import read_only_view
from tests.support.servers import TEST_KEY, free_port, openremix_command

MODEL = "ideogram-3-remix"
HEADERS = {"x-api-key": TEST_KEY}


def submit(base_url: str, image: str, seed: int) -> str:
    answer = httpx.post(f"{base_url}/v2/{MODEL}", headers=HEADERS, json={
        "image": image, "prompt": "pop art comic", "seed": seed, "rendering_speed": "TURBO"})
    assert answer.status_code == 200, answer.text
    return answer.json()["request_id"]


def status(base_url: str, request_id: str) -> dict:
    return httpx.get(f"{base_url}/v2/requests/{request_id}/status", headers=HEADERS).json()


def wait_all(base_url: str, ids: list[str], timeout: float = 120) -> dict[str, dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        states = {i: status(base_url, i) for i in ids}
        if all(s["status"] in ("COMPLETED", "FAILED") for s in states.values()):
            return states
        time.sleep(0.2)
    raise AssertionError(f"not finished: {states}")


def test_restart_loses_no_queued_job(start_process, tmp_path, astronaut_uri):
    data_dir = tmp_path / "restart"
    first = start_process(env={"OPENREMIX_WORKERS": "0"}, data_dir=data_dir)
    ids = [submit(first.base_url, astronaut_uri, seed) for seed in range(4)]
    assert all(status(first.base_url, i)["status"] == "QUEUED" for i in ids)
    keyed = {"image": astronaut_uri, "prompt": "pop art comic", "seed": 77}
    before = httpx.post(f"{first.base_url}/v2/{MODEL}", json=keyed,
                        headers={**HEADERS, "Idempotency-Key": "restart-1"}).json()
    first.stop()
    second = start_process(data_dir=data_dir)
    after = httpx.post(f"{second.base_url}/v2/{MODEL}", json=keyed,
                       headers={**HEADERS, "Idempotency-Key": "restart-1"}).json()
    assert after["request_id"] == before["request_id"]  # idempotency survives a restart
    states = wait_all(second.base_url, [*ids, before["request_id"]])
    assert {s["status"] for s in states.values()} == {"COMPLETED"}


def test_killed_worker_job_is_reclaimed_and_completes_once(start_process, tmp_path,
                                                            astronaut_uri):
    data_dir = tmp_path / "lease"
    env = {"OPENREMIX_LEASE_SECONDS": "1.5",
           "OPENREMIX_ENGINE": "tests.support.slow_engine:SlowStyleEngine",
           "SLOW_ENGINE_STEP_SECONDS": "0.4"}
    api = start_process("api", env=env, data_dir=data_dir)
    doomed = start_process("worker", env=env, data_dir=data_dir, ready=False)
    request_id = submit(api.base_url, astronaut_uri, seed=9)
    deadline = time.monotonic() + 60
    while status(api.base_url, request_id)["status"] != "PROCESSING":
        assert time.monotonic() < deadline, doomed.log()
        time.sleep(0.05)
    doomed.kill()
    start_process("worker", env=env, data_dir=data_dir, ready=False)
    client = SegmindClient(api_key=TEST_KEY, base_url=f"{api.base_url}/v1")
    job_status = wait_all(api.base_url, [request_id])[request_id]
    assert job_status["status"] == "COMPLETED"
    result = client._client.get(f"{api.base_url}/v2/requests/{request_id}").json()
    assert httpx.get(result["output"]).status_code == 200
    # Exactly one output was stored for the job: the dead worker never finished it.
    outputs = list((data_dir / "outputs").glob("*"))
    assert len(outputs) == 1


def test_sync_call_past_its_deadline_is_504_and_the_job_goes_on(start_process, tmp_path,
                                                                 astronaut_uri):
    server = start_process(env={"OPENREMIX_SYNC_TIMEOUT_SECONDS": "0.5",
                                "OPENREMIX_ENGINE": "tests.support.slow_engine:SlowStyleEngine",
                                "SLOW_ENGINE_STEP_SECONDS": "0.3"})
    answer = httpx.post(f"{server.base_url}/v1/{MODEL}", headers=HEADERS, json={
        "image": astronaut_uri, "prompt": "pop art", "rendering_speed": "TURBO"})
    assert answer.status_code == 504
    request_id = answer.headers["x-request-id"]
    assert answer.json()["request_id"] == request_id
    assert wait_all(server.base_url, [request_id])[request_id]["status"] == "COMPLETED"


def _job_row(data_dir, request_id: str) -> tuple[str, int]:
    with sqlite3.connect(data_dir / "openremix.db") as conn:
        return conn.execute("SELECT state, attempts FROM jobs WHERE request_id = ?",
                            (request_id,)).fetchone()


def test_sigterm_lets_serve_finish_its_running_job_and_exit_cleanly(start_process, tmp_path,
                                                                   astronaut_uri):
    """What systemd, `docker stop` and Kubernetes send: the running job is finished (not left
    PROCESSING to run a second time after its lease), the store is closed, the exit is 0."""
    data_dir = tmp_path / "sigterm"
    env = {"OPENREMIX_ENGINE": "tests.support.slow_engine:SlowStyleEngine",
           "SLOW_ENGINE_STEP_SECONDS": "0.3", "OPENREMIX_LEASE_SECONDS": "60"}
    server = start_process(env=env, data_dir=data_dir)
    request_id = submit(server.base_url, astronaut_uri, 5)
    deadline = time.monotonic() + 60
    while status(server.base_url, request_id)["status"] != "PROCESSING":
        assert time.monotonic() < deadline, server.log()
        time.sleep(0.05)
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(60) == 0, server.log()
    assert _job_row(data_dir, request_id) == ("COMPLETED", 1), server.log()
    assert "stopped" in server.log()


def _garbage(data_dir: Path, cleanups: ExitStack) -> Path:
    (data_dir / "openremix.db").write_bytes(bytes(range(256)) * 16)
    return data_dir


def _a_database(data_dir: Path) -> Path:
    store = SQLiteJobStore(data_dir / "openremix.db")
    store.create_api_key("k", 1.0)
    store.close()
    return data_dir / "openremix.db"


def _truncated(data_dir: Path, cleanups: ExitStack) -> Path:
    path = _a_database(data_dir)
    path.write_bytes(path.read_bytes()[:1000])
    return data_dir


def _not_a_folder(data_dir: Path, cleanups: ExitStack) -> Path:
    (data_dir / "a-file").write_text("x")
    return data_dir / "a-file" / "data"


def _read_only(data_dir: Path, cleanups: ExitStack) -> Path:
    """A data folder with a good database, mounted read-only (chmod would not stop root)."""
    _a_database(data_dir / "data")
    return cleanups.enter_context(read_only_view(data_dir / "data", data_dir / "read-only"))


@pytest.mark.parametrize("spoil", [_garbage, _truncated, _not_a_folder, _read_only],
                         ids=["garbage-header", "truncated-file", "folder-is-a-file",
                              "read-only-folder"])
def test_an_unusable_database_at_start_is_one_sentence_not_a_traceback(tmp_path, spoil):
    with ExitStack() as cleanups:
        data_dir = spoil(tmp_path, cleanups)
        env = {**os.environ, "OPENREMIX_DATA_DIR": str(data_dir),
               "OPENREMIX_PORT": str(free_port())}
        done = subprocess.run([*openremix_command(), "serve"], env=env, capture_output=True,
                              text=True, timeout=60)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("SQLite job store ") and "cannot be opened" in last, last


def _emptied(path: Path) -> None:
    path.write_bytes(b"")


def _truncated_output(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:100])


def _garbage_output(path: Path) -> None:
    path.write_bytes(bytes(range(256)) * 8)


@pytest.mark.parametrize("damage", [_emptied, _truncated_output, _garbage_output],
                         ids=["emptied", "truncated", "garbage"])
def test_a_damaged_output_is_reported_never_served(server, astronaut_uri, damage):
    request_id = submit(server.base_url, astronaut_uri, 11)
    wait_all(server.base_url, [request_id])
    result = httpx.get(f"{server.base_url}/v2/requests/{request_id}", headers=HEADERS).json()
    url = result["output"]
    original = httpx.get(url)
    assert original.status_code == 200 and original.content[:3] == b"\xff\xd8\xff"
    damage(server.data_dir / "outputs" / url.rsplit("/", 1)[-1])
    answer = httpx.get(url)
    assert answer.status_code == 500
    assert "is damaged in storage" in answer.json()["error"]
    assert b"\xff\xd8\xff" not in answer.content[:3]
    metrics = httpx.get(f"{server.base_url}/metrics").text
    assert 'openremix_outputs_unreadable_total{reason="damaged"}' in metrics


def test_a_deleted_output_is_reported_missing(server, astronaut_uri):
    request_id = submit(server.base_url, astronaut_uri, 12)
    wait_all(server.base_url, [request_id])
    url = httpx.get(f"{server.base_url}/v2/requests/{request_id}", headers=HEADERS).json()[
        "output"]
    counted = _unreadable_outputs(server.base_url, "missing")
    (server.data_dir / "outputs" / url.rsplit("/", 1)[-1]).unlink()
    answer = httpx.get(url)
    assert answer.status_code == 404
    assert answer.json()["error"] == "Output not found: it is missing from storage"
    assert _unreadable_outputs(server.base_url, "missing") == counted + 1


def _unreadable_outputs(base_url: str, reason: str) -> float:
    """The server's `openremix_outputs_unreadable_total` for `reason` (0 before the first)."""
    line = f'openremix_outputs_unreadable_total{{reason="{reason}"}} '
    for text in httpx.get(f"{base_url}/metrics").text.splitlines():
        if text.startswith(line):
            return float(text.removeprefix(line))
    return 0.0


def test_the_queue_limit_holds_under_100_concurrent_submits(start_process, astronaut_uri):
    server = start_process(env={"OPENREMIX_WORKERS": "0", "OPENREMIX_MAX_QUEUE_DEPTH": "10",
                                "OPENREMIX_RATE_LIMIT_PER_MINUTE": "0",
                                "OPENREMIX_COST_PER_REQUEST": "1"})
    credits_url = f"{server.base_url}/v1/get-user-credits"
    before = httpx.get(credits_url, headers=HEADERS).json()["credits"]

    async def submit_all() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=100)
        async with httpx.AsyncClient(limits=limits, timeout=60) as client:
            return await asyncio.gather(*(
                client.post(f"{server.base_url}/v2/{MODEL}", headers=HEADERS, json={
                    "image": astronaut_uri, "prompt": "pop art comic", "seed": seed})
                for seed in range(100)))

    answers = asyncio.run(submit_all())
    accepted = [a for a in answers if a.status_code == 200]
    refused = [a for a in answers if a.status_code == 503]
    assert (len(accepted), len(refused)) == (10, 90), sorted({a.status_code for a in answers})
    assert all(a.headers["Retry-After"] == "5" for a in refused)
    assert all(a.json()["error"].startswith("Server overloaded: ") for a in refused)
    assert all(a.json()["error"].endswith("(limit 10); retry later") for a in refused)
    assert httpx.get(credits_url, headers=HEADERS).json()["credits"] == before - 10
    assert {status(server.base_url, a.json()["request_id"])["status"] for a in accepted} == {
        "QUEUED"}


@pytest.mark.parametrize("content_type", ["application/json", "multipart/form-data; boundary=b"])
def test_a_client_that_hangs_up_mid_body_is_one_info_line(start_process, content_type):
    server = start_process(env={"OPENREMIX_WORKERS": "0"})
    with socket.create_connection(("127.0.0.1", server.port)) as conn:
        conn.sendall(f"POST /v2/{MODEL} HTTP/1.1\r\nHost: x\r\nx-api-key: {TEST_KEY}\r\n"
                     f"Content-Type: {content_type}\r\nContent-Length: 1000\r\n\r\n"
                     "--b\r\nContent-Disposition: form-data; name=\"".encode())
        time.sleep(0.3)
    deadline = time.monotonic() + 10
    while "disconnected" not in server.log() and time.monotonic() < deadline:
        time.sleep(0.1)
    server.stop()
    log = server.log_path.read_text()
    assert "the client disconnected before sending the whole body" in log
    assert "Traceback" not in log and "unhandled error" not in log


def test_a_model_that_fails_to_load_refuses_submits_instead_of_queueing_them(start_process,
                                                                            tmp_path,
                                                                            astronaut_uri):
    """`serve` with a model folder that cannot load: /readyz says why, and every submit is a
    503 naming the load error (nothing queued, nothing charged) instead of a job that would
    wait forever."""
    not_a_model = tmp_path / "not-a-model"
    not_a_model.mkdir()
    server = start_process(env={"OPENREMIX_ENGINE": "diffusers",
                                "OPENREMIX_MODEL": str(not_a_model)}, ready=False)
    deadline = time.monotonic() + 120
    while True:
        assert server.proc.poll() is None and time.monotonic() < deadline, server.log()
        try:
            ready = httpx.get(f"{server.base_url}/readyz", timeout=2)
        except httpx.HTTPError:
            time.sleep(0.2)
            continue
        if "failed to load" in ready.text:
            break
        time.sleep(0.2)
    assert ready.status_code == 503
    before = httpx.get(f"{server.base_url}/v1/get-user-credits", headers=HEADERS).json()
    answer = httpx.post(f"{server.base_url}/v2/{MODEL}", headers=HEADERS, json={
        "image": astronaut_uri, "prompt": "ink"})
    assert answer.status_code == 503, answer.text
    assert answer.json()["error"].startswith("The model failed to load, so no remix can run: ")
    assert answer.headers["retry-after"] == "30"
    assert httpx.get(f"{server.base_url}/v1/get-user-credits", headers=HEADERS).json() == before
    assert _job_count(server.data_dir) == 0


def _job_count(data_dir: Path) -> int:
    with sqlite3.connect(data_dir / "openremix.db") as conn:
        return conn.execute("SELECT COUNT(*) FROM jobs").fetchone()[0]


def test_sigterm_on_an_api_replica_ends_streams_and_sync_waits_cleanly_and_fast(
        start_process, tmp_path, astronaut_uri):
    """A rolling restart of API replicas: an open event stream ends (the client resumes
    elsewhere with Last-Event-ID), a sync call still waiting answers 503 with its poll URL and
    Retry-After, the queued job stays queued, and the process exits 0 well before uvicorn's
    10 s of graceful shutdown would have cut them off."""
    import threading

    data_dir = tmp_path / "replica"
    api = start_process("api", data_dir=data_dir)  # no worker: jobs stay queued
    queued = submit(api.base_url, astronaut_uri, 1)
    outcome: dict[str, object] = {}

    def stream() -> None:
        with httpx.stream("GET", f"{api.base_url}/v2/requests/{queued}/events",
                          headers=HEADERS, timeout=30) as answer:
            outcome["events"] = "".join(answer.iter_text())

    def sync_call() -> None:
        outcome["sync"] = httpx.post(f"{api.base_url}/v1/{MODEL}", headers=HEADERS, timeout=30,
                                     json={"image": astronaut_uri, "prompt": "ink", "seed": 2})

    threads = [threading.Thread(target=stream), threading.Thread(target=sync_call)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 30
    while _count_jobs(data_dir) < 2:  # the sync call's job is queued: it is waiting now
        assert time.monotonic() < deadline, api.log()
        time.sleep(0.05)
    time.sleep(0.5)
    started = time.monotonic()
    api.proc.send_signal(signal.SIGTERM)
    assert api.proc.wait(30) == 0, api.log()
    took = time.monotonic() - started
    for thread in threads:
        thread.join(10)
    assert took < 8, f"shutdown took {took:.1f} s"
    assert "event: queued" in str(outcome["events"]) and "retry: 1000" in str(outcome["events"])
    answer = outcome["sync"]
    assert isinstance(answer, httpx.Response) and answer.status_code == 503, answer
    assert answer.headers["retry-after"] == "1"
    assert "shutting down" in answer.json()["error"]
    assert answer.headers["x-request-id"] in answer.json()["error"]  # the poll URL names it
    assert _job_row(data_dir, queued) == ("QUEUED", 0)


def _count_jobs(data_dir: Path) -> int:
    with sqlite3.connect(data_dir / "openremix.db") as conn:
        return conn.execute("SELECT COUNT(*) FROM jobs").fetchone()[0]
