"""Jobs/s through the SQLite job store with no engine: enqueue -> claim -> complete.

Baseline (same run): the least a durable SQLite queue can do per job — one INSERT and one
UPDATE, each its own WAL transaction, on a bare table — so the ratio shows what the store's
bookkeeping (leases, credits, idempotency, JSON) costs.

    .venv/bin/python bench/bench_queue.py [--jobs 2000]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sqlite3
import tempfile
import time
import uuid
from pathlib import Path

from openremix.jobs.model import NewJob
from openremix.jobs.sqlite import SQLiteJobStore

PARAMS = {"image": "https://example.com/a.jpg", "prompt": "a cat", "seed": 1,
          "resolution": "1024x1024"}


def baseline(path: Path, jobs: int) -> float:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("CREATE TABLE q (id TEXT PRIMARY KEY, state TEXT, body TEXT)")
    start = time.perf_counter()
    for _ in range(jobs):
        job_id = uuid.uuid4().hex
        db.execute("INSERT INTO q VALUES (?, 'QUEUED', ?)", (job_id, "{}"))
        db.execute("UPDATE q SET state='COMPLETED' WHERE id=?", (job_id,))
    return jobs / (time.perf_counter() - start)


def _enqueue(store: SQLiteJobStore, key_id: str, jobs: int) -> None:
    for _ in range(jobs):
        store.enqueue(NewJob(str(uuid.uuid4()), "ideogram-3-remix", key_id, PARAMS, 0.0))


def _drain(path: str, worker_id: str, counter: mp.Value) -> None:  # type: ignore[valid-type]
    store = SQLiteJobStore(path)
    done = 0
    while (job := store.claim_next(worker_id, 30.0)) is not None:
        store.complete(job.request_id, worker_id, {"output_key": "x.jpg"})
        done += 1
    with counter.get_lock():
        counter.value += done
    store.close()


def through_store(path: Path, jobs: int, workers: int) -> tuple[float, float]:
    """(enqueue jobs/s, claim+complete jobs/s with `workers` processes)."""
    store = SQLiteJobStore(path)
    key, _ = store.create_api_key("bench", credits=1e9)
    start = time.perf_counter()
    _enqueue(store, key.key_id, jobs)
    enqueue_rate = jobs / (time.perf_counter() - start)
    counter = mp.get_context("spawn").Value("i", 0)
    procs = [mp.get_context("spawn").Process(target=_drain, args=(str(path), f"w{i}", counter))
             for i in range(workers)]
    start = time.perf_counter()
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join()
    drain_rate = jobs / (time.perf_counter() - start)
    assert counter.value == jobs, (counter.value, jobs)
    store.close()
    return enqueue_rate, drain_rate


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = baseline(Path(tmp) / "baseline.db", args.jobs)
        rows = [("bare INSERT+UPDATE (baseline)", base, None)]
        for workers in (1, 4):
            enq, drain = through_store(Path(tmp) / f"store{workers}.db", args.jobs, workers)
            end_to_end = 1 / (1 / enq + 1 / drain)
            rows.append((f"store enqueue ({args.jobs} jobs)", enq, None))
            rows.append((f"store claim+complete, {workers} worker proc(s)", drain, None))
            rows.append((f"store end to end, {workers} worker proc(s)", end_to_end, None))
    print(f"{'path':48} {'jobs/s':>10} {'x baseline':>11}")
    for name, rate, _ in rows:
        print(f"{name:48} {rate:10.0f} {rate / base:11.2f}")


if __name__ == "__main__":
    main()
