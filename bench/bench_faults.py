"""Faults under load: what happens to the jobs in flight when the infrastructure misbehaves.

Each scenario runs real openremix processes on loopback, on a fresh store, with the slowed
style engine (tests/support/slow_engine.py) so that jobs are running when the fault lands:

  baseline     `serve`, no fault (the same jobs and measurements: the table's baseline)
  sigkill      `api` + `worker`: the worker is SIGKILLed while it holds a job; a new one starts
  sqlite-lock  `serve`: another process holds SQLite's write lock for longer than the store
               waits for it (its busy wait plus its retries, jobs/sqlite/schema.py)
  sigterm      `serve` gets SIGTERM mid-run (what systemd, `docker stop` and Kubernetes send),
               then `serve` starts again on the same data folder
  postgres     `api` + `worker` on PostgreSQL (tests/support/pg_server.py); the server is stopped
               for longer than the store's reconnect budget, then started again
  disk-full    `serve` with its data folder (SQLite and outputs) on a small tmpfs that is
               filled up mid-run, then freed (needs mount permission, else the row is skipped)
  burst        `serve` with OPENREMIX_MAX_QUEUE_DEPTH: many concurrent submits at once

Columns: jobs in flight when the fault landed (accepted, not yet finished); lost (never
COMPLETED or FAILED, or gone from the store); re-run (claimed more than once); failed; charged
wrong (credits spent minus the cost of the COMPLETED jobs, in jobs; failed jobs are refunded);
recovered after (s from the end of the fault until every job was finished) and ready after (s
until /readyz said 200); during (what a client saw while it lasted: one submit and /readyz).
Rows are printed as they are measured.

    .venv/bin/python -m bench.bench_faults [--jobs 6] [--only sigkill,postgres] [--skip burst]
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench.fault_fleet import (
    COST,
    FINISH_TIMEOUT,
    HEADERS,
    MODEL,
    TERMINAL,
    DuringFault,
    Fleet,
    Knobs,
    job_body,
)
from openremix.jobs.sqlite import schema as sqlite_schema
from tests.support.faults import sqlite_write_lock
from tests.support.pg_server import PostgresCluster, unavailable_reason
from tests.support.small_fs import MountRefused, fill, small_tmpfs


@dataclass
class Options:
    jobs: int
    knobs: Knobs
    lock_seconds: float
    postgres_down_seconds: float
    disk_full_seconds: float
    disk_mb: int
    burst: int
    queue_limit: int
    logs: Path | None = None
    """Where to keep each scenario's process logs (None: deleted with the scenario)."""


@dataclass
class Row:
    fault: str
    in_flight: int = 0
    lost: int = 0
    rerun: int = 0
    failed: int = 0
    charged_wrong: int | None = 0
    recovered: float | None = None
    ready: float | None = None
    during: str = ""
    skipped: str = ""
    ended: list[str] = field(default_factory=list)
    """Processes that exited without being told to (a worker that gave up, ...)."""


COLUMNS = (f"{'fault':22} {'in flight':>9} {'lost':>5} {'re-run':>6} {'failed':>6} "
           f"{'charged wrong':>13} {'recovered after s':>17} {'ready after s':>13}  during")


def show(row: Row) -> str:
    if row.skipped:
        return f"{row.fault:22} {row.skipped}"

    def seconds(value: float | None) -> str:
        return "never" if value is None else f"{value:.1f}"

    wrong = "?" if row.charged_wrong is None else str(row.charged_wrong)
    return (f"{row.fault:22} {row.in_flight:9} {row.lost:5} {row.rerun:6} {row.failed:6} "
            f"{wrong:>13} {seconds(row.recovered):>17} {seconds(row.ready):>13}  {row.during}")


