"""Many machines on PostgreSQL: API replicas and worker processes that share only the database
and the output storage, driven by the real segmind SDK, with processes killed mid-run and the
database restarted mid-run. Every job must complete exactly once and none may be lost."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from segmind import SegmindClient

from tests.support.servers import TEST_KEY, OpenRemixProcess

psycopg = pytest.importorskip("psycopg")

MODEL = "ideogram-3-remix"
HEADERS = {"x-api-key": TEST_KEY}
pytestmark = pytest.mark.slow


def fleet_env(database_url: str, storage: Path) -> dict[str, str]:
    return {"OPENREMIX_DATABASE_URL": database_url, "OPENREMIX_STORAGE_URL": str(storage),
            "OPENREMIX_LEASE_SECONDS": "3", "OPENREMIX_RATE_LIMIT_PER_MINUTE": "0",
            "OPENREMIX_DEFAULT_CREDITS": "100000"}


def wait_worker_ready(worker: OpenRemixProcess, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while "ready (engine" not in worker.log():  # a worker has no HTTP port
        assert worker.proc.poll() is None and time.monotonic() < deadline, worker.log()
        time.sleep(0.1)


def body(image: str, seed: int) -> dict:
    return {"image": image, "prompt": "pop art comic", "seed": seed,
            "rendering_speed": "TURBO", "magic_prompt": "OFF"}


def wait_terminal(base_url: str, ids: list[str], timeout: float = 300) -> dict[str, str]:
    pending, states = set(ids), {}
    deadline = time.monotonic() + timeout
    with httpx.Client(headers=HEADERS, timeout=30) as http:
        while pending:
            assert time.monotonic() < deadline, f"{len(pending)} jobs never finished"
            for request_id in list(pending):
                status = http.get(f"{base_url}/v2/requests/{request_id}/status").json()
                if status["status"] in ("COMPLETED", "FAILED"):
                    states[request_id] = status["status"]
                    pending.discard(request_id)
            time.sleep(0.2)
    return states


def job_row(database_url: str, request_id: str) -> tuple[str, int]:
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT state, attempts FROM jobs WHERE request_id = %s",
                           (request_id,)).fetchone()
    return row[0], row[1]


def test_two_apis_three_workers_200_jobs_survive_killed_processes(
        postgres_db: str, start_process, tmp_path: Path, astronaut_uri: str):
    storage = tmp_path / "shared-outputs"
    env = fleet_env(postgres_db, storage)
    workers = [start_process("worker", env=env, data_dir=tmp_path / f"worker{i}", ready=False)
               for i in range(3)]
    api_a = start_process("api", env=env, data_dir=tmp_path / "api-a")
    api_b = start_process("api", env=env, data_dir=tmp_path / "api-b")
    for worker in workers:
        wait_worker_ready(worker)
    clients = [SegmindClient(api_key=TEST_KEY, base_url=f"{api.base_url}/v1")
               for api in (api_a, api_b)]

    def submit(i: int, client: SegmindClient) -> str:
        return client.submit_async(MODEL, **body(astronaut_uri, i)).request_id

    with ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(lambda i: submit(i, clients[i % 2]), range(100)))

    # SIGKILL a worker while it holds a job: that job must be re-claimed and finish once.
    victim = workers[0]
    deadline = time.monotonic() + 60
    held = None
    while held is None:
        assert time.monotonic() < deadline, "the worker never took a job"
        with psycopg.connect(postgres_db) as conn:
            held = conn.execute(
                "SELECT request_id FROM jobs WHERE state = 'PROCESSING' AND lease_owner LIKE %s",
                (f"%:{victim.proc.pid}:%",)).fetchone()
        time.sleep(0.02)
    victim.kill()
    orphan = held[0]

    # SIGKILL an API replica: the other keeps answering and takes the rest of the traffic.
    api_a.kill()
    with ThreadPoolExecutor(8) as pool:
        ids += list(pool.map(lambda i: submit(i, clients[1]), range(100, 200)))
    assert len(set(ids)) == 200

    states = wait_terminal(api_b.base_url, ids)
    assert set(states.values()) == {"COMPLETED"}
    assert job_row(postgres_db, orphan) == ("COMPLETED", 2)
    with psycopg.connect(postgres_db) as conn:
        completed = conn.execute("SELECT count(*) FROM jobs WHERE state = 'COMPLETED'").fetchone()
    assert completed[0] == 200
    # Exactly one output per job: no job was run twice to completion.
    assert len(list(storage.iterdir())) == 200
    # Jobs submitted through the killed replica are readable through the other one.
    result = httpx.get(f"{api_b.base_url}/v2/requests/{ids[0]}", headers=HEADERS).json()
    assert httpx.get(result["output"]).content[:3] == b"\xff\xd8\xff"


def test_restarting_postgres_mid_run_loses_nothing(
        postgres_db: str, postgres_cluster, start_process, tmp_path: Path, astronaut_uri: str):
    env = fleet_env(postgres_db, tmp_path / "outputs")
    worker = start_process("worker", env=env, data_dir=tmp_path / "worker", ready=False)
    api = start_process("api", env=env, data_dir=tmp_path / "api")
    wait_worker_ready(worker)
    client = SegmindClient(api_key=TEST_KEY, base_url=f"{api.base_url}/v1")
    ids = [client.submit_async(MODEL, **body(astronaut_uri, i)).request_id for i in range(10)]
    postgres_cluster.restart(down_seconds=2.0)
    deadline = time.monotonic() + 60
    while True:  # the API answers 5xx while its pool reconnects, then carries on
        try:
            ids.append(client.submit_async(MODEL, **body(astronaut_uri, 10)).request_id)
            break
        except Exception:
            assert time.monotonic() < deadline, api.log()
            time.sleep(0.5)
    ids += [client.submit_async(MODEL, **body(astronaut_uri, i)).request_id
            for i in range(11, 20)]
    states = wait_terminal(api.base_url, ids)
    assert set(states.values()) == {"COMPLETED"}, (worker.log(), api.log())
    assert worker.proc.poll() is None and api.proc.poll() is None
