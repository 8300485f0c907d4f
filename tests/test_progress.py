"""Watching a job run: the event stream's time left (measured, never guessed) and live previews
of a diffusion run (its latents projected to a small picture), through real servers."""

from __future__ import annotations

import base64
import io
import itertools
import json
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from openremix.api.eta import StepTimer
from openremix.media.previews import encode_preview, preview_key, preview_step
from tests.test_extensions import HEADERS, MODEL, read_events

# -- the step timer, alone ------------------------------------------------------------------------


def test_no_eta_before_two_step_changes_were_seen_then_the_measured_one() -> None:
    timer = StepTimer()
    timer.observe(3, 10, now=100.0)  # watching starts mid-step: when step 3 began is unknown
    assert timer.seconds_left(100.5) is None
    timer.observe(4, 10, now=101.7)
    assert timer.seconds_left(101.7) is None  # one change: a moment, not a duration
    timer.observe(5, 10, now=102.2)
    timer.observe(6, 10, now=102.7)
    assert timer.seconds_per_step == pytest.approx(0.5)
    assert timer.seconds_left(102.7) == pytest.approx(2.0)  # 4 steps left


def test_the_eta_counts_down_between_steps_and_never_reaches_0_while_steps_remain() -> None:
    timer = StepTimer()
    for step, at in ((0, 0.0), (1, 1.0), (2, 2.0)):
        timer.observe(step, 4, now=at)
    readings = [timer.seconds_left(2.0 + dt) for dt in (0.0, 0.25, 0.5, 0.75)]
    assert readings == pytest.approx([2.0, 1.75, 1.5, 1.25])
    late = timer.seconds_left(5.0)  # step 3 is late: the ETA holds at the step after it
    assert late is not None and 1.0 <= late < 1.1
    timer.observe(3, 4, now=5.5)
    assert 0 < timer.seconds_left(9.0) < 0.1  # the last step, very late: small, never 0
    timer.observe(4, 4, now=9.5)
    assert timer.seconds_left(9.5) is None  # steps done; decoding was never measured


def test_a_job_that_starts_over_is_measured_afresh() -> None:
    timer = StepTimer()
    for step, at in ((0, 0.0), (1, 1.0), (2, 2.0)):
        timer.observe(step, 4, now=at)
    timer.observe(0, 4, now=3.0)  # re-queued, claimed again
    timer.observe(1, 4, now=10.0)
    assert timer.seconds_left(10.0) is None


def test_a_preview_says_which_step_it_shows() -> None:
    data = encode_preview(Image.new("RGB", (1024, 512), "teal"), 7, 30)
    assert preview_step(data) == (7, 30)
    assert Image.open(io.BytesIO(data)).size == (256, 128)
    assert preview_step(b"not a jpeg") is None


# -- through a real server ------------------------------------------------------------------------


def test_the_eta_matches_the_time_the_steps_really_take(start_process, astronaut_uri) -> None:
    """An engine of 6 steps of 0.8 s: every ETA the stream sends is within a few tenths of a
    second of the time the steps then really took; none is 0, and between steps the stream
    refreshes it, counting down."""
    server = start_process(env={
        "OPENREMIX_ENGINE": "tests.support.noop_engine:SteppedResizeEngine",
        "STEPPED_ENGINE_STEPS": "6", "STEPPED_ENGINE_SECONDS": "0.8"})
    body = {"image": astronaut_uri, "prompt": "stained glass", "seed": 3,
            "rendering_speed": "TURBO"}
    request_id = httpx.post(f"{server.base_url}/v2/{MODEL}", json=body, headers=HEADERS,
                            timeout=30).json()["request_id"]
    seen: list[tuple[float, dict]] = []
    with httpx.stream("GET", f"{server.base_url}/v2/requests/{request_id}/events",
                      headers=HEADERS, timeout=60) as response:
        for line in response.iter_lines():
            if line.startswith("data: "):
                seen.append((time.monotonic(), json.loads(line.removeprefix("data: "))))
    processing = [(at, d) for at, d in seen if d.get("status") == "PROCESSING"]
    total = processing[-1][1]["total"]
    last_step_at = next(at for at, d in processing if d["step"] == total)
    timed = [(at, d) for at, d in processing if d.get("eta_seconds") is not None]
    assert timed, processing
    assert all(d["eta_seconds"] > 0 for _, d in timed)
    assert all(d["step"] >= 2 for _, d in timed)  # none before two steps were measured
    for at, d in timed:
        truth = last_step_at - at
        assert abs(d["eta_seconds"] - truth) < 0.45, (d, truth)
    by_step: dict[int, list[float]] = {}
    for _, d in timed:
        by_step.setdefault(d["step"], []).append(d["eta_seconds"])
    refreshed = [etas for etas in by_step.values() if len(etas) > 1]
    assert refreshed, by_step  # the stream did not freeze between steps
    assert all(a > b for etas in refreshed for a, b in itertools.pairwise(etas))


