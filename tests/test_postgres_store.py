"""What only the PostgreSQL store does: wake-ups, restarts, races between machines, migrations.

The shared `JobStore` suite (test_jobstore.py) already runs against PostgreSQL; these tests use
the same session cluster (conftest `postgres_cluster`), a new database each.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from openremix.jobs.model import ApiKey, JobState, NewJob
from openremix.jobs.store import IdempotencyConflict, InsufficientCredits
from tests.support.pg_server import PSYCOPG_HINT, PostgresCluster
from tests.support.servers import TEST_KEY

psycopg = pytest.importorskip("psycopg", reason=PSYCOPG_HINT)

from psycopg_pool import PoolTimeout  # noqa: E402

from openremix.jobs.postgres import schema as postgres_schema  # noqa: E402 - needs psycopg
from openremix.jobs.postgres.store import PostgresJobStore  # noqa: E402


@pytest.fixture
def opened(postgres_db: str) -> Iterator[Callable[..., PostgresJobStore]]:
    """Open stores on the test's database; all are closed at the end."""
    stores: list[PostgresJobStore] = []

    def open_store(**options: Any) -> PostgresJobStore:
        stores.append(PostgresJobStore(postgres_db, **options))
        return stores[-1]

    yield open_store
    for store in stores:
        store.close()


def new_job(key: ApiKey, **fields: Any) -> NewJob:
    return NewJob(str(uuid.uuid4()), "ideogram-3-remix", key.key_id, {"prompt": "a cat"},
                  fields.pop("cost", 1.0), **fields)


def run_together(count: int, call: Callable[[int], Any]) -> list[Any]:
    """`call(i)` for i in range(count) in as many threads, released at once; results or
    exceptions, in order."""
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count

    def run(i: int) -> None:
        barrier.wait(10)
        try:
            results[i] = call(i)
        except Exception as exc:
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return results


# --- LISTEN/NOTIFY ------------------------------------------------------------------------------
def test_an_enqueue_wakes_a_waiting_worker_within_100_ms(opened) -> None:
    api, worker = opened(), opened()
    key, _ = api.create_api_key("k", credits=10)
    woke: list[float] = []

    def wait() -> None:
        assert not worker.wait_for_work(0.05)  # nothing queued: a timeout, not a busy return
        woke.append(time.monotonic() if worker.wait_for_work(5.0) else float("inf"))

    waiter = threading.Thread(target=wait)
    waiter.start()
    time.sleep(0.2)  # the waiter is blocked now
    sent = time.monotonic()
    request_id = api.enqueue(new_job(key))[0].request_id
    waiter.join(6)
    assert woke and woke[0] - sent < 0.1, f"woken after {woke[0] - sent:.3f} s"
    claimed = worker.claim_next("w", 30)
    assert claimed is not None and claimed.request_id == request_id


def test_a_requeued_job_wakes_workers_and_a_missed_notification_is_not_lost(opened) -> None:
    store = opened()
    key, _ = store.create_api_key("k", credits=10)
    assert not store.wait_for_work(0.2)  # registered as an idle worker
    store.enqueue(new_job(key))
    time.sleep(0.2)  # the notification arrives while this thread is not waiting ...
    assert store.wait_for_work(0.0)  # ... and its next wait still sees it
    claimed = store.claim_next("w", 0.01)
    assert claimed is not None
    time.sleep(0.05)
    assert store.requeue_expired_leases() == 1
    assert store.wait_for_work(2.0)


def test_a_wait_returns_at_once_when_a_job_is_queued_already(opened) -> None:
    store = opened()
    key, _ = store.create_api_key("k", credits=10)
    store.enqueue(new_job(key))
    started = time.monotonic()
    assert store.wait_for_work(5.0)
    assert time.monotonic() - started < 1.0


def test_one_job_wakes_one_idle_worker_not_all_of_them(opened) -> None:
    api = opened()
    key, _ = api.create_api_key("k", credits=10)
    workers = [opened() for _ in range(6)]
    for worker in workers:
        assert not worker.wait_for_work(0.05)  # each is registered as idle now
    woken: list[int] = []
    lock = threading.Lock()

    def wait(i: int) -> None:
        if workers[i].wait_for_work(1.5):
            with lock:
                woken.append(i)

    threads = [threading.Thread(target=wait, args=(i,)) for i in range(len(workers))]
    for thread in threads:
        thread.start()
    time.sleep(0.2)
    api.enqueue(new_job(key))
    for thread in threads:
        thread.join(5)
    assert len(woken) == 1, f"{len(woken)} idle workers woke for one job"
    assert workers[woken[0]].claim_next("w", 30) is not None


