"""`openremix serve` with the diffusion engine, driven by the real segmind SDK.

The weights are a tiny random SD pipeline built at test time (no model hub here): the real
pipeline class, the real loading path from a local folder, the real parameter mapping.
"""

from __future__ import annotations

import io
import time
from pathlib import Path

import httpx
import pytest
from PIL import Image
from segmind import SegmindClient

pytest.importorskip("diffusers")

from tests.support.servers import TEST_KEY
from tests.support.tiny_pipelines import build_tiny_pipeline


def test_serve_runs_a_local_diffusers_model_end_to_end(start_process, tmp_path: Path,
                                                        astronaut_uri):
    model = build_tiny_pipeline(tmp_path / "tiny-sd", kind="sd", seed=0)
    server = start_process(env={"OPENREMIX_ENGINE": "diffusers", "OPENREMIX_MODEL": str(model),
                                "OPENREMIX_DEVICE": "cpu", "OMP_NUM_THREADS": "1"})
    client = SegmindClient(api_key=TEST_KEY, base_url=f"{server.base_url}/v1")
    body = {"image": astronaut_uri, "prompt": "a portrait", "seed": 5, "aspect_ratio": "3x2",
            "rendering_speed": "TURBO", "magic_prompt": "OFF"}
    first = client.run_sync("ideogram-3-remix", **body)
    assert Image.open(io.BytesIO(first.content)).size == (1248, 832)
    assert client.run_sync("ideogram-3-remix", **body).content == first.content
    result = client.submit_async("ideogram-3-remix", **{**body, "seed": 6}).wait(interval=0.2)
    assert result["engine"] == "diffusers"
    assert result["details"]["family"]
    assert result["details"]["steps"] > 0


def test_serve_with_the_diffusers_engine_and_no_model_exits_2_saying_what_to_set(start_process):
    server = start_process(env={"OPENREMIX_ENGINE": "diffusers", "OPENREMIX_MODEL": ""},
                           ready=False)
    assert server.proc.wait(timeout=90) == 2
    last = server.log().strip().splitlines()[-1]
    assert last.startswith("error: OPENREMIX_MODEL is empty"), server.log()
    assert "stabilityai/sdxl-turbo" in last and "openremix models pull" in last


def test_a_model_that_fails_to_load_stops_a_worker_non_zero_and_serve_names_the_error(
        start_process, tmp_path: Path):
    """An Ideogram 4 folder with a component's weights missing: a standalone `openremix worker`
    exits 3 (so its supervisor restarts it) with one line naming the load error, and `serve`
    keeps answering but its output and /readyz name the same error."""
    from tests.support.tiny_ideogram4 import build_tiny_ideogram4

    model = build_tiny_ideogram4(tmp_path / "broken-ideogram4", seed=0)
    (model / "transformer" / "diffusion_pytorch_model.safetensors").unlink()
    env = {"OPENREMIX_ENGINE": "diffusers", "OPENREMIX_MODEL": str(model),
           "OPENREMIX_DEVICE": "cpu", "OMP_NUM_THREADS": "1"}
    cause = f"failed to load: cannot load the diffusers model {str(model)!r}"

    worker = start_process("worker", env=env, ready=False)
    assert worker.proc.wait(timeout=180) == 3, worker.log()
    last = worker.log().strip().splitlines()[-1]
    assert last.startswith(f"error: engine 'diffusers' {cause}"), worker.log()
    assert "transformer" in last and "Traceback" not in last

    server = start_process(env=env, ready=False)
    deadline = time.monotonic() + 180
    while cause not in server.log():
        assert server.proc.poll() is None and time.monotonic() < deadline, server.log()
        time.sleep(0.2)
    ready = httpx.get(f"{server.base_url}/readyz", timeout=5)
    assert ready.status_code == 503 and cause in ready.text
    assert server.proc.poll() is None  # the API stays up to answer 503s that say why


