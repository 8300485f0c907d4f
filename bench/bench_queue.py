"""Queue throughput with no engine: drain N queued jobs (claim + complete), jobs/s.

Three systems in one run, each with 1, 4 and 16 worker processes, on the same machine and the
same durability settings:

- `openremix-postgres`: our PostgreSQL store; each worker claims up to `--batch` jobs per round
  trip (`claim_batch`, fair across keys) and acknowledges them together (`complete_many`);
- `pgqueuer` (pinned, installed by the bench into a private folder: `queue_pgqueuer`): one
  `QueueManager` per worker process, batches of `--batch`, its buffered acknowledgements;
- `openremix-sqlite`: our SQLite store, the same worker loop as PostgreSQL.

`--batch 1` measures one job per claim and per acknowledgement instead (`claim_next`,
`complete`). The jobs are enqueued first (not timed); workers open their connections, then
start together; the time runs from the start until every job is acknowledged in the database.
A new database (file) for every measurement; each cell is the best of `--rounds`.

PostgreSQL runs on a throwaway cluster this script starts with Debian's binaries
(tests/support/pg_server.py; scripts/install_postgres.sh installs them) with
`synchronous_commit=off`, for every PostgreSQL row alike: the guarantee the SQLite store has with
WAL and `synchronous=NORMAL` (a power cut may lose the last commits, never corrupt). Or on
`--postgres-url` (a database we may create others from), as that server is configured.

    .venv/bin/python -m bench.bench_queue [--jobs 4000] [--batch 10] [--json]

With `--json`, stdout is one JSON object of the drain rates, `{"openremix-postgres": {"1": ...,
"4": ..., "16": ...}, "pgqueuer": {...}, "openremix-sqlite": {...}}`, and the table goes to
stderr.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench import queue_pgqueuer
from openremix.jobs.model import NewJob
from openremix.jobs.sqlite.store import SQLiteJobStore
from openremix.jobs.store import JobStore

PARAMS = {"image": "https://example.com/a.jpg", "prompt": "a cat", "seed": 1,
          "resolution": "1024x1024"}
RESULT = {"output_key": "x.jpg", "content_type": "image/jpeg", "file_size": 1}
SPAWN = mp.get_context("spawn")
WAIT = 300.0
WORKER_COUNTS = (1, 4, 16)
SYSTEMS = ("openremix-postgres", "pgqueuer", "openremix-sqlite")


def open_store(target: str) -> JobStore:
    """A postgresql:// URL, else an SQLite file path."""
    if target.startswith(("postgresql://", "postgres://")):
        from openremix.jobs.postgres.store import PostgresJobStore

        return PostgresJobStore(target, pool_size=2)
    return SQLiteJobStore(target)


# --- our stores ------------------------------------------------------------------------------
def _drain_worker(ready: Any, go: Any, target: str, worker_id: str, done: Any, jobs: int,
                  batch: int) -> None:
    """A worker process: claim and complete until all `jobs` are done (all workers together)."""
    store = open_store(target)
    idle = getattr(store, "wait_for_work", None) or time.sleep  # as the worker loop waits
    ready.release()
    go.wait(WAIT)
    while done.value < jobs:
        if batch == 1:
            job = store.claim_next(worker_id, 30.0)
            finished = int(job is not None and store.complete(job.request_id, worker_id, RESULT))
        else:
            claimed = store.claim_batch(worker_id, 30.0, batch)
            finished = len(store.complete_many(
                worker_id, {job.request_id: RESULT for job in claimed}))
        if not finished:
            idle(0.01)  # the others are finishing the last jobs
            continue
        with done.get_lock():
            done.value += finished
    store.close()


def _enqueue(store: JobStore, jobs: int) -> float:
    """Enqueue `jobs` jobs for one key; the enqueue rate (jobs/s)."""
    key, _ = store.create_api_key("bench", credits=1e9)
    start = time.perf_counter()
    for _ in range(jobs):
        store.enqueue(NewJob(str(uuid.uuid4()), "ideogram-3-remix", key.key_id, PARAMS, 0.0))
    return jobs / (time.perf_counter() - start)


def _run_workers(target: Callable[..., None], args: Callable[[int], tuple], workers: int,
                 finished: Callable[[], bool]) -> float:
    """Start `workers` processes (`target(ready, go, *args(i))`), release them together once
    all are ready, and return the seconds until `finished()`."""
    ready, go = SPAWN.Semaphore(0), SPAWN.Event()
    procs = [SPAWN.Process(target=target, args=(ready, go, *args(i))) for i in range(workers)]
    for proc in procs:
        proc.start()
    for _ in procs:
        if not ready.acquire(timeout=WAIT):
            raise RuntimeError("a worker process did not start")
    start = time.perf_counter()
    go.set()
    deadline = time.monotonic() + WAIT
    while not finished():
        if time.monotonic() > deadline:
            raise RuntimeError("the drain did not finish")
        time.sleep(0.002)
    seconds = time.perf_counter() - start
    for proc in procs:
        proc.join(WAIT)
    return seconds