# --- measuring ------------------------------------------------------------------------------------
@contextmanager
def fleet_in(opts: Options, store_dir: Path | None = None, database_url: str = "",
             extra_env: dict[str, str] | None = None) -> Iterator[Fleet]:
    """A fleet on a fresh temporary folder (its store unless `store_dir` is given; its logs,
    unless --logs keeps them); every process is stopped at the end."""
    with tempfile.TemporaryDirectory(prefix="openremix-faults-") as tmp:
        logs = Path(tmp) / "logs"
        if opts.logs:
            opts.logs.mkdir(parents=True, exist_ok=True)
            logs = Path(tempfile.mkdtemp(prefix="scenario-", dir=opts.logs))
        fleet = Fleet(logs=logs, knobs=opts.knobs, store_dir=store_dir or Path(tmp) / "data",
                      database_url=database_url, extra_env=extra_env or {})
        try:
            yield fleet
        finally:
            fleet.stop()


def settle(fleet: Fleet, row: Row, fault_end: float, probe: DuringFault | None = None) -> Row:
    """Wait for every job to finish and the service to answer ready, then count."""
    ready_at = done_at = None
    deadline = fault_end + FINISH_TIMEOUT
    while time.monotonic() < deadline and (ready_at is None or done_at is None):
        if ready_at is None and fleet.ready():
            ready_at = time.monotonic()
        if done_at is None and (probe is None or probe.answered()) and fleet.all_finished():
            done_at = time.monotonic()
        time.sleep(0.2)
    if probe is not None:
        row.during = probe.report()
    row.ended = fleet.exited_by_themselves()
    if row.ended:
        row.during += f"; ENDED BY ITSELF: {', '.join(row.ended)}"
    jobs = fleet.jobs()
    states = [jobs.get(request_id, ("gone", 0)) for request_id in fleet.accepted]
    row.lost = sum(state not in TERMINAL for state, _ in states)
    row.rerun = sum(attempts > 1 for _, attempts in states)
    row.failed = sum(state == "FAILED" for state, _ in states)
    completed = sum(state == "COMPLETED" for state, _ in states)
    try:
        row.charged_wrong = round(abs(fleet.credits_spent() - COST * completed) / COST)
    except httpx.HTTPError:
        row.charged_wrong = None
    row.recovered = None if done_at is None else done_at - fault_end
    row.ready = None if ready_at is None else max(0.0, ready_at - fault_end)
    return row


def under_load(fleet: Fleet, jobs: int, *commands: str) -> Row:
    """Start the processes, submit the jobs and wait until a worker runs one."""
    for command in commands:
        fleet.start(command)
    codes = fleet.submit(jobs)
    if codes.count(200) != jobs:
        raise RuntimeError(f"submits before the fault answered {codes}")
    fleet.wait_processing()
    return Row("", in_flight=fleet.in_flight())


# --- the scenarios ------------------------------------------------------------------------------
def baseline(opts: Options) -> Row:
    with fleet_in(opts) as fleet:
        row = under_load(fleet, opts.jobs, "serve")
        return settle(fleet, row, time.monotonic())


def worker_sigkill(opts: Options) -> Row:
    with fleet_in(opts) as fleet:
        row = under_load(fleet, opts.jobs, "api", "worker")
        fleet.retire(fleet.procs[-1])
        fleet.start("worker", wait=False)  # its model load is part of the recovery
        return settle(fleet, row, time.monotonic())


def sqlite_lock(opts: Options) -> Row:
    with fleet_in(opts) as fleet:
        row = under_load(fleet, opts.jobs, "serve")
        with sqlite_write_lock(fleet.store_dir / "openremix.db", opts.lock_seconds):
            probe = DuringFault(fleet).start()
        probe.stop()  # the lock holder has let go
        return settle(fleet, row, time.monotonic(), probe)


def serve_sigterm(opts: Options) -> Row:
    with fleet_in(opts) as fleet:
        row = under_load(fleet, opts.jobs, "serve")
        signalled = time.monotonic()
        code = fleet.retire(fleet.procs[-1], "terminate")
        row.during = f"serve exit {code} after {time.monotonic() - signalled:.1f} s"
        fleet.start("serve", wait=False)  # same data folder and port
        return settle(fleet, row, time.monotonic())


