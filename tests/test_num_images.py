"""`num_images`: one job makes N images with the seeds seed..seed+N-1, in one engine batch,
charged per image; blocked images are never stored. Real SQLite store and local storage; the
engines are test doubles that record their calls (and one blocks chosen seeds, standing in for
the image safety filter, which produces the same blocked output)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from openremix.contract.params import SEED_MAX
from openremix.contract.request import RemixRequest, parse_remix_request
from openremix.engine.base import EngineInput, EngineOutput, StepCallback
from openremix.jobs.model import JobState, NewJob
from openremix.jobs.params import pack_job_params, result_output_keys, unpack_job_params
from openremix.jobs.sqlite.store import SQLiteJobStore
from openremix.media.images import ImageLoader
from openremix.media.storage import LocalStorage
from openremix.worker.loop import Worker
from openremix.worker.sweeper import Sweeper
from tests.support.images import data_uri, photo

IMAGE = data_uri(photo("coffee", size=64))


class SeedTintEngine:
    """Test double: a batching engine that records each call's (request id, seed) pairs and
    paints each image a grey level from its seed; seeds in `blocked` come back blocked, the
    way a safety filter answers."""

    name = "seed-tint"
    supports_batching = True

    def __init__(self, blocked: frozenset[int] = frozenset()) -> None:
        self.calls: list[list[tuple[str, int]]] = []
        self.blocked = blocked

    def load(self) -> None:
        pass

    def batch_key(self, params: RemixRequest) -> tuple[Any, ...]:
        return (params.resolution,)

    def remix(self, inputs: Sequence[EngineInput], on_step: StepCallback) -> list[EngineOutput]:
        self.calls.append([(i.request_id, int(i.params.seed or 0)) for i in inputs])
        on_step(1, 1)
        outputs = []
        for i in inputs:
            seed = int(i.params.seed or 0)
            if seed in self.blocked:
                outputs.append(EngineOutput(None, i.params.prompt, seed, is_image_safe=False,
                                            error="blocked by the content filter (test)"))
            else:
                outputs.append(EngineOutput(Image.new("RGB", i.params.size, (seed % 256,) * 3),
                                            i.params.prompt, seed))
        return outputs


@pytest.fixture
def clock() -> list[float]:
    return [1_000_000.0]


@pytest.fixture
def store(tmp_path: Path, clock: list[float]):
    store = SQLiteJobStore(tmp_path / "jobs.db", clock=lambda: clock[0])
    yield store
    store.close()


@pytest.fixture
def key(store: SQLiteJobStore):
    record, _ = store.create_api_key("n", credits=10)
    return record


def enqueue(store: SQLiteJobStore, key: Any, num_images: int, seed: int = 5,
            cost_per_image: float = 1.0, **params: Any) -> str:
    request, warnings = parse_remix_request({"image": IMAGE, "prompt": "x", "seed": seed,
                                             "resolution": "1024x1024", **params})
    request_id = str(uuid.uuid4())
    store.enqueue(NewJob(request_id, "ideogram-3-remix", key.key_id,
                         pack_job_params(request, warnings, num_images=num_images),
                         cost_per_image * num_images))
    return request_id


def worker(store: SQLiteJobStore, tmp_path: Path, engine: Any) -> Worker:
    return Worker(store, engine, ImageLoader(), LocalStorage(tmp_path / "out"), max_batch=4,
                  batch_window=0.05)


def stored_files(tmp_path: Path) -> list[Path]:
    return [p for p in (tmp_path / "out").rglob("*") if p.is_file()]


def test_a_job_of_n_images_runs_as_one_batch_with_consecutive_seeds(store, key, tmp_path):
    three = enqueue(store, key, 3, seed=5)
    single = enqueue(store, key, 1, seed=40)
    engine = SeedTintEngine()
    assert worker(store, tmp_path, engine).run_once()
    assert engine.calls == [[(three, 5), (three, 6), (three, 7), (single, 40)]]
    job = store.get(three)
    assert job.state is JobState.COMPLETED
    images = job.result["images"]
    assert [i["seed"] for i in images] == [5, 6, 7]
    assert all(i["is_image_safe"] and i["output_key"] for i in images)
    assert len({i["output_key"] for i in images}) == 3  # three different pictures
    # Segmind's wire reads the single-image fields: they are the first image's.
    assert job.result["output_key"] == images[0]["output_key"] and job.result["seed"] == 5
    assert "images" not in store.get(single).result  # a one-image result is as before
    assert len(stored_files(tmp_path)) == 4


def test_seeds_wrap_past_the_largest_seed():
    request, _ = parse_remix_request({"image": IMAGE, "prompt": "x", "seed": SEED_MAX})
    unpacked = unpack_job_params(pack_job_params(request, [], num_images=3))
    assert [r.seed for r in unpacked.image_requests()] == [SEED_MAX, 0, 1]


def test_blocked_images_are_listed_without_a_url_and_never_stored(store, key, tmp_path):
    job_id = enqueue(store, key, 3, seed=5)
    worker(store, tmp_path, SeedTintEngine(blocked=frozenset({6}))).run_once()
    job = store.get(job_id)
    assert job.state is JobState.COMPLETED
    blocked = job.result["images"][1]
    assert blocked["seed"] == 6 and blocked["is_image_safe"] is False
    assert "output_key" not in blocked
    assert len(stored_files(tmp_path)) == 2
    # The blocked image is not charged: one of the three credits went back, and the job says so.
    assert store.get_api_key(key.key_id).credits == pytest.approx(8.0)
    assert job.cost == pytest.approx(2.0)


def test_a_job_whose_every_image_is_blocked_fails_and_is_refunded(store, key, tmp_path):
    job_id = enqueue(store, key, 2, seed=5)
    assert store.get_api_key(key.key_id).credits == pytest.approx(8.0)  # 2 images charged
    worker(store, tmp_path, SeedTintEngine(blocked=frozenset({5, 6}))).run_once()
    job = store.get(job_id)
    assert job.state is JobState.FAILED
    assert job.result["is_image_safe"] is False
    assert job.error == "blocked by the content filter (test)"
    assert stored_files(tmp_path) == []
    assert store.get_api_key(key.key_id).credits == pytest.approx(10.0)


def test_the_sweeper_deletes_every_image_of_an_expired_job(store, key, tmp_path, clock):
    job_id = enqueue(store, key, 3)
    run = worker(store, tmp_path, SeedTintEngine())
    run.run_once()
    assert len(result_output_keys(store.get(job_id).result)) == 3
    clock[0] += 7200  # past the retention
    Sweeper(store, run.storage).sweep()
    assert stored_files(tmp_path) == []