def test_serve_remixes_with_ideogram_4_end_to_end(start_process, tmp_path: Path, astronaut_uri,
                                                   chelsea_uri):
    from tests.support.tiny_ideogram4 import build_tiny_ideogram4

    model = build_tiny_ideogram4(tmp_path / "tiny-ideogram4", seed=0, enhancer_head=True)
    server = start_process(env={"OPENREMIX_ENGINE": "diffusers", "OPENREMIX_MODEL": str(model),
                                "OPENREMIX_DEVICE": "cpu", "OPENREMIX_MAX_SIDE": "64",
                                "OPENREMIX_BATCH_WINDOW_MS": "300",
                                "OPENREMIX_ENHANCER_MAX_TOKENS": "16",
                                "OMP_NUM_THREADS": "1"})  # tiny models spin on a busy 2-core box
    client = SegmindClient(api_key=TEST_KEY, base_url=f"{server.base_url}/v1")
    body = {"image": astronaut_uri, "prompt": "a portrait of a cat", "seed": 5,
            "rendering_speed": "TURBO", "magic_prompt": "OFF"}
    solo = {}
    for shape in ({"aspect_ratio": "3x2"}, {"aspect_ratio": "9x16"}, {"resolution": "1536x512"}):
        content = client.run_sync("ideogram-3-remix", **body, **shape).content
        expected = {"3x2": (1248, 832), "9x16": (736, 1312)}.get(
            shape.get("aspect_ratio", ""), (1536, 512))
        assert Image.open(io.BytesIO(content)).size == expected
        solo[tuple(shape.values())] = content
    again = client.run_sync("ideogram-3-remix", **body, aspect_ratio="3x2").content
    assert again == solo[("3x2",)]
    other_input = client.run_sync("ideogram-3-remix", **{**body, "image": chelsea_uri},
                                  aspect_ratio="3x2").content
    assert other_input != again

    jobs = [client.submit_async("ideogram-3-remix", **{**body, "seed": s, "output_format": "png"})
            for s in (21, 22, 23)]  # submitted together: the worker batches them
    results = [job.wait(interval=0.2) for job in jobs]
    for seed, result in zip((21, 22, 23), results, strict=True):
        assert result["details"]["family"] == "ideogram4"
        batched = httpx.get(result["output"]).content
        alone = client.run_sync("ideogram-3-remix", **{**body, "seed": seed,
                                                       "output_format": "png"}).content
        assert batched == alone

    try:
        magic = client.submit_async("ideogram-3-remix", **{**body, "magic_prompt": "ON",
                                                           "negative_prompt": "blurry"}
                                    ).wait(interval=0.2)
    except Exception as exc:
        raise AssertionError(f"{exc!r} {getattr(exc, 'detail', '')}\n{server.log()}") from exc
    assert magic["prompt"] != body["prompt"]  # the model's own enhancer (a tiny random head)
    assert magic["details"]["conditioning_prompt"] == magic["prompt"]
    assert any("negative_prompt" in w for w in magic["warnings"])


def test_serve_remixes_with_flux_kontext_end_to_end(start_process, tmp_path: Path, astronaut_uri,
                                                     chelsea_uri):
    from tests.support.tiny_flux_kontext import build_tiny_flux_kontext

    model = build_tiny_flux_kontext(tmp_path / "tiny-kontext", seed=0)
    server = start_process(env={"OPENREMIX_ENGINE": "diffusers", "OPENREMIX_MODEL": str(model),
                                "OPENREMIX_DEVICE": "cpu", "OPENREMIX_MAX_SIDE": "64",
                                "OPENREMIX_BATCH_WINDOW_MS": "300", "OMP_NUM_THREADS": "1"})
    client = SegmindClient(api_key=TEST_KEY, base_url=f"{server.base_url}/v1")
    body = {"image": astronaut_uri, "prompt": "make the cat blue", "seed": 5,
            "rendering_speed": "TURBO", "magic_prompt": "OFF", "output_format": "png"}
    first = client.run_sync("ideogram-3-remix", **body, aspect_ratio="3x2").content
    assert Image.open(io.BytesIO(first)).size == (1248, 832)
    assert client.run_sync("ideogram-3-remix", **body, aspect_ratio="3x2").content == first
    other_input = client.run_sync("ideogram-3-remix", **{**body, "image": chelsea_uri},
                                  aspect_ratio="3x2").content
    assert other_input != first

    jobs = [client.submit_async("ideogram-3-remix", **{**body, "seed": s}) for s in (31, 32)]
    results = [job.wait(interval=0.2) for job in jobs]  # submitted together: one batch
    for seed, result in zip((31, 32), results, strict=True):
        assert result["details"]["family"] == "flux_kontext"
        alone = client.run_sync("ideogram-3-remix", **{**body, "seed": seed}).content
        assert httpx.get(result["output"]).content == alone