def postgres_outage(opts: Options) -> Row:
    reason = unavailable_reason()
    if reason:
        return Row("", skipped=f"skipped: {reason}")
    cluster = PostgresCluster.start()
    try:
        with fleet_in(opts, database_url=cluster.create_database()) as fleet:
            row = under_load(fleet, opts.jobs, "api", "worker")
            cluster.stop_server()
            probe = DuringFault(fleet).start()
            time.sleep(opts.postgres_down_seconds)  # the outage itself
            cluster.start_server()
            probe.stop()
            return settle(fleet, row, time.monotonic(), probe)
    finally:
        cluster.stop()


def disk_full(opts: Options) -> Row:
    with tempfile.TemporaryDirectory(prefix="openremix-disk-") as tmp:
        try:
            with small_tmpfs(Path(tmp) / "small", opts.disk_mb) as mount:
                return disk_full_on(mount, opts)
        except MountRefused as exc:
            return Row("", skipped=f"skipped: {exc}")


def disk_full_on(mount: Path, opts: Options) -> Row:
    with fleet_in(opts, store_dir=mount) as fleet:
        row = under_load(fleet, opts.jobs, "serve")
        filler = fill(mount)
        probe = DuringFault(fleet).start()
        time.sleep(opts.disk_full_seconds)  # the full disk itself
        filler.unlink()
        probe.stop()
        return settle(fleet, row, time.monotonic(), probe)


def submit_burst(opts: Options) -> Row:
    env = {"OPENREMIX_MAX_QUEUE_DEPTH": str(opts.queue_limit)}
    with fleet_in(opts, extra_env=env) as fleet:
        fleet.start("serve")

        async def burst() -> list[httpx.Response | BaseException]:
            limits = httpx.Limits(max_connections=opts.burst)
            async with httpx.AsyncClient(limits=limits, timeout=120) as client:
                return await asyncio.gather(*(
                    client.post(f"{fleet.base}/v2/{MODEL}", headers=HEADERS, json=job_body(seed))
                    for seed in range(opts.burst)), return_exceptions=True)

        answers = asyncio.run(burst())
        burst_end = time.monotonic()
        ok = [a for a in answers if isinstance(a, httpx.Response) and a.status_code == 200]
        refused = [a for a in answers if isinstance(a, httpx.Response) and a.status_code == 503]
        fleet.accepted += [a.json()["request_id"] for a in ok]
        retry_after = sorted({a.headers.get("retry-after", "none") for a in refused})
        others = len(answers) - len(ok) - len(refused)
        spent = fleet.credits_spent()
        row = Row("", in_flight=fleet.in_flight())
        row.during = (f"{len(ok)} accepted, {len(refused)} x 503 (Retry-After "
                      f"{'/'.join(retry_after) or '-'}), {others} other; charged {spent:g} at "
                      f"once")
        return settle(fleet, row, burst_end)


Scenario = Callable[[Options], Row]
SCENARIOS: dict[str, tuple[str, Scenario]] = {
    "baseline": ("none (baseline)", baseline),
    "sigkill": ("worker SIGKILL", worker_sigkill),
    "sqlite-lock": ("SQLite lock {lock:g} s", sqlite_lock),
    "sigterm": ("serve SIGTERM+restart", serve_sigterm),
    "postgres": ("PostgreSQL down {pg:g} s", postgres_outage),
    "disk-full": ("disk full {disk:g} s", disk_full),
    "burst": ("{burst} submits, limit {limit}", submit_burst),
}


# --- the run ----------------------------------------------------------------------------------
def postgres_reconnect_seconds() -> float:
    """The PostgreSQL store's default reconnect budget (what `serve`/`api`/`worker` use)."""
    try:
        from openremix.jobs.postgres.store import PostgresJobStore
    except ImportError:
        return 30.0
    return float(inspect.signature(PostgresJobStore).parameters["reconnect_seconds"].default)


