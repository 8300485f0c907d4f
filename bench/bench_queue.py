"""Jobs/s through each job store with no engine: enqueue -> claim -> complete.

For SQLite and PostgreSQL, with 1 and with 4 worker processes (each claims and completes):
"in turn" enqueues N jobs from one process (as one API replica does), then drains them, and
reports the rate of the whole path one job takes, 1 / (1/enqueue + 1/claim+complete); "at once"
runs the producer and the workers together, as a running service does, and reports N / (first
enqueue to last finish). Workers open their store first and start together, so no rate
includes process start-up. "x baseline" is the at-once rate over the baseline.

Baselines (same run): the least a durable queue in that database can do per job - one INSERT
and one UPDATE, each its own transaction, on a bare table - so the ratio shows what each store's
bookkeeping (leases, credits, idempotency, JSON, notifications) costs.

PostgreSQL runs on `--postgres-url` (an empty database: the store creates its tables), or on a
throwaway cluster this script starts with Debian's binaries (tests/support/pg_server.py;
install them
with scripts/install_postgres.sh) and `synchronous_commit=off`: the guarantee the SQLite store
has with WAL and `synchronous=NORMAL` (a power cut may lose the last commits, never corrupt).

    .venv/bin/python -m bench.bench_queue [--jobs 2000] [--postgres-url URL | --no-postgres]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sqlite3
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from openremix.jobs.model import NewJob
from openremix.jobs.sqlite.store import SQLiteJobStore
from openremix.jobs.store import JobStore

PARAMS = {"image": "https://example.com/a.jpg", "prompt": "a cat", "seed": 1,
          "resolution": "1024x1024"}
SPAWN = mp.get_context("spawn")
WAIT = 120.0


def open_store(target: str) -> JobStore:
    """A postgresql:// URL, else an SQLite file path."""
    if target.startswith(("postgresql://", "postgres://")):
        from openremix.jobs.postgres.store import PostgresJobStore

        return PostgresJobStore(target, pool_size=2)
    return SQLiteJobStore(target)


# --- baselines ------------------------------------------------------------------------------------
def _bare_loop(execute: Callable[..., Any], jobs: int) -> float:
    start = time.perf_counter()
    for _ in range(jobs):
        job_id = uuid.uuid4().hex
        execute("INSERT INTO q VALUES ({0}, 'QUEUED', '{{}}')", job_id)
        execute("UPDATE q SET state = 'COMPLETED' WHERE id = {0}", job_id)
    return jobs / (time.perf_counter() - start)


def sqlite_baseline(path: Path, jobs: int) -> float:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("CREATE TABLE q (id TEXT PRIMARY KEY, state TEXT, body TEXT)")
    rate = _bare_loop(lambda sql, job_id: db.execute(sql.format("?"), (job_id,)), jobs)
    db.close()
    return rate


def postgres_baseline(url: str, jobs: int) -> float:
    import psycopg

    with psycopg.connect(url, autocommit=True) as db:
        db.execute("CREATE TABLE q (id text PRIMARY KEY, state text, body text)")
        return _bare_loop(lambda sql, job_id: db.execute(sql.format("%s"), (job_id,)), jobs)


# --- through a store ------------------------------------------------------------------------------
def _work(target: str, worker_id: str, ready: Any, go: Any, done: Any, jobs: int) -> None:
    """A worker process: claim and complete until `jobs` jobs are done by all workers together
    (an empty queue is not the end while the producer may still be enqueuing)."""
    store = open_store(target)
    idle = getattr(store, "wait_for_work", None) or (lambda timeout: time.sleep(0.001))
    ready.release()
    go.wait(WAIT)
    while done.value < jobs:
        job = store.claim_next(worker_id, 30.0)
        if job is None:
            idle(0.01)
            continue
        store.complete(job.request_id, worker_id, {"output_key": "x.jpg"})
        with done.get_lock():
            done.value += 1
    store.close()


def _enqueue(store: JobStore, key_id: str, jobs: int) -> float:
    """Enqueue `jobs` jobs; the seconds it took."""
    start = time.perf_counter()
    for _ in range(jobs):
        store.enqueue(NewJob(str(uuid.uuid4()), "ideogram-3-remix", key_id, PARAMS, 0.0))
    return time.perf_counter() - start