def test_no_wake_up_is_lost_between_a_workers_last_look_and_its_wait(opened) -> None:
    """Workers that go idle while jobs arrive at random moments: every job is claimed soon,
    by waits that would otherwise sleep 10 s (no polling hides a lost wake-up here)."""
    api = opened()
    key, _ = api.create_api_key("k", credits=1000)
    workers = [opened() for _ in range(4)]
    jobs, claimed_at, stop = 150, {}, threading.Event()

    def work(i: int) -> None:
        while not stop.is_set():
            job = workers[i].claim_next(f"w{i}", 30)
            if job is not None:
                claimed_at[job.request_id] = time.monotonic()
                continue
            workers[i].wait_for_work(10.0)

    threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(4)]
    for thread in threads:
        thread.start()
    sent: dict[str, float] = {}
    for n in range(jobs):
        time.sleep(0.001 * (n % 7))
        request_id = api.enqueue(new_job(key))[0].request_id
        sent[request_id] = time.monotonic()
    deadline = time.monotonic() + 8
    while len(claimed_at) < jobs and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    for _ in workers:  # wake the waiters so that the threads end
        api.enqueue(new_job(key))
    assert set(sent) <= set(claimed_at), f"{len(set(sent) - set(claimed_at))} never claimed"
    slowest = max(claimed_at[r] - sent[r] for r in sent)
    assert slowest < 2.0, f"a job waited {slowest:.2f} s for a worker"


# --- restarts -------------------------------------------------------------------------------------
def test_the_store_keeps_working_after_the_server_restarts(
    opened, postgres_cluster: PostgresCluster
) -> None:
    store, waiting = opened(reconnect_seconds=20), opened(reconnect_seconds=20)
    key, _ = store.create_api_key("k", credits=10)
    before = store.enqueue(new_job(key))[0].request_id
    assert waiting.wait_for_work(5.0)  # a job is queued already

    postgres_cluster.restart(down_seconds=0.5)  # every open session is ended

    assert store.get(before) is not None  # the pool replaced its dead connections
    claimed = store.claim_next("w", 30)
    assert claimed is not None and claimed.request_id == before
    assert store.complete(before, "w", {"ok": True})
    deadline = time.monotonic() + 10
    while waiting.wait_for_work(0.2) and time.monotonic() < deadline:
        pass  # drain the wake-ups of the reconnection
    after = store.enqueue(new_job(key))[0].request_id
    assert waiting.wait_for_work(5.0), "the listener did not reconnect"
    assert store.queue_position(after) == 0


def test_a_call_made_while_the_server_is_down_waits_for_it(
    opened, postgres_cluster: PostgresCluster
) -> None:
    store = opened(reconnect_seconds=20)
    key, _ = store.create_api_key("k", credits=10)
    postgres_cluster.stop_server()
    restart = threading.Timer(1.0, postgres_cluster.start_server)
    restart.start()
    try:
        job, created = store.enqueue(new_job(key))  # retried until the server is back
    finally:
        restart.join()
    assert created and store.get(job.request_id) is not None


def test_after_a_long_outage_the_store_answers_as_soon_as_the_server_is_back(
    opened, postgres_cluster: PostgresCluster
) -> None:
    """The pool's own reconnection backs off without bound (1, 2, 4, 8 s...): after a long
    outage its next try could come many seconds after the server is back. Calls must not wait
    for that schedule."""
    store = opened(reconnect_seconds=2)
    key, _ = store.create_api_key("k", credits=10)
    postgres_cluster.stop_server()
    try:
        down_until = time.monotonic() + 9
        while time.monotonic() < down_until:  # calls fail (after their 2 s) while it is down
            with pytest.raises((psycopg.OperationalError, PoolTimeout)):
                store.get("missing")
    finally:
        postgres_cluster.start_server()
    started = time.monotonic()
    job, created = store.enqueue(new_job(key))
    assert created and store.get(job.request_id) is not None
    assert time.monotonic() - started < 3


def test_a_database_that_refuses_us_fails_at_once(postgres_cluster: PostgresCluster) -> None:
    started = time.monotonic()
    with pytest.raises(psycopg.OperationalError, match="does not exist"):
        PostgresJobStore(postgres_cluster.url("no_such_database"), reconnect_seconds=20)
    assert time.monotonic() - started < 5