def parse(argv: list[str] | None) -> tuple[Options, list[str]]:
    store_waits = sqlite_schema.BUSY_TIMEOUT_SECONDS + sqlite_schema.LOCKED_RETRY_SECONDS
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=6, help="jobs submitted per scenario")
    parser.add_argument("--only", default="", help="comma-separated scenarios: " +
                        ", ".join(SCENARIOS))
    parser.add_argument("--skip", default="", help="comma-separated scenarios to leave out")
    parser.add_argument("--lease", type=float, default=5.0, help="OPENREMIX_LEASE_SECONDS")
    parser.add_argument("--step", type=float, default=0.2, help="slowed engine s per step")
    parser.add_argument("--lock-seconds", type=float, default=store_waits + 5,
                        help="SQLite lock held (default: past the store's busy wait + retries)")
    parser.add_argument("--postgres-down", type=float,
                        default=postgres_reconnect_seconds() + 10,
                        help="PostgreSQL down for (default: past the store's reconnect budget)")
    parser.add_argument("--disk-full", type=float, default=10.0, help="disk full for (s)")
    parser.add_argument("--disk-mb", type=int, default=16, help="size of the small tmpfs")
    parser.add_argument("--burst", type=int, default=100, help="concurrent submits")
    parser.add_argument("--queue-limit", type=int, default=10, help="OPENREMIX_MAX_QUEUE_DEPTH")
    parser.add_argument("--logs", type=Path, default=None,
                        help="keep the processes' logs in this folder (one subfolder a scenario)")
    args = parser.parse_args(argv)
    chosen = [s for s in args.only.split(",") if s] or list(SCENARIOS)
    unknown = set(chosen + [s for s in args.skip.split(",") if s]) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenario(s) {sorted(unknown)}; choose from {list(SCENARIOS)}")
    chosen = [s for s in chosen if s not in args.skip.split(",")]
    opts = Options(args.jobs, Knobs(args.lease, args.step), args.lock_seconds,
                   args.postgres_down, args.disk_full, args.disk_mb, args.burst, args.queue_limit,
                   args.logs)
    return opts, chosen


def header(opts: Options) -> str:
    one, five, fifteen = os.getloadavg()
    return "\n".join([
        f"machine: {os.cpu_count()} cores, load {one:.1f} / {five:.1f} / {fifteen:.1f} "
        f"(1 / 5 / 15 min) at start; Python {sys.version.split()[0]}; loopback only",
        f"settings: {opts.jobs} jobs a scenario, slowed style engine ({opts.knobs.step_seconds:g}"
        f" s a step), lease {opts.knobs.lease_seconds:g} s, {COST:g} credit a job; SQLite waits "
        f"{sqlite_schema.BUSY_TIMEOUT_SECONDS:g} s busy + {sqlite_schema.LOCKED_RETRY_SECONDS:g}"
        f" s retries; PostgreSQL reconnect {postgres_reconnect_seconds():g} s; disk: "
        f"{opts.disk_mb} MiB tmpfs",
    ])


def main(argv: list[str] | None = None) -> int:
    opts, chosen = parse(argv)
    print(header(opts), flush=True)
    print(COLUMNS, flush=True)
    bad = []
    for name in chosen:
        title, scenario = SCENARIOS[name]
        title = title.format(lock=opts.lock_seconds, pg=opts.postgres_down_seconds,
                             disk=opts.disk_full_seconds, burst=opts.burst,
                             limit=opts.queue_limit)
        started = time.monotonic()
        try:
            row = scenario(opts)
        except Exception as exc:
            traceback.print_exc(file=sys.stderr)
            row = Row("", skipped=f"error: {str(exc).strip().splitlines()[0][:150]}")
        row.fault = title
        print(show(row) + f"   [{time.monotonic() - started:.0f} s]", flush=True)
        if row.lost or row.charged_wrong or row.ended or row.skipped.startswith("error"):
            bad.append(title)
    one, five, fifteen = os.getloadavg()
    print(f"load at the end: {one:.1f} / {five:.1f} / {fifteen:.1f}", flush=True)
    if bad:
        print(f"lost, wrongly charged, a process ended or an error: {', '.join(bad)}",
              flush=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
