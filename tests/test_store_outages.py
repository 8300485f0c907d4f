"""The API when its job store cannot serve, for real and over HTTP: SQLite's write lock held by
another process, PostgreSQL stopped, the data folder's filesystem full. `/readyz` says so within
the API's store wait (`OPENREMIX_STORE_WAIT_SECONDS`), not after the worker's long retries; a
submit is a quick 503 with Retry-After (never a 500, never a hang); nothing is charged for it,
and everything works again once the fault is gone."""

from __future__ import annotations

import errno
import sqlite3
import time
from pathlib import Path

import httpx
import pytest

from openremix.jobs.sqlite.store import SQLiteJobStore
from openremix.jobs.store import store_unavailable
from openremix.jobs.store_wait import WaitLimitedStore
from tests.support.faults import fill, small_filesystem, sqlite_write_lock
from tests.support.servers import TEST_KEY, OpenRemixProcess
from tests.test_server_faults import MODEL, wait_all

HEADERS = {"x-api-key": TEST_KEY}
STORE_WAIT = 1.0
QUICK = STORE_WAIT + 4.0
"""An answer within this is quick; the stores' own retries take 30 s and more."""
READY_WAIT = 1.0
"""The most `/readyz` waits for the store (`api.routes.health.READY_WAIT_SECONDS`)."""
UNAVAILABLE = "The job store is unavailable right now; retry later"


def _credits(server: OpenRemixProcess) -> float:
    answer = httpx.get(f"{server.base_url}/v1/get-user-credits", headers=HEADERS, timeout=30)
    assert answer.status_code == 200, answer.text
    return float(answer.json()["credits"])


def _submit(server: OpenRemixProcess, image: str, seed: int) -> tuple[httpx.Response, float]:
    """POST a v2 submit; the answer and the seconds it took."""
    started = time.monotonic()
    answer = httpx.post(f"{server.base_url}/v2/{MODEL}", headers=HEADERS, timeout=60, json={
        "image": image, "prompt": "pop art comic", "seed": seed, "rendering_speed": "TURBO"})
    return answer, time.monotonic() - started


def _assert_quick_503(answer: httpx.Response, took: float) -> None:
    assert answer.status_code == 503, answer.text
    assert answer.headers["retry-after"] == "5"
    assert answer.json()["error"] == UNAVAILABLE
    assert took < QUICK, f"the 503 took {took:.1f} s"


def _readyz_until(server: OpenRemixProcess, status: int, seconds: float) -> httpx.Response:
    """Poll /readyz until it answers `status`; that answer."""
    deadline = time.monotonic() + seconds
    while True:
        answer = httpx.get(f"{server.base_url}/readyz", timeout=30)
        if answer.status_code == status:
            return answer
        assert time.monotonic() < deadline, f"/readyz still {answer.status_code}: {answer.text}"
        time.sleep(0.2)


def _sqlite_jobs(data_dir: Path) -> int:
    with sqlite3.connect(data_dir / "openremix.db") as conn:
        return int(conn.execute("SELECT COUNT(*) FROM jobs").fetchone()[0])


def test_readyz_is_503_while_the_store_is_locked_and_200_once_it_is_free(
        start_process, astronaut_uri):
    """Another process holds SQLite's write lock: `serve`'s worker cannot claim, so /readyz
    turns 503 (before: 200 for the worker's 30 s of retries), naming the lock, and answers in
    about a second whatever the API's store wait (probes time out after a second or so); once
    the lock is gone it is 200 again and the worker runs jobs."""
    server = start_process()  # the default store wait (5 s): /readyz waits less
    with sqlite_write_lock(server.data_dir / "openremix.db", 10):
        started = time.monotonic()
        answer = httpx.get(f"{server.base_url}/readyz", timeout=30)
        took = time.monotonic() - started
        assert answer.status_code == 503, answer.text
        assert took < READY_WAIT + 1.5, f"/readyz said 503 after {took:.1f} s"
        assert answer.headers["retry-after"] == "5"
        assert answer.json() == {
            "status": "unavailable",
            "error": "the job store cannot take writes: OperationalError: database is locked"}
    _readyz_until(server, 200, 15)
    answer, _ = _submit(server, astronaut_uri, 1)
    assert answer.status_code == 200, answer.text
    request_id = answer.json()["request_id"]
    assert wait_all(server.base_url, [request_id])[request_id]["status"] == "COMPLETED"


def test_a_submit_while_the_store_is_locked_is_a_quick_503_that_charges_nothing(
        start_process, astronaut_uri):
    server = start_process(env={"OPENREMIX_STORE_WAIT_SECONDS": str(STORE_WAIT),
                                "OPENREMIX_WORKERS": "0"})
    before = _credits(server)
    with sqlite_write_lock(server.data_dir / "openremix.db", 10):
        _assert_quick_503(*_submit(server, astronaut_uri, 1))
    assert _sqlite_jobs(server.data_dir) == 0
    assert _credits(server) == before
    answer, _ = _submit(server, astronaut_uri, 1)
    assert answer.status_code == 200, answer.text
    assert _credits(server) == pytest.approx(before - 0.04)


