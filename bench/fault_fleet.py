"""The processes, clients and measurements of `bench/bench_faults.py`.

A `Fleet` is the openremix processes of one scenario (`serve`, or `api` + `worker`s) on one
store: an SQLite data folder or a PostgreSQL database. It submits jobs through the HTTP API the
way a client does, and reads each job's state and attempts from the store itself (the API may
be down during a fault). Every wait is on a condition (readiness, a state), never a fixed
sleep, with limits generous enough for a model load on a loaded machine.
"""

from __future__ import annotations

import functools
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.support.images import data_uri, photo
from tests.support.servers import TEST_KEY, OpenRemixProcess, free_port

MODEL = "ideogram-3-remix"
HEADERS = {"x-api-key": TEST_KEY}
TERMINAL = ("COMPLETED", "FAILED")
COST = 1.0
CREDITS = 1000.0
START_TIMEOUT = 240.0
"""A fresh process loads its model; on a loaded 2-core machine that took 60+ s."""
FINISH_TIMEOUT = 300.0


@dataclass
class Knobs:
    """The settings every scenario's processes share (printed in the table's header)."""

    lease_seconds: float = 5.0
    step_seconds: float = 0.2

    def env(self) -> dict[str, str]:
        return {
            "OPENREMIX_ENGINE": "tests.support.slow_engine:SlowStyleEngine",
            "SLOW_ENGINE_STEP_SECONDS": str(self.step_seconds),
            "OPENREMIX_LEASE_SECONDS": str(self.lease_seconds),
            "OPENREMIX_RATE_LIMIT_PER_MINUTE": "0",
            "OPENREMIX_COST_PER_REQUEST": str(COST),
            "OPENREMIX_DEFAULT_CREDITS": str(CREDITS),
            # faults are measured here, not the image safety screen (its own bench)
            "OPENREMIX_IMAGE_SAFETY": "0",
        }