@pytest.fixture(scope="module")
def tiny_sd(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("diffusers")
    from tests.support.tiny_pipelines import build_tiny_pipeline

    return build_tiny_pipeline(tmp_path_factory.mktemp("tiny-sd") / "sd", kind="sd", seed=0)


def test_a_diffusion_run_streams_small_previews_that_are_gone_when_it_ends(
        start_process, tiny_sd: Path, tmp_path: Path, astronaut_uri) -> None:
    data_dir = tmp_path / "data"
    server = start_process(data_dir=data_dir, env={
        "OPENREMIX_ENGINE": "tests.support.slow_engine:slow_diffusers_engine",
        "OPENREMIX_MODEL": str(tiny_sd), "OPENREMIX_DEVICE": "cpu", "OPENREMIX_MAX_SIDE": "64",
        "SLOW_ENGINE_STEP_SECONDS": "0.3", "OPENREMIX_PREVIEW_SECONDS": "0.2",
        "OMP_NUM_THREADS": "1"}, ready=False).wait_ready(timeout=180)  # torch loads slowly
    body = {"image": astronaut_uri, "prompt": "a portrait", "seed": 5, "magic_prompt": "OFF"}
    request_id = httpx.post(f"{server.base_url}/v2/{MODEL}", json=body, headers=HEADERS,
                            timeout=30).json()["request_id"]
    key = preview_key(request_id)
    stored = data_dir / "outputs" / key
    deadline = time.monotonic() + 60
    while not stored.exists():
        assert time.monotonic() < deadline, "no preview was stored"
        time.sleep(0.05)
    # Stored, but never served at a URL: only the owner's event stream shows it.
    assert httpx.get(f"{server.base_url}/outputs/{key}").status_code == 404
    stranger = httpx.get(f"{server.base_url}/v2/requests/{request_id}/events",
                         headers={"x-api-key": "not-a-key"})
    assert stranger.status_code == 401

    events = read_events(server.base_url, request_id)
    assert events[-1][1] == "completed"
    previews = [(event_id, data) for event_id, name, data in events if name == "preview"]
    assert len(previews) >= 2, [name for _, name, _ in events]
    last_step = max(d["step"] for _, name, d in events if name == "processing")
    for event_id, data in previews:
        assert event_id == ""  # a preview moves no resume position
        assert 1 <= data["step"] < data["total"] and data["step"] <= last_step
        head, _, encoded = data["image"].partition(",")
        assert head == "data:image/jpeg;base64"
        image = Image.open(io.BytesIO(base64.b64decode(encoded)))
        assert image.format == "JPEG" and max(image.size) <= 256
        assert np.asarray(image.convert("L")).std() > 0  # a picture, not a blank
    steps = [d["step"] for _, d in previews]
    assert steps == sorted(steps) and len(set(steps)) == len(steps)

    assert not stored.exists()  # deleted before the job finished