# --- races between API replicas -------------------------------------------------------------------
def test_concurrent_submits_with_one_idempotency_key_make_one_job(opened) -> None:
    stores = [opened(pool_size=2) for _ in range(4)]  # four "API replicas"
    key, _ = stores[0].create_api_key("k", credits=100)
    results = run_together(16, lambda i: stores[i % 4].enqueue(
        new_job(key, idempotency_key="same", request_hash="h")))
    assert not [r for r in results if isinstance(r, Exception)], results
    assert sum(created for _, created in results) == 1
    assert len({job.request_id for job, _ in results}) == 1
    assert stores[0].queue_depth() == 1
    assert stores[0].get_api_key(key.key_id).credits == 99.0  # debited once

    others = run_together(8, lambda i: stores[i % 4].enqueue(
        new_job(key, idempotency_key="same", request_hash="other")))
    assert all(isinstance(r, IdempotencyConflict) for r in others)


def test_concurrent_submits_never_overdraw_a_key(opened) -> None:
    stores = [opened(pool_size=3) for _ in range(3)]
    key, _ = stores[0].create_api_key("k", credits=5.0, free_credits=2.0)
    results = run_together(12, lambda i: stores[i % 3].enqueue(new_job(key)))
    made = [r for r in results if isinstance(r, tuple)]
    refused = [r for r in results if isinstance(r, InsufficientCredits)]
    assert (len(made), len(refused)) == (7, 5)
    record = stores[0].get_api_key(key.key_id)
    assert (record.free_credits, record.credits) == (0.0, 0.0)


def test_many_claimers_never_share_a_job_and_a_finish_needs_the_lease(opened) -> None:
    stores = [opened(pool_size=3) for _ in range(3)]
    key, _ = stores[0].create_api_key("k", credits=1000)
    ids = {stores[0].enqueue(new_job(key, priority=i % 3))[0].request_id for i in range(300)}

    def drain(i: int) -> list[str]:
        store, mine = stores[i % 3], []
        while (job := store.claim_next(f"w{i}", 30)) is not None:
            assert job.state is JobState.PROCESSING and job.lease_owner == f"w{i}"
            assert not store.complete(job.request_id, f"w{i + 1}", {})  # not the holder
            assert store.complete(job.request_id, f"w{i}", {})
            mine.append(job.request_id)
        return mine

    results = run_together(9, drain)
    claimed = [rid for mine in results for rid in mine]
    assert len(claimed) == len(set(claimed)) == 300 and set(claimed) == ids


