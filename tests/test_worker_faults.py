"""The worker when the infrastructure misbehaves for real: PostgreSQL stopped for longer than
the store waits, and a full filesystem under the store and the outputs. Nothing is lost, run
twice or charged twice, and the worker takes jobs again once the fault is gone."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from openremix.jobs.model import JobState
from openremix.jobs.sqlite.store import SQLiteJobStore
from openremix.media.images import ImageLoader
from openremix.media.storage import LocalStorage
from openremix.worker.loop import Worker
from tests.support.faults import fill, small_filesystem
from tests.test_worker import RecordingBatchEngine, enqueue


def _start(worker: Worker) -> threading.Thread:
    thread = threading.Thread(target=worker.run_forever, daemon=True)
    thread.start()
    assert worker.ready.wait(10)
    return thread


def _wait_for(condition: Any, seconds: float, why: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, why
        time.sleep(0.05)


def test_postgres_down_longer_than_the_store_waits_never_stops_the_worker(
        postgres_cluster, postgres_db: str, tmp_path: Path) -> None:
    pytest.importorskip("psycopg")
    from openremix.jobs.postgres.store import PostgresJobStore

    store = PostgresJobStore(postgres_db, reconnect_seconds=1.0)
    key, _ = store.create_api_key("w", credits=10)
    worker = Worker(store, RecordingBatchEngine(), ImageLoader(), LocalStorage(tmp_path / "out"),
                    idle_poll_max=0.05)
    thread = _start(worker)
    try:
        postgres_cluster.stop_server()
        try:
            _wait_for(lambda: worker.store_error is not None, 20, "no store error seen")
            time.sleep(3.0)  # several failed passes, each past the store's own 1 s of retries
            assert thread.is_alive()
        finally:
            postgres_cluster.start_server()
        request_id = enqueue(store, key, seed=3)
        _wait_for(lambda: store.get(request_id).state is JobState.COMPLETED, 30,
                  f"not completed: {worker.store_error}")
        assert worker.store_error is None and thread.is_alive()
        assert store.get(request_id).attempts == 1
    finally:
        worker.stop()
        thread.join(10)
        store.close()


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs: big enough for the store, filled up by the test on purpose."""
    with small_filesystem(tmp_path / "small") as mount:
        yield mount


def test_a_full_disk_fails_nothing_for_good_and_the_job_completes_once_space_is_back(
        small_disk: Path) -> None:
    """The disk fills up while a job runs: its output cannot be written, nor can the store say
    so. The worker keeps going, the job's lease lapses instead of it being lost, and once space
    is back it is taken again and completes, charged once."""
    store = SQLiteJobStore(small_disk / "jobs.db")
    key, _ = store.create_api_key("w", credits=10)
    request_id = enqueue(store, key, seed=5)
    filled: list[Path] = []

    def fill_once(step: int, inputs: Any) -> None:
        if not filled:
            filled.append(fill(small_disk))

    worker = Worker(store, RecordingBatchEngine(fill_once), ImageLoader(),
                    LocalStorage(small_disk / "out"), lease_seconds=1.0,
                    idle_poll_max=0.05)
    thread = _start(worker)
    try:
        _wait_for(lambda: bool(filled), 10, "the job never ran")
        time.sleep(3.0)  # the output write fails, so do the fail, heartbeats and sweeps
        assert thread.is_alive()
        assert store.get(request_id).state is not JobState.COMPLETED
        filled[0].unlink()
        _wait_for(lambda: store.get(request_id).state is JobState.COMPLETED, 30,
                  f"not completed after space came back: {worker.store_error}")
        job = store.get(request_id)
        assert job.result and (small_disk / "out" / job.result["output_key"]).is_file()
        assert job.attempts == 2  # the lapsed attempt, then the one that finished
        assert store.get_api_key(key.key_id).credits == pytest.approx(9.0)  # charged once
        assert thread.is_alive()
    finally:
        worker.stop()
        thread.join(10)
        store.close()
