"""pgqueuer's drain, the reference `bench_queue` measures our PostgreSQL store against.

pgqueuer is not a dependency of openremix: `ensure_pgqueuer` installs the pinned version (and
asyncpg, which it drives PostgreSQL with) into a private folder outside the repository the first
time, and the worker processes put that folder at the end of `sys.path` (so the packages this
environment already has keep their own versions). Each worker process runs one `QueueManager`
with pgqueuer's defaults (batches of `batch_size`, acknowledgements buffered) and an entrypoint
that only counts; the drain ends when every job ran and pgqueuer's queue table is empty (the
acknowledgements reached the database).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

PGQUEUER_VERSION = "1.6.0"
PACKAGES = (f"pgqueuer=={PGQUEUER_VERSION}", "asyncpg")
FOLDER = Path.home() / ".cache" / "openremix-bench" / f"pgqueuer-{PGQUEUER_VERSION}"


def ensure_pgqueuer() -> Path:
    """The private folder holding pgqueuer; installs it there (pip) when missing."""
    if not (FOLDER / "pgqueuer").is_dir():
        print(f"installing {' + '.join(PACKAGES)} for the bench into {FOLDER} ...",
              file=sys.stderr)
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-"
                        "version-check", "--target", str(FOLDER), *PACKAGES], check=True)
    return FOLDER


def _use_folder(folder: str) -> None:
    if folder not in sys.path:
        sys.path.append(folder)


async def _connect(dsn: str) -> Any:
    import asyncpg

    return await asyncpg.connect(dsn)


def prepare(folder: str, dsn: str, jobs: int) -> None:
    """Install pgqueuer's schema in `dsn`'s (empty) database and enqueue `jobs` jobs."""
    _use_folder(folder)

    async def run() -> None:
        from pgqueuer.adapters.drivers.asyncpg import AsyncpgDriver
        from pgqueuer.queries import Queries

        conn = await _connect(dsn)
        queries = Queries(AsyncpgDriver(conn))
        await queries.install()
        for start in range(0, jobs, 1000):
            count = min(1000, jobs - start)
            await queries.enqueue(["bench"] * count, [b"{}"] * count, [0] * count)
        await conn.close()

    asyncio.run(run())


def queue_size(folder: str, dsn: str) -> int:
    """Jobs still in pgqueuer's queue table (not yet acknowledged)."""
    _use_folder(folder)

    async def run() -> int:
        conn = await _connect(dsn)
        try:
            return int(await conn.fetchval("SELECT count(*) FROM pgqueuer"))
        finally:
            await conn.close()

    return asyncio.run(run())


def work(folder: str, dsn: str, ready: Any, go: Any, done: Any, jobs: int,
         batch_size: int) -> None:
    """A worker process: one QueueManager until `jobs` jobs ran (all workers together)."""
    _use_folder(folder)

    async def run() -> None:
        from pgqueuer.adapters.drivers.asyncpg import AsyncpgDriver
        from pgqueuer.qm import QueueManager
        from pgqueuer.queries import Queries

        conn = await _connect(dsn)
        manager = QueueManager(Queries(AsyncpgDriver(conn)))

        @manager.entrypoint("bench")
        async def bench(job: Any) -> None:
            with done.get_lock():
                done.value += 1

        async def stop_when_all_done() -> None:  # the clock stops at the last ack, not here
            while done.value < jobs:
                await asyncio.sleep(0.05)
            manager.shutdown.set()

        ready.release()
        while not go.is_set():
            await asyncio.sleep(0.001)
        stopper = asyncio.create_task(stop_when_all_done())
        await manager.run(batch_size=batch_size)
        await stopper

    asyncio.run(run())


def wait_acknowledged(folder: str, dsn: str, timeout: float) -> None:
    """Until pgqueuer's queue table is empty (every acknowledgement is in the database)."""
    deadline = time.monotonic() + timeout
    while queue_size(folder, dsn) and time.monotonic() < deadline:
        time.sleep(0.01)