def test_a_submit_while_postgres_is_down_is_a_quick_503_that_charges_nothing(
        start_process, postgres_cluster, postgres_db, astronaut_uri):
    psycopg = pytest.importorskip("psycopg")
    api = start_process("api", env={"OPENREMIX_DATABASE_URL": postgres_db,
                                    "OPENREMIX_STORE_WAIT_SECONDS": str(STORE_WAIT)})
    before = _credits(api)
    postgres_cluster.stop_server()
    try:
        answer, took = _submit(api, astronaut_uri, 1)
        ready = httpx.get(f"{api.base_url}/readyz", timeout=30)
    finally:
        postgres_cluster.start_server()
    _assert_quick_503(answer, took)
    assert ready.status_code == 503 and ready.headers["retry-after"] == "5", ready.text
    with psycopg.connect(postgres_db) as conn:
        assert conn.execute("SELECT COUNT(*) FROM jobs").fetchone()[0] == 0
    deadline = time.monotonic() + 30
    while (answer := _submit(api, astronaut_uri, 1)[0]).status_code != 200:
        assert answer.status_code == 503 and time.monotonic() < deadline, answer.text
        time.sleep(0.5)  # the client's retry, sooner than its Retry-After
    assert _credits(api) == pytest.approx(before - 0.04)  # the one accepted submit, once


def test_submits_on_a_full_disk_are_503_or_complete_once_space_is_back_never_500(
        start_process, tmp_path, astronaut_uri):
    """The data folder's filesystem (database and outputs) fills up while a job runs. Each
    submit meanwhile is refused with 503 and Retry-After or accepted (never a 500); once space
    is freed the running job and every accepted one complete, each charged once."""
    with small_filesystem(tmp_path / "small", 16) as mount:
        server = start_process(data_dir=tmp_path / "logs", env={  # the log stays off the tmpfs
            "OPENREMIX_DATA_DIR": str(mount), "OPENREMIX_STORE_WAIT_SECONDS": str(STORE_WAIT),
            "OPENREMIX_LEASE_SECONDS": "2", "OPENREMIX_MAX_ATTEMPTS": "20",
            "OPENREMIX_RATE_LIMIT_PER_MINUTE": "0",
            "OPENREMIX_ENGINE": "tests.support.slow_engine:SlowStyleEngine",
            "SLOW_ENGINE_STEP_SECONDS": "0.3"})
        before = _credits(server)
        running = _submit(server, astronaut_uri, 0)[0].json()["request_id"]
        _status_until(server, running, "PROCESSING")
        filler = fill(mount)
        answers = [_submit(server, astronaut_uri, seed) for seed in range(1, 6)]
        time.sleep(3.0)  # the output cannot be written, nor can the store say so
        filler.unlink()
        for answer, took in answers:
            assert answer.status_code in (200, 503), answer.text
            if answer.status_code == 503:
                _assert_quick_503(answer, took)
        accepted = [a.json()["request_id"] for a, _ in answers if a.status_code == 200]
        states = wait_all(server.base_url, [running, *accepted])
        assert {s["status"] for s in states.values()} == {"COMPLETED"}, states
        assert _credits(server) == pytest.approx(before - 0.04 * len(states))  # each once
        again, _ = _submit(server, astronaut_uri, 99)
        assert again.status_code == 200, again.text
        server.stop()
        log = server.log_path.read_text()
        assert "unhandled error" not in log and "Internal server error" not in log, log


def _status_until(server: OpenRemixProcess, request_id: str, status: str) -> None:
    deadline = time.monotonic() + 60
    url = f"{server.base_url}/v2/requests/{request_id}/status"
    while httpx.get(url, headers=HEADERS, timeout=30).json()["status"] != status:
        assert time.monotonic() < deadline, server.log()
        time.sleep(0.05)


def test_the_apis_view_of_the_store_gives_up_within_its_wait_and_the_workers_does_not(
        tmp_path):
    """`WaitLimitedStore` (what the API calls): a locked database raises within its limit;
    reads go on under the lock (WAL); the same thread's calls outside it wait as long as ever."""
    store = SQLiteJobStore(tmp_path / "jobs.db")
    api_view = WaitLimitedStore(store, 0.5)
    assert getattr(api_view, "take_rate_token", None) is None  # optional parts stay optional
    with sqlite_write_lock(tmp_path / "jobs.db", 4):
        started = time.monotonic()
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            api_view.check_writable()
        assert time.monotonic() - started < 2.0
        assert api_view.queue_depth() == 0
    store.check_writable()
    assert store._conn().execute("PRAGMA busy_timeout").fetchone()[0] == 10_000
    store.close()


@pytest.mark.parametrize(("error", "unavailable"), [
    (sqlite3.OperationalError("database is locked"), True),
    (sqlite3.OperationalError("database or disk is full"), True),
    (sqlite3.OperationalError("attempt to write a readonly database"), True),
    (sqlite3.OperationalError("unable to open database file"), True),
    (sqlite3.OperationalError("no such table: jobs"), False),  # a bug, not an outage
    (sqlite3.IntegrityError("UNIQUE constraint failed: jobs.request_id"), False),
    (OSError(errno.ENOSPC, "No space left on device"), True),
    (OSError(errno.EROFS, "Read-only file system"), True),
    (OSError(errno.ENOENT, "No such file or directory"), False),
    (ValueError("database is locked"), False),  # the words alone are not enough
], ids=["locked", "disk-full", "read-only", "cannot-open", "no-table", "integrity", "ENOSPC",
        "EROFS", "ENOENT", "not-a-database-error"])
def test_store_unavailable_tells_an_outage_from_a_wrong_request(error, unavailable):
    assert store_unavailable(error) is unavailable


def test_store_unavailable_knows_postgres_being_away():
    psycopg = pytest.importorskip("psycopg")
    from psycopg_pool import PoolTimeout

    assert store_unavailable(psycopg.OperationalError("connection refused"))
    assert store_unavailable(PoolTimeout("couldn't get a connection after 1.00 sec"))
    assert not store_unavailable(psycopg.errors.UndefinedTable("relation \"jobs\" does not exist"))
    assert not store_unavailable(psycopg.errors.UniqueViolation("duplicate key"))
