"""The worker loop over a real SQLite store: batching, lost leases, bad inputs, retries."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from openremix.contract.request import RemixRequest, parse_remix_request
from openremix.engine.base import EngineInput, EngineOutput, StepCallback
from openremix.jobs.model import JobState, NewJob
from openremix.jobs.params import pack_job_params
from openremix.jobs.sqlite.store import SQLiteJobStore
from openremix.media.images import ImageLoader
from openremix.media.storage import LocalStorage
from openremix.worker.loop import Worker
from tests.support.faults import sqlite_write_lock
from tests.support.images import data_uri, photo


class RecordingBatchEngine:
    """Test double: a batching engine that records each call and tints by seed."""

    name = "recording"
    supports_batching = True

    def __init__(self, on_call: Any = None) -> None:
        self.calls: list[list[str]] = []
        self.on_call = on_call

    def load(self) -> None:
        pass

    def batch_key(self, params: RemixRequest) -> tuple[Any, ...]:
        return (params.resolution,)

    def remix(self, inputs: Sequence[EngineInput], on_step: StepCallback) -> list[EngineOutput]:
        self.calls.append([i.request_id for i in inputs])
        for step in range(1, 4):
            if self.on_call:
                self.on_call(step, inputs)
            on_step(step, 3)
        return [
            EngineOutput(Image.new("RGB", i.params.size, (i.params.seed or 0) % 256),
                         prompt=i.params.prompt, seed=i.params.seed or 0)
            for i in inputs
        ]


@pytest.fixture
def store(tmp_path: Path):
    store = SQLiteJobStore(tmp_path / "jobs.db")
    yield store
    store.close()


@pytest.fixture
def key(store: SQLiteJobStore):
    record, _ = store.create_api_key("w", credits=100)
    return record


IMAGE = data_uri(photo("coffee", size=64))


def enqueue(store: SQLiteJobStore, key: Any, **params: Any) -> str:
    request, warnings = parse_remix_request({"image": IMAGE, "prompt": "x", "seed": 1, **params})
    request_id = str(uuid.uuid4())
    store.enqueue(NewJob(request_id, "ideogram-3-remix", key.key_id,
                         pack_job_params(request, warnings), 1.0))
    return request_id


def make_worker(store: SQLiteJobStore, tmp_path: Path, engine: Any, **kw: Any) -> Worker:
    return Worker(store, engine, ImageLoader(), LocalStorage(tmp_path / "out"), **kw)


def test_compatible_jobs_run_as_one_batch_and_others_apart(store, key, tmp_path):
    square = [enqueue(store, key, seed=s) for s in (1, 2, 3)]
    wide = enqueue(store, key, resolution="1536x512")
    engine = RecordingBatchEngine()
    worker = make_worker(store, tmp_path, engine, max_batch=4, batch_window=0.05)
    assert worker.run_once()
    assert engine.calls == [square, [wide]]
    for request_id in [*square, wide]:
        job = store.get(request_id)
        assert job.state is JobState.COMPLETED
        assert job.result["output_key"]


def test_batch_is_capped_at_max_batch(store, key, tmp_path):
    ids = [enqueue(store, key, seed=s) for s in range(6)]
    engine = RecordingBatchEngine()
    worker = make_worker(store, tmp_path, engine, max_batch=4)
    worker.run_once()
    worker.run_once()
    assert engine.calls == [ids[:4], ids[4:]]


def test_engine_without_batching_runs_one_job_at_a_time(store, key, tmp_path):
    ids = [enqueue(store, key, seed=s) for s in range(2)]
    engine = RecordingBatchEngine()
    engine.supports_batching = False
    worker = make_worker(store, tmp_path, engine, max_batch=4)
    worker.run_once()
    assert engine.calls == [ids[:1]]


def test_a_lost_lease_drops_only_that_job_from_the_batch(store, key, tmp_path):
    keep, lose = enqueue(store, key, seed=1), enqueue(store, key, seed=2)

    def steal(step: int, inputs: Sequence[EngineInput]) -> None:
        if step == 2:  # somebody cancels `lose` while the batch runs
            store.fail(lose, None, "cancelled")

    worker = make_worker(store, tmp_path, RecordingBatchEngine(steal), max_batch=2)
    worker.run_once()
    assert store.get(keep).state is JobState.COMPLETED
    assert store.get(lose).error == "cancelled"
    assert len(list((tmp_path / "out").glob("*"))) == 1  # no orphan output for `lose`


def test_a_bad_input_fails_only_its_own_job(store, key, tmp_path):
    good = enqueue(store, key, seed=1)
    bad = enqueue(store, key, image="https://nonexistent.invalid/a.png")
    loader_calls: list[str] = []

    class RefusingLoader(ImageLoader):
        """Refuses the URL before any network use (the SSRF/fetch path is tested in media)."""

        def load(self, value: str, field: str) -> Image.Image:
            loader_calls.append(value)
            if value.startswith("https://"):
                from openremix.contract.errors import InputImageError

                raise InputImageError(field, "could not fetch https://nonexistent.invalid/a.png")
            return super().load(value, field)

    engine = RecordingBatchEngine()
    worker = Worker(store, engine, RefusingLoader(), LocalStorage(tmp_path / "out"), max_batch=2)
    worker.run_once()
    assert store.get(good).state is JobState.COMPLETED
    failed = store.get(bad)
    assert failed.state is JobState.FAILED
    assert failed.error.startswith("image: could not fetch")
    assert engine.calls == [[good]]


def test_engine_crash_fails_the_batch_with_a_clean_error(store, key, tmp_path):
    request_id = enqueue(store, key)

    def crash(step: int, inputs: Sequence[EngineInput]) -> None:
        raise RuntimeError("boom at /secret/path")

    worker = make_worker(store, tmp_path, RecordingBatchEngine(crash))
    worker.run_once()
    job = store.get(request_id)
    assert job.state is JobState.FAILED
    assert job.error == "internal error while processing"  # no internals leak to the user
    balance = store.get_api_key(key.key_id)
    assert balance.credits == 100  # refunded


def test_stop_ends_run_forever(store, key, tmp_path):
    worker = make_worker(store, tmp_path, RecordingBatchEngine())
    thread = threading.Thread(target=worker.run_forever)
    thread.start()
    request_id = enqueue(store, key)
    worker.wake.set()
    for _ in range(200):
        if store.get(request_id).state is JobState.COMPLETED:
            break
        threading.Event().wait(0.02)
    worker.stop()
    thread.join(5)
    assert not thread.is_alive()
    assert store.get(request_id).state is JobState.COMPLETED


def test_a_store_that_errs_for_a_while_never_stops_the_worker(store, key, tmp_path, monkeypatch):
    """Another process holds SQLite's write lock longer than the store waits: every claim
    fails meanwhile. The worker reports why (`serve`'s /readyz shows it), backs off, and takes
    jobs again once the lock is gone."""
    from openremix.jobs.sqlite import schema

    monkeypatch.setattr(schema, "LOCKED_RETRY_SECONDS", 0.2)
    monkeypatch.setattr(schema, "BUSY_TIMEOUT_SECONDS", 0.1)
    worker = make_worker(store, tmp_path, RecordingBatchEngine(), idle_poll_max=0.05)
    thread = threading.Thread(target=worker.run_forever, daemon=True)
    thread.start()
    assert worker.ready.wait(10)
    with sqlite_write_lock(store.path, 2.5):
        deadline = time.monotonic() + 2.0
        while worker.store_error is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert worker.store_error is not None and "locked" in worker.store_error
        assert thread.is_alive()
    request_id = enqueue(store, key, seed=9)
    deadline = time.monotonic() + 15
    while store.get(request_id).state is not JobState.COMPLETED:
        assert time.monotonic() < deadline, worker.store_error
        time.sleep(0.05)
    assert worker.store_error is None and thread.is_alive()
    worker.stop()
    thread.join(10)
