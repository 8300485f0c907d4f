"""Job stores shared by separate processes, as the API and its workers share them.

Children are started with `spawn` (each opens its own store, as a real worker does) and use the
real clock; every wait is bounded so a broken store fails the test instead of hanging it. The
claim tests run against SQLite and PostgreSQL (a store is named by its target: a file path or a
postgresql:// URL); the killed-inside-a-write test is about SQLite's file lock.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.queues
import multiprocessing.synchronize
import os
import signal
import sqlite3
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from openremix.jobs.model import JobState, NewJob
from openremix.jobs.sqlite.store import SQLiteJobStore
from openremix.jobs.store import JobStore

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals"),
]

SPAWN = multiprocessing.get_context("spawn")
WAIT = 20.0
"""Longest wait for any child, in seconds."""


def open_store(target: str) -> JobStore:
    """The store at `target`: a postgresql:// URL, else an SQLite file path."""
    if target.startswith("postgresql://"):
        from openremix.jobs.postgres.store import PostgresJobStore

        return PostgresJobStore(target, pool_size=2)
    return SQLiteJobStore(target)


# --- what the child processes run (module level, so that spawn can import it) -------------------
def claim_until_empty(
    target: str,
    worker_id: str,
    start: multiprocessing.synchronize.Event,
    out: multiprocessing.queues.Queue[Any],
) -> None:
    """Claim and complete jobs until none is left; report (worker_id, claimed, refused)."""
    store = open_store(target)
    start.wait(WAIT)
    claimed: list[str] = []
    refused: list[str] = []
    while (job := store.claim_next(worker_id, 30.0)) is not None:
        claimed.append(job.request_id)
        if not store.complete(job.request_id, worker_id, {"worker": worker_id}):
            refused.append(job.request_id)
    store.close()
    out.put((worker_id, claimed, refused))


def claim_then_hang(
    target: str, worker_id: str, lease_seconds: float, out: multiprocessing.queues.Queue[Any]
) -> None:
    """Claim one job, say which, then wait to be killed."""
    store = open_store(target)
    job = store.claim_next(worker_id, lease_seconds)
    out.put(None if job is None else job.request_id)
    time.sleep(60)


def hold_write_lock_then_hang(path: str, out: multiprocessing.queues.Queue[Any]) -> None:
    """Open a write transaction, change every job, say so, then wait to be killed."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("UPDATE jobs SET state = 'FAILED', error = 'never committed'")
    out.put("locked")
    time.sleep(60)


# --- helpers -------------------------------------------------------------------------------------
@pytest.fixture(params=["sqlite", "postgres"])
def target(request: pytest.FixtureRequest) -> str:
    """Where the store lives: a new SQLite file, or a new database on the test cluster."""
    if request.param == "postgres":
        return str(request.getfixturevalue("postgres_db"))
    tmp_path: Path = request.getfixturevalue("tmp_path")
    return str(tmp_path / "jobs.sqlite3")


def filled_store(target: str | Path, jobs: int) -> tuple[JobStore, list[str]]:
    store = open_store(str(target))
    key, _ = store.create_api_key("load", credits=float(jobs))
    ids = []
    for _ in range(jobs):
        new = NewJob(str(uuid.uuid4()), "ideogram-3-remix", key.key_id, {"prompt": "p"}, 1.0)
        ids.append(store.enqueue(new)[0].request_id)
    return store, ids


def kill(process: multiprocessing.process.BaseProcess) -> None:
    assert process.pid is not None
    os.kill(process.pid, signal.SIGKILL)
    process.join(WAIT)
    assert process.exitcode == -signal.SIGKILL


def run_claimers(target: str, workers: int) -> dict[str, tuple[list[str], list[str]]]:
    """Run `workers` claim_until_empty processes at once; their reports by worker id."""
    start, out = SPAWN.Event(), SPAWN.Queue()
    processes = [
        SPAWN.Process(target=claim_until_empty, args=(target, f"proc-{i}", start, out))
        for i in range(workers)
    ]
    for process in processes:
        process.start()
    time.sleep(0.2)  # let them open their stores so that they start claiming together
    start.set()
    reports: dict[str, tuple[list[str], list[str]]] = {}
    for _ in processes:
        worker_id, claimed, refused = out.get(timeout=WAIT)
        reports[worker_id] = (claimed, refused)
    for process in processes:
        process.join(WAIT)
        assert process.exitcode == 0
    return reports


# --- tests ---------------------------------------------------------------------------------------
def test_four_processes_complete_every_job_exactly_once(target: str) -> None:
    store, ids = filled_store(target, 400)
    reports = run_claimers(target, workers=4)

    claims = [(worker, rid) for worker, (claimed, _) in reports.items() for rid in claimed]
    claimed_ids = [rid for _, rid in claims]
    assert len(claimed_ids) == len(set(claimed_ids)) == 400, "a job was claimed twice"
    assert set(claimed_ids) == set(ids)
    assert all(not refused for _, refused in reports.values())
    for worker, rid in claims:
        job = store.get(rid)
        assert job is not None and job.state is JobState.COMPLETED
        assert job.result == {"worker": worker} and job.attempts == 1
    assert store.queue_depth() == 0
    store.close()


def test_job_of_a_killed_worker_is_finished_once_by_another(target: str) -> None:
    store, [request_id] = filled_store(target, 1)
    out: multiprocessing.queues.Queue[Any] = SPAWN.Queue()
    doomed = SPAWN.Process(target=claim_then_hang, args=(target, "doomed", 0.5, out))
    doomed.start()
    assert out.get(timeout=WAIT) == request_id
    kill(doomed)

    job = store.get(request_id)
    assert job is not None and job.state is JobState.PROCESSING and job.lease_owner == "doomed"
    assert job.lease_expires_at is not None
    time.sleep(max(0.0, job.lease_expires_at - time.time()) + 0.05)
    assert store.requeue_expired_leases() == 1

    reports = run_claimers(target, workers=1)
    assert reports == {"proc-0": ([request_id], [])}
    job = store.get(request_id)
    assert job is not None and job.state is JobState.COMPLETED
    assert job.result == {"worker": "proc-0"} and job.attempts == 2
    assert not store.complete(request_id, "doomed", {"worker": "doomed"})
    store.close()


def test_process_killed_inside_a_write_leaves_the_store_usable(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite3"
    store, [request_id] = filled_store(path, 1)
    out: multiprocessing.queues.Queue[Any] = SPAWN.Queue()
    doomed = SPAWN.Process(target=hold_write_lock_then_hang, args=(str(path), out))
    doomed.start()
    assert out.get(timeout=WAIT) == "locked"
    kill(doomed)

    job = store.claim_next("survivor", 30.0)  # the kernel dropped the dead process's lock
    assert job is not None and job.request_id == request_id
    assert job.error is None  # its uncommitted change is gone
    assert store.complete(request_id, "survivor", {"ok": True})
    store.close()
