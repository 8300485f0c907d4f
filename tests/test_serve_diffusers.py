"""`openremix serve` with the diffusion engine, driven by the real segmind SDK.

The weights are a tiny random SD pipeline built at test time (no model hub here): the real
pipeline class, the real loading path from a local folder, the real parameter mapping.
"""

from __future__ import annotations

import io
from pathlib import Path

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
                                "OPENREMIX_DEVICE": "cpu"})
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
