"""Faults under load: what happens to the jobs in flight when the infrastructure misbehaves.

Scenarios (each on a fresh data folder, loopback, the slowed style engine so that jobs are
in flight when the fault lands):
- worker SIGKILL: `openremix api` + `openremix worker`; the worker is killed while it holds a
  job, a new one is started; the killed job must be re-claimed when its lease ends;
- SQLite lock 5 s: `openremix serve`; another process holds the database's write lock for
  5 s mid-run (submits meanwhile answer 503 + Retry-After), then lets go.
Baseline (same run): the same jobs with no fault. The table: fault, jobs in flight when it
landed, lost (not COMPLETED in the end), re-run (claimed more than once), recovered after
(seconds from the end of the fault until every job was finished).

    .venv/bin/python -m bench.bench_faults [--jobs 6]
"""

from __future__ import annotations

import argparse
import base64
import io
import os
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from PIL import Image
from skimage import data

from bench.bench_load import KEY, MODEL, free_port

ROOT = Path(__file__).resolve().parents[1]
HEADERS = {"x-api-key": KEY}


class Fleet:
    """openremix processes on one data folder."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.procs: list[subprocess.Popen] = []

    def start(self, command: str) -> subprocess.Popen:
        env = {**os.environ, "OPENREMIX_API_KEYS": KEY, "OPENREMIX_DATA_DIR": str(self.data_dir),
               "OPENREMIX_PORT": str(self.port), "OPENREMIX_RATE_LIMIT_PER_MINUTE": "0",
               "OPENREMIX_LOG_LEVEL": "warning", "OPENREMIX_LEASE_SECONDS": "2",
               "OPENREMIX_ENGINE": "tests.support.slow_engine:SlowStyleEngine",
               "SLOW_ENGINE_STEP_SECONDS": "0.2", "PYTHONPATH": str(ROOT)}
        proc = subprocess.Popen([sys.executable, "-m", "openremix.cli", command], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.procs.append(proc)
        return proc

    def wait_ready(self) -> None:
        for _ in range(600):
            try:
                if httpx.get(f"{self.base}/readyz").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError("server did not start")

    def jobs(self) -> dict[str, tuple[str, int]]:
        """request_id -> (state, attempts), read from the store itself."""
        with sqlite3.connect(self.data_dir / "openremix.db", timeout=30) as conn:
            rows = conn.execute("SELECT request_id, state, attempts FROM jobs").fetchall()
        return {row[0]: (row[1], row[2]) for row in rows}

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
                proc.wait(30)


def submit(fleet: Fleet, image: str, count: int) -> list[httpx.Response]:
    return [httpx.post(f"{fleet.base}/v2/{MODEL}", headers=HEADERS, timeout=60, json={
        "image": image, "prompt": "faults", "seed": i, "rendering_speed": "TURBO"})
        for i in range(count)]


def wait_finished(fleet: Fleet, timeout: float = 120) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(state in ("COMPLETED", "FAILED") for state, _ in fleet.jobs().values()):
            return time.monotonic()
        time.sleep(0.1)
    return time.monotonic()


def wait_processing(fleet: Fleet) -> None:
    for _ in range(300):
        if any(state == "PROCESSING" for state, _ in fleet.jobs().values()):
            return
        time.sleep(0.05)
    raise RuntimeError("no job was ever taken")


def kill_worker(fleet: Fleet, image: str, jobs: int) -> int:
    """The fault: SIGKILL the worker mid-job, start another. Returns the jobs in flight."""
    wait_processing(fleet)
    in_flight = sum(state != "COMPLETED" for state, _ in fleet.jobs().values())
    fleet.procs[-1].kill()
    fleet.procs[-1].wait()
    fleet.start("worker")
    return in_flight


def hold_sqlite_lock(fleet: Fleet, image: str, jobs: int) -> int:
    """The fault: another process holds the write lock for 5 s while clients keep submitting."""
    wait_processing(fleet)
    in_flight = sum(state != "COMPLETED" for state, _ in fleet.jobs().values())
    conn = sqlite3.connect(fleet.data_dir / "openremix.db", isolation_level=None,
                           check_same_thread=False)
    conn.execute("BEGIN IMMEDIATE")
    release = threading.Timer(5.0, lambda: conn.execute("ROLLBACK"))
    release.start()
    during = submit(fleet, image, 2)  # wait for the lock; 503 + Retry-After if it outlasts them
    release.join()
    conn.close()
    assert all(r.status_code in (200, 503) for r in during), [r.status_code for r in during]
    return in_flight


def no_fault(fleet: Fleet, image: str, jobs: int) -> int:
    wait_processing(fleet)
    return sum(state != "COMPLETED" for state, _ in fleet.jobs().values())


Scenario = Callable[[Fleet, str, int], int]


def run(name: str, processes: list[str], fault: Scenario, image: str, jobs: int) -> tuple:
    with tempfile.TemporaryDirectory() as tmp:
        fleet = Fleet(Path(tmp))
        try:
            fleet.start(processes[0])
            fleet.wait_ready()
            for command in processes[1:]:
                fleet.start(command)
            accepted = [r for r in submit(fleet, image, jobs) if r.status_code == 200]
            assert len(accepted) == jobs
            in_flight = fault(fleet, image, jobs)
            fault_over = time.monotonic()
            finished = wait_finished(fleet)
            states = fleet.jobs()
        finally:
            fleet.stop()
    lost = sum(state != "COMPLETED" for state, _ in states.values())
    rerun = sum(attempts > 1 for _, attempts in states.values())
    return name, in_flight, lost, rerun, finished - fault_over


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=6)
    args = parser.parse_args()
    buffer = io.BytesIO()
    Image.fromarray(data.astronaut()).resize((256, 256)).save(buffer, "JPEG")
    image = "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()
    rows = [
        run("none (baseline)", ["serve"], no_fault, image, args.jobs),
        run("worker SIGKILL", ["api", "worker"], kill_worker, image, args.jobs),
        run("SQLite lock 5 s", ["serve"], hold_sqlite_lock, image, args.jobs),
    ]
    print(f"{args.jobs} jobs per scenario, loopback, slowed style engine, lease 2 s")
    print(f"{'fault':18} {'in flight':>9} {'lost':>5} {'re-run':>7} {'recovered after s':>18}")
    for name, in_flight, lost, rerun, recovered in rows:
        print(f"{name:18} {in_flight:9} {lost:5} {rerun:7} {recovered:18.1f}")
        assert lost == 0


if __name__ == "__main__":
    main()