# --- migrations -----------------------------------------------------------------------------------
def openremix(*args: str, url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OPENREMIX_DATABASE_URL": url}
    return subprocess.run([sys.executable, "-m", "openremix.cli", *args], capture_output=True,
                          text=True, env=env, timeout=60)


def test_db_upgrade_creates_the_schema_once_and_status_reports_it(postgres_db: str) -> None:
    status = openremix("db", "status", url=postgres_db)
    assert status.returncode == 1
    assert f"schema version 0; {postgres_schema.SCHEMA_VERSION} migration(s) pending" in (
        status.stdout)
    first = openremix("db", "upgrade", url=postgres_db)
    assert first.returncode == 0, first.stderr
    assert f"from version 0 to {postgres_schema.SCHEMA_VERSION}" in first.stdout
    again = openremix("db", "upgrade", url=postgres_db)
    assert again.returncode == 0 and "nothing to do" in again.stdout
    status = openremix("db", "status", url=postgres_db)
    assert status.returncode == 0
    assert status.stdout.strip() == (
        f"schema version {postgres_schema.SCHEMA_VERSION} (up to date)")
    with psycopg.connect(postgres_db) as conn:
        versions = conn.execute("SELECT version FROM schema_migrations ORDER BY 1").fetchall()
    assert [v for (v,) in versions] == list(range(1, postgres_schema.SCHEMA_VERSION + 1))


def test_replicas_starting_together_apply_each_migration_once(postgres_db: str) -> None:
    results = run_together(6, lambda i: postgres_schema.upgrade_database(postgres_db))
    assert sorted(results) == [(0, postgres_schema.SCHEMA_VERSION)] + [
        (postgres_schema.SCHEMA_VERSION, postgres_schema.SCHEMA_VERSION)] * 5


def test_without_auto_migrate_the_store_needs_db_upgrade(postgres_db: str, opened) -> None:
    with pytest.raises(postgres_schema.SchemaError, match="openremix db upgrade"):
        PostgresJobStore(postgres_db, auto_migrate=False)
    postgres_schema.upgrade_database(postgres_db)
    assert opened(auto_migrate=False).schema_version == postgres_schema.SCHEMA_VERSION


def test_a_version_1_database_upgrades_and_keeps_its_jobs_and_credits(
    postgres_db: str, opened
) -> None:
    with psycopg.connect(postgres_db, autocommit=True) as conn:  # as version 1 left it
        conn.execute(postgres_schema.MIGRATIONS[0])
        conn.execute("CREATE TABLE schema_migrations (version integer PRIMARY KEY,"
                     " applied_at double precision NOT NULL)")
        conn.execute("INSERT INTO schema_migrations VALUES (1, 0)")
        conn.execute("INSERT INTO api_keys VALUES ('key_old', 'h', 'old', 5, 0.5, 0, false)")
        now = time.time()
        (outcome,) = conn.execute(
            "SELECT outcome FROM openremix_enqueue('r-old', 'ideogram-3-remix', 'key_old',"
            " '{}', 1.0, %s, %s, 3, 0, NULL, NULL)", (now, now + 3600)).fetchone()
        assert outcome == "created"
    with pytest.raises(postgres_schema.SchemaError,
                       match=f"{postgres_schema.SCHEMA_VERSION - 1} migration"):
        PostgresJobStore(postgres_db, auto_migrate=False)

    store = opened()  # upgrades
    assert store.schema_version == postgres_schema.SCHEMA_VERSION
    key = store.get_api_key("key_old")
    assert key is not None and (key.free_credits, key.credits) == (0.0, 4.5)
    assert store.fail("r-old", None, "cancelled")  # refunds what version 1 debited
    key = store.get_api_key("key_old")
    assert key is not None and (key.free_credits, key.credits) == (0.5, 5.0)
    job, created = store.enqueue(new_job(key, cost=0.75))  # the new debit function
    assert created and job.extra == {"debit_free": 0.5, "debit_paid": 0.25}
    key = store.get_api_key("key_old")
    assert key is not None and (key.free_credits, key.credits) == (0.0, 4.75)


def test_a_database_newer_than_this_openremix_is_refused(postgres_db: str, opened) -> None:
    opened()  # creates the schema
    newer = postgres_schema.SCHEMA_VERSION + 1
    with psycopg.connect(postgres_db) as conn:
        conn.execute("INSERT INTO schema_migrations VALUES (%s, 0)", (newer,))
    for auto_migrate in (True, False):
        with pytest.raises(postgres_schema.SchemaError, match="newer"):
            PostgresJobStore(postgres_db, auto_migrate=auto_migrate)
    status = openremix("db", "status", url=postgres_db)
    assert status.returncode == 1 and "newer than this openremix" in status.stdout
    assert openremix("db", "upgrade", url=postgres_db).returncode == 2


# --- the whole service on PostgreSQL --------------------------------------------------------------
@pytest.mark.slow
def test_api_replicas_and_a_worker_process_share_the_postgres_store(
    postgres_db: str, start_process, tmp_path, astronaut_uri: str
) -> None:
    # The processes share the database and an outputs folder (the data folder), nothing else.
    env = {"OPENREMIX_DATABASE_URL": postgres_db}
    worker = start_process("worker", env=env, data_dir=tmp_path / "shared", ready=False)
    api_a = start_process("api", env=env, data_dir=tmp_path / "shared")
    api_b = start_process("api", env=env, data_dir=tmp_path / "shared")
    deadline = time.monotonic() + 120
    while "ready (engine" not in worker.log():  # a worker has no /readyz
        assert worker.proc.poll() is None and time.monotonic() < deadline, worker.log()
        time.sleep(0.1)

    body = {"image": astronaut_uri, "prompt": "old sepia photograph", "seed": 7,
            "rendering_speed": "TURBO", "magic_prompt": "OFF"}
    headers = {"x-api-key": TEST_KEY}
    submitted = httpx.post(f"{api_a.base_url}/v2/ideogram-3-remix", json=body, headers=headers,
                           timeout=30)
    assert submitted.status_code == 200, submitted.text
    request_id = submitted.json()["request_id"]
    while True:  # the idle worker is woken by the enqueue's NOTIFY
        status = httpx.get(f"{api_b.base_url}/v2/requests/{request_id}/status", headers=headers)
        if status.json()["status"] not in ("QUEUED", "PROCESSING"):
            break
        assert time.monotonic() < deadline, worker.log()
        time.sleep(0.05)
    assert status.json()["status"] == "COMPLETED", (status.text, worker.log())
    result = httpx.get(f"{api_b.base_url}/v2/requests/{request_id}", headers=headers).json()
    image = httpx.get(result["output"])
    assert image.status_code == 200 and image.content[:3] == b"\xff\xd8\xff"