@dataclass
class Fleet:
    """openremix processes on one store. `logs` holds their log files; `store_dir` is the data
    folder (SQLite and outputs) unless `database_url` names a PostgreSQL database."""

    logs: Path
    knobs: Knobs
    store_dir: Path
    database_url: str = ""
    extra_env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    procs: list[OpenRemixProcess] = field(default_factory=list)
    retired: list[OpenRemixProcess] = field(default_factory=list)
    accepted: list[str] = field(default_factory=list)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # --- processes ---------------------------------------------------------------------------
    def start(self, command: str, wait: bool = True) -> OpenRemixProcess:
        """Start `openremix <command>`; with `wait`, until it is ready (the API's /readyz, or a
        worker's "ready" log line once its model is loaded)."""
        env = {**self.knobs.env(), "OPENREMIX_DATA_DIR": str(self.store_dir), **self.extra_env}
        if self.database_url:
            env["OPENREMIX_DATABASE_URL"] = self.database_url
        # a worker binds no port; its own number keeps its log file apart from the others'
        port = free_port() if command == "worker" else self.port
        proc = OpenRemixProcess(command, self.logs, env, port=port)  # logs: never on the tmpfs
        self.procs.append(proc)
        if wait and command == "worker":
            wait_for(lambda: "ready (engine" in proc.log() or proc.proc.poll() is not None,
                     START_TIMEOUT)
            if proc.proc.poll() is not None or "ready (engine" not in proc.log():
                raise RuntimeError(f"worker not ready:\n{proc.log()[-1500:]}")
        elif wait:
            proc.wait_ready(START_TIMEOUT)
        return proc

    def retire(self, proc: OpenRemixProcess, how: str = "kill") -> int | None:
        """End `proc` on purpose (SIGKILL, or SIGTERM and wait); returns its exit status."""
        self.retired.append(proc)
        if how == "kill":
            proc.kill()
        else:
            proc.proc.terminate()
            proc.proc.wait(120)
        return proc.proc.returncode

    def exited_by_themselves(self) -> list[str]:
        """Processes that ended without being retired: e.g. ["worker exit 1"]."""
        return [f"{p.command} exit {p.proc.returncode}" for p in self.procs
                if p not in self.retired and p.proc.poll() is not None]

    def stop(self) -> None:
        for proc in self.procs:
            proc.stop()  # SIGTERM to the ones still running

    def ready(self) -> bool:
        try:
            return httpx.get(f"{self.base}/readyz", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    # --- clients -----------------------------------------------------------------------------
    def submit(self, count: int, first_seed: int = 0, timeout: float = 120) -> list[int]:
        """Submit `count` jobs one after the other; the accepted ones are remembered. Returns
        the HTTP status of each (0: no answer)."""
        codes = []
        for seed in range(first_seed, first_seed + count):
            try:
                answer = httpx.post(f"{self.base}/v2/{MODEL}", headers=HEADERS, timeout=timeout,
                                    json=job_body(seed))
            except httpx.HTTPError:
                codes.append(0)
                continue
            codes.append(answer.status_code)
            if answer.status_code == 200:
                self.accepted.append(answer.json()["request_id"])
        return codes

    def credits_spent(self) -> float:
        balance = httpx.get(f"{self.base}/v1/get-user-credits", headers=HEADERS, timeout=60)
        return CREDITS - float(balance.json()["credits"])

    # --- the store's view --------------------------------------------------------------------
    def jobs(self) -> dict[str, tuple[str, int]]:
        """request_id -> (state, attempts) of every job, read from the store itself."""
        query = "SELECT request_id, state, attempts FROM jobs"
        if self.database_url:
            import psycopg

            with psycopg.connect(self.database_url, connect_timeout=10) as conn:
                rows = conn.execute(query).fetchall()
        else:
            import sqlite3

            conn = sqlite3.connect(self.store_dir / "openremix.db", timeout=60)
            try:
                rows = conn.execute(query).fetchall()
            finally:
                conn.close()
        return {row[0]: (row[1], row[2]) for row in rows}

    def in_flight(self) -> int:
        """Accepted jobs not yet COMPLETED or FAILED."""
        jobs = self.jobs()
        return sum(jobs.get(rid, ("gone", 0))[0] not in TERMINAL for rid in self.accepted)

    def wait_processing(self) -> None:
        """Until a worker holds a job (a fault then lands mid-job)."""
        if not wait_for(lambda: any(s == "PROCESSING" for s, _ in self.jobs().values()),
                        START_TIMEOUT):
            raise RuntimeError(f"no job was taken in {START_TIMEOUT:.0f} s")

    def all_finished(self) -> bool:
        """Whether every accepted job is COMPLETED or FAILED (False while the store is away)."""
        try:
            jobs = self.jobs()
        except Exception:  # the store is still coming back
            return False
        return all(jobs.get(rid, ("gone", 0))[0] in TERMINAL for rid in self.accepted)


@functools.cache
def input_image() -> str:
    return data_uri(photo("astronaut", size=256), "JPEG")


def job_body(seed: int) -> dict:
    return {"image": input_image(), "prompt": "faults under load", "seed": seed,
            "rendering_speed": "TURBO"}


def wait_for(condition: object, timeout: float, every: float = 0.1) -> bool:
    """Poll `condition()` until it is true (True) or `timeout` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(every)
    return False


class DuringFault:
    """What a client sees while a fault lasts: one submit (its answer and Retry-After) and
    /readyz polled once a second (each change of answer, and when)."""

    def __init__(self, fleet: Fleet, seed: int = 10_000) -> None:
        self.fleet = fleet
        self.seed = seed
        self.submit_seen = ""
        self.readyz_seen: list[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._submit, daemon=True),
                         threading.Thread(target=self._poll, daemon=True)]

    def start(self) -> DuringFault:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        """The fault is over: stop polling /readyz (the submit may still be waiting)."""
        self._stop.set()

    def answered(self) -> bool:
        return not self._threads[0].is_alive()

    def report(self, wait: float = 120) -> str:
        """Once the fault is over: e.g. "submit 503 RA 5 after 40 s; readyz 200@0s, 503@41s"."""
        self._threads[0].join(wait)
        self._threads[1].join(10)
        return (f"submit {self.submit_seen or 'no answer yet'}; "
                f"readyz {', '.join(self.readyz_seen)}")

    def _submit(self) -> None:
        started = time.monotonic()
        try:
            answer = httpx.post(f"{self.fleet.base}/v2/{MODEL}", headers=HEADERS, timeout=120,
                                json=job_body(self.seed))
        except httpx.ConnectError:
            self.submit_seen = "refused"
            return
        except httpx.HTTPError as exc:
            self.submit_seen = type(exc).__name__
            return
        if answer.status_code == 200:
            self.fleet.accepted.append(answer.json()["request_id"])
        retry = answer.headers.get("retry-after")
        self.submit_seen = (f"{answer.status_code}{f' RA {retry}' if retry else ''} after "
                            f"{time.monotonic() - started:.0f} s")

    def _poll(self) -> None:
        started = time.monotonic()
        last = ""
        while not self._stop.is_set():
            try:
                code = str(httpx.get(f"{self.fleet.base}/readyz", timeout=5).status_code)
            except httpx.ConnectError:
                code = "refused"
            except httpx.TimeoutException:
                code = "no answer in 5 s"
            except httpx.HTTPError as exc:
                code = type(exc).__name__
            if code != last:  # each change, with when it came: "200@0s, 503@41s"
                self.readyz_seen.append(f"{code}@{time.monotonic() - started:.0f}s")
                last = code
            self._stop.wait(1.0)
