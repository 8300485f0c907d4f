"""Live previews, piece by piece: the linear latent -> RGB fit, the worker's publisher, the
worker around an engine that makes previews, the sweep. (Each diffusion family's previews are in
test_diffusion_family_contract.py.)"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from openremix.engine.base import EngineError, EngineInput, EngineOutput, PreviewCallback
from openremix.jobs.model import JobState
from openremix.media.previews import preview_key, preview_step
from openremix.media.storage import LocalStorage
from openremix.worker.previews import PreviewPublisher
from tests.test_worker import enqueue, key, make_worker, store  # noqa: F401 (fixtures)


def test_the_fit_recovers_a_linear_map_from_latent_cells_to_colours() -> None:
    torch = pytest.importorskip("torch")
    from openremix.engine.diffusion.latent_preview import fit_projection

    generator = torch.Generator().manual_seed(0)
    latents = torch.randn(3, 4, 8, 8, generator=generator)
    weight = torch.randn(4, 3, generator=generator) * 0.3
    bias = torch.tensor([0.1, -0.2, 0.05])
    colours = (latents.permute(0, 2, 3, 1) @ weight + bias).permute(0, 3, 1, 2)
    pixels = colours.repeat_interleave(8, dim=2).repeat_interleave(8, dim=3)  # 8 px per cell
    projection = fit_projection(latents, pixels)
    assert torch.allclose(projection.weight, weight, atol=0.02)
    assert torch.allclose(projection.bias, bias, atol=0.02)
    images = projection.images(latents[:1])
    assert images[0].size == (8, 8) and images[0].mode == "RGB"


def test_the_publisher_stores_each_wanted_jobs_preview_in_time_and_clears_them(
        tmp_path: Path) -> None:
    storage, now = LocalStorage(tmp_path), [0.0]
    wanted = [True, False]
    publisher = PreviewPublisher(storage, ["job-a", "job-b"], interval=1.0,
                                 wanted=lambda index: wanted[index], clock=lambda: now[0])
    assert not publisher.due(1, 10)  # not before the interval
    now[0] = 1.0
    assert publisher.due(1, 10) and not publisher.due(10, 10)  # never the last step
    publisher(1, 10, {0: Image.new("RGB", (32, 32), "red"), 1: Image.new("RGB", (32, 32))})
    assert preview_step(storage.get(preview_key("job-a")) or b"") == (1, 10)
    assert not storage.exists(preview_key("job-b"))  # cancelled meanwhile: not stored
    assert not publisher.due(2, 10)
    wanted[0] = False  # job-a is cancelled: at the next preview its stored one goes
    now[0] = 2.0
    publisher(2, 10, {0: Image.new("RGB", (32, 32), "red")})
    assert not storage.exists(preview_key("job-a"))
    publisher.clear()


class PreviewingEngine:
    """Test double: an engine that publishes a preview after each step, then fails or not."""

    name = "previewing"
    supports_previews = True

    def __init__(self, fail: bool) -> None:
        self.fail = fail
        self.stored_during_run: list[bool] = []
        self.hooks: list[PreviewCallback | None] = []
        self.storage: LocalStorage | None = None

    def load(self) -> None:
        pass

    def batch_key(self, params: Any) -> tuple[Any, ...]:
        return ()

    def remix(self, inputs: Sequence[EngineInput], on_step: Any,
              on_preview: PreviewCallback | None = None) -> list[EngineOutput]:
        self.hooks.append(on_preview)
        for step in (1, 2, 3):
            time.sleep(0.01)  # a step's work: longer than the test's preview interval
            on_step(step, 4)
            if on_preview is not None and on_preview.due(step, 4):
                on_preview(step, 4, {0: inputs[0].image})
            assert self.storage is not None
            self.stored_during_run.append(self.storage.exists(preview_key(inputs[0].request_id)))
        if self.fail:
            raise EngineError("the engine gave up")
        on_step(4, 4)
        return [EngineOutput(inputs[0].image.resize(inputs[0].params.size), "x", 1)]


@pytest.mark.parametrize("fail", [False, True])
def test_the_worker_deletes_a_jobs_preview_however_its_run_ends(store, key, tmp_path,  # noqa: F811
                                                               fail: bool) -> None:
    request_id = enqueue(store, key)
    engine = PreviewingEngine(fail)
    worker = make_worker(store, tmp_path, engine, preview_seconds=0.001)
    engine.storage = worker.storage  # type: ignore[assignment]
    assert worker.run_once()
    assert any(engine.stored_during_run)
    assert not worker.storage.exists(preview_key(request_id))
    expected = JobState.FAILED if fail else JobState.COMPLETED
    assert store.get(request_id).state is expected


def test_no_previews_are_asked_of_an_engine_when_they_are_off(store, key, tmp_path) -> None:  # noqa: F811
    request_id = enqueue(store, key)
    engine = PreviewingEngine(fail=False)
    worker = make_worker(store, tmp_path, engine, preview_seconds=0)
    engine.storage = worker.storage  # type: ignore[assignment]
    worker.run_once()
    assert engine.hooks == [None]
    assert not any(engine.stored_during_run)
    assert store.get(request_id).state is JobState.COMPLETED


def test_the_sweep_deletes_the_preview_a_killed_worker_left(tmp_path: Path) -> None:
    from openremix.jobs.model import NewJob
    from openremix.jobs.sqlite.store import SQLiteJobStore
    from openremix.media.previews import encode_preview
    from openremix.worker.sweeper import Sweeper

    now = [1_000_000.0]
    jobs = SQLiteJobStore(tmp_path / "jobs.db", clock=lambda: now[0], retention_seconds=60)
    storage = LocalStorage(tmp_path / "out")
    owner, _ = jobs.create_api_key("k", credits=5)
    for request_id in ("ran", "waited"):
        jobs.enqueue(NewJob(request_id, "m", owner.key_id, {}, 1.0))
    assert jobs.claim_next("killed-worker", 30).request_id == "ran"
    # The worker stored a preview, then was killed: nothing of it ran `clear()`.
    storage.put(preview_key("ran"), encode_preview(Image.new("RGB", (8, 8)), 2, 4), "image/jpeg")
    storage.put("unrelated.jpg", b"x", "image/jpeg")
    now[0] += 61  # past the retention
    Sweeper(jobs, storage).sweep()
    assert not storage.exists(preview_key("ran"))
    assert storage.exists("unrelated.jpg")
    jobs.close()