def through_store(target: str, jobs: int, workers: int, *, at_once: bool) -> tuple[float, float]:
    """Enqueue `jobs` from this process and drain them with `workers` processes.

    One after the other: (enqueue jobs/s, claim+complete jobs/s). At once (`at_once`, as a
    running service does): (enqueue jobs/s, jobs/s from the first enqueue to the last finish).
    """
    store = open_store(target)
    key, _ = store.create_api_key("bench", credits=1e9)
    enqueue_seconds = 0.0 if at_once else _enqueue(store, key.key_id, jobs)
    ready, go, done = SPAWN.Semaphore(0), SPAWN.Event(), SPAWN.Value("i", 0)
    procs = [SPAWN.Process(target=_work, args=(target, f"w{i}", ready, go, done, jobs))
             for i in range(workers)]
    for proc in procs:
        proc.start()
    for _ in procs:
        if not ready.acquire(timeout=WAIT):
            raise RuntimeError("a worker process did not start")
    start = time.perf_counter()
    go.set()
    if at_once:
        enqueue_seconds = _enqueue(store, key.key_id, jobs)
    for proc in procs:
        proc.join(WAIT)
    drain_rate = jobs / (time.perf_counter() - start)
    assert done.value == jobs and store.queue_depth() == 0, (done.value, jobs)
    store.close()
    return jobs / enqueue_seconds, drain_rate


# --- PostgreSQL server ----------------------------------------------------------------------------
@contextmanager
def postgres_databases(url: str | None) -> Iterator[Callable[[], str] | None]:
    """Yields a maker of empty databases: on `url`'s server, or on a throwaway cluster.
    Yields None (with a note) when no server can be had."""
    from tests.support.pg_server import PostgresCluster, unavailable_reason

    if url is not None:
        yield lambda: _fresh_database(url)
        return
    reason = unavailable_reason()
    if reason is not None:
        print(f"PostgreSQL skipped: {reason}", file=sys.stderr)
        yield None
        return
    cluster = PostgresCluster.start({"synchronous_commit": "off"})
    try:  # over the Unix socket, as a store on the database's own machine would connect
        yield lambda: cluster.socket_url(cluster.create_database().rsplit("/", 1)[1])
    finally:
        cluster.stop()


def _fresh_database(url: str) -> str:
    """A new database on the server of `url` (which names a database we may create from)."""
    import psycopg

    name = "openremix_bench_" + uuid.uuid4().hex[:8]
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return urlsplit(url)._replace(path=f"/{name}").geturl()


# --- the table -------------------------------------------------------------------------------
def store_rows(store: str, baseline: float, jobs: int, target: Callable[[], str]) -> list[str]:
    """Table rows: the baseline, then one row per worker count (each run on a new store)."""
    rows = [f"{store:11} {'baseline':>8} {'':>8} {'':>15} {baseline:12.0f} {'':>8} {1:9.2f}"]
    for workers in (1, 4):
        enqueue, drain = through_store(target(), jobs, workers, at_once=False)
        in_turn = 1 / (1 / enqueue + 1 / drain)
        _, at_once = through_store(target(), jobs, workers, at_once=True)
        rows.append(f"{store:11} {workers:8d} {enqueue:8.0f} {drain:15.0f} {in_turn:12.0f}"
                    f" {at_once:8.0f} {at_once / baseline:9.2f}")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--postgres-url", help="an existing server's database (else: a "
                        "throwaway cluster)")
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        made = iter(range(1000))
        rows = store_rows("SQLite", sqlite_baseline(folder / "baseline.db", args.jobs),
                          args.jobs, lambda: str(folder / f"store{next(made)}.db"))
    if not args.no_postgres:
        with postgres_databases(args.postgres_url) as new_database:
            if new_database is not None:
                baseline = postgres_baseline(new_database(), args.jobs)
                rows += store_rows("PostgreSQL", baseline, args.jobs, new_database)
    print(f"{args.jobs} jobs, no engine, jobs/s. in turn: all enqueued, then drained, 1 / "
          "(1/enqueue + 1/claim+complete); at once: enqueue and workers running together, "
          "first enqueue to last finish; baseline: bare INSERT+UPDATE in the same database")
    print(f"{'store':11} {'workers':>8} {'enqueue':>8} {'claim+complete':>15} {'end to end:':>12}"
          f" {'':>8} {'x':>9}")
    print(f"{'':11} {'':>8} {'':>8} {'':>15} {'in turn':>12} {'at once':>8} {'baseline':>9}")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