def drain_store(target: str, jobs: int, workers: int, batch: int) -> tuple[float, float]:
    """(enqueue jobs/s, drain jobs/s) of our store at `target` with `workers` processes."""
    store = open_store(target)
    enqueue_rate = _enqueue(store, jobs)
    done = SPAWN.Value("i", 0)
    seconds = _run_workers(
        _drain_worker,
        lambda i: (target, f"w{i}", done, jobs, batch),
        workers,
        lambda: done.value >= jobs,
    )
    assert store.queue_depth() == 0, store.queue_depth()
    store.close()
    return enqueue_rate, jobs / seconds


def _pgqueuer_worker(ready: Any, go: Any, folder: str, dsn: str, done: Any, jobs: int,
                     batch: int) -> None:
    queue_pgqueuer.work(folder, dsn, ready, go, done, jobs, batch)


def drain_pgqueuer(folder: str, dsn: str, jobs: int, workers: int, batch: int) -> float:
    """pgqueuer's drain rate (jobs/s) on `dsn`'s new database with `workers` processes."""
    queue_pgqueuer.prepare(folder, dsn, jobs)
    done = SPAWN.Value("i", 0)

    def finished() -> bool:
        if done.value < jobs:
            return False
        queue_pgqueuer.wait_acknowledged(folder, dsn, WAIT)
        return True

    seconds = _run_workers(_pgqueuer_worker, lambda i: (folder, dsn, done, jobs, batch),
                           workers, finished)
    return jobs / seconds


# --- PostgreSQL server -----------------------------------------------------------------------
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
    cluster = PostgresCluster.start({"synchronous_commit": "off", "max_connections": "200"})
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
def _best(table: dict[str, float], key: str, rate: float) -> None:
    table[key] = max(rate, table.get(key, 0.0))


def measure(args: argparse.Namespace) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
    """Drain rates per system and worker count (the best of `args.rounds`; each round runs the
    worker counts in the other direction, so that a load that rises or falls during the run
    does not favour one column), and our stores' enqueue rates."""
    rates: dict[str, dict[str, float]] = {system: {} for system in SYSTEMS}
    enqueue: dict[str, float] = {}
    orders = [WORKER_COUNTS if n % 2 == 0 else WORKER_COUNTS[::-1] for n in range(args.rounds)]
    with postgres_databases(args.postgres_url) as new_database:
        if new_database is not None:
            folder = str(queue_pgqueuer.ensure_pgqueuer())
            for workers in (w for order in orders for w in order):
                enqueued, rate = drain_store(new_database(), args.jobs, workers, args.batch)
                _best(enqueue, "openremix-postgres", enqueued)
                _best(rates["openremix-postgres"], str(workers), rate)
                _best(rates["pgqueuer"], str(workers), drain_pgqueuer(
                    folder, new_database(), args.jobs, workers, args.batch))
    with tempfile.TemporaryDirectory() as tmp:
        for n, workers in enumerate(w for order in orders for w in order):
            path = str(Path(tmp) / f"store-{n}.db")
            enqueued, rate = drain_store(path, args.jobs, workers, args.batch)
            _best(enqueue, "openremix-sqlite", enqueued)
            _best(rates["openremix-sqlite"], str(workers), rate)
    return rates, enqueue


def table(rates: dict[str, dict[str, float]], enqueue: dict[str, float],
          args: argparse.Namespace) -> str:
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    lines = [
        f"{args.jobs} queued jobs drained (claim + complete), no engine, jobs/s, best of "
        f"{args.rounds}; batches of {args.batch}; {os.cpu_count()} CPUs, load average before "
        f"the run {args.load}, after {load}",
        f"{'system':20} " + " ".join(f"{f'{w} worker' + ('s' if w > 1 else ''):>10}"
                                     for w in WORKER_COUNTS)
        + f" {'16 / 1':>8} {'enqueue':>9}",
    ]
    for system in SYSTEMS:
        row = rates[system]
        if not row:
            continue
        cells = " ".join(f"{row[str(w)]:10.0f}" for w in WORKER_COUNTS)
        flat = row[str(WORKER_COUNTS[-1])] / row[str(WORKER_COUNTS[0])]
        queued = f"{enqueue[system]:9.0f}" if system in enqueue else f"{'':>9}"
        lines.append(f"{system:20} {cells} {flat:8.2f} {queued}")
    ours, theirs = rates["openremix-postgres"], rates["pgqueuer"]
    if ours and theirs:
        lines.append(f"{'postgres / pgqueuer':20} "
                     + " ".join(f"{ours[str(w)] / theirs[str(w)]:9.2f}x" for w in WORKER_COUNTS))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=4000)
    parser.add_argument("--batch", type=int, default=10, help="jobs per claim (both queues)")
    parser.add_argument("--rounds", type=int, default=2, help="measurements per cell (the "
                        "best is shown): a shared machine's load comes and goes")
    parser.add_argument("--postgres-url", help="an existing server's database (else: a "
                        "throwaway cluster)")
    parser.add_argument("--json", action="store_true", help="stdout: the rates as JSON")
    args = parser.parse_args()
    args.load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    rates, enqueue = measure(args)
    text = table(rates, enqueue, args)
    if args.json:
        print(text, file=sys.stderr)
        print(json.dumps({system: {w: round(r, 1) for w, r in row.items()}
                          for system, row in rates.items()}))
    else:
        print(text)


if __name__ == "__main__":
    main()
