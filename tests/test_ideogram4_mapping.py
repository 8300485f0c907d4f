"""Ideogram 4's parameter mapping, checked without torch."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from typing import Any

from openremix.contract import params as contract
from openremix.contract.request import RemixRequest
from openremix.engine.diffusion import ideogram4_mapping as im

REAL = im.traits(16)


def request(**kw: Any) -> RemixRequest:
    values: dict[str, Any] = {"image": "x", "prompt": "a cat on a wall", "seed": 1}
    values.update(kw)
    return RemixRequest.model_validate(values)


def test_the_module_does_not_import_torch() -> None:
    code = ("import sys, openremix.engine.diffusion.ideogram4_mapping; "
            "sys.exit('torch' in sys.modules or 'diffusers' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_quality_is_the_models_own_default_schedule() -> None:
    assert im.guidance_schedule(48) == (7.0,) * 45 + (3.0,) * 3
    assert im.guidance_schedule(12) == (7.0,) * 11 + (3.0,)
    assert im.guidance_schedule(24) == (7.0,) * 22 + (3.0,) * 2
    plans = {s: im.plan_ideogram4(request(rendering_speed=s), "p", REAL)
             for s in ("TURBO", "DEFAULT", "QUALITY", "FLASH", "BALANCED")}
    assert [plans[s].steps for s in ("TURBO", "DEFAULT", "QUALITY")] == [12, 24, 48]
    assert plans["FLASH"].steps == 12 and plans["BALANCED"].steps == 24
    assert all(len(p.guidance_schedule) == p.steps for p in plans.values())


def test_a_higher_image_weight_starts_later_and_runs_fewer_steps() -> None:
    for speed in ("TURBO", "DEFAULT", "QUALITY"):
        plans = [im.plan_ideogram4(request(image_weight=w, rendering_speed=speed), "p", REAL)
                 for w in range(1, 101)]
        runs = [p.denoise_steps for p in plans]
        assert all(a >= b for a, b in itertools.pairwise(runs)) and runs[0] > runs[-1] >= 1
        assert all(p.guidance == p.guidance_schedule[p.steps - p.denoise_steps] for p in plans)


def test_the_start_step_follows_img2imgs_rule_and_always_leaves_a_step() -> None:
    assert im.start_step(12, 0.5) == 6 and im.start_step(48, 1.0) == 0
    assert im.start_step(12, 0.01) == 11 and im.start_step(12, 0.0) == 11


def test_every_api_resolution_is_generated_at_its_own_size_on_the_16_px_grid() -> None:
    for text in contract.RESOLUTIONS:
        w, h = (int(v) for v in text.split("x"))
        plan = im.plan_ideogram4(request(resolution=text), "p", REAL)
        assert plan.generation_size == (w, h)
    capped = im.plan_ideogram4(request(resolution="1536x512"), "p", REAL, max_side=768)
    assert capped.generation_size == (768, 256)


def test_style_type_codes_and_palette_are_woven_into_a_plain_prompt() -> None:
    plan = im.plan_ideogram4(request(style_type="DESIGN", color_palette={"name": "EMBER"}),
                             "a cat", REAL)
    assert plan.prompt.startswith("a cat, graphic design")
    assert "colour palette: " in plan.prompt and "#" in plan.prompt
    coded = im.plan_ideogram4(request(style_codes=["0000000A"]), "a cat", REAL)
    assert "charcoal drawing" in coded.prompt and coded.styles[0]["code"] == "0000000A"
    realistic = im.plan_ideogram4(request(style_type="REALISTIC"), "a cat", REAL)
    assert realistic.guidance_schedule[0] < im.MAIN_GUIDANCE


def test_a_structured_caption_keeps_its_shape_with_medium_and_colours_woven_in() -> None:
    caption = json.dumps({"high_level_description": "a cat on a wall",
                          "compositional_deconstruction": {
                              "background": "a brick wall",
                              "elements": [{"type": "obj", "desc": "a grey cat"}]}})
    plan = im.plan_ideogram4(request(style_type="REALISTIC",
                                     color_palette={"members": [{"color_hex": "#ff0000"}]}),
                             caption, REAL)
    woven = json.loads(plan.prompt)
    assert woven["high_level_description"].startswith("a cat on a wall, photographic")
    assert woven["compositional_deconstruction"]["background"] == (
        "a brick wall, colour palette: red #ff0000")
    assert woven["compositional_deconstruction"]["elements"] == [
        {"type": "obj", "desc": "a grey cat"}]


def test_a_negative_prompt_is_not_used_and_says_so() -> None:
    plan = im.plan_ideogram4(request(negative_prompt="blurry"), "a cat", REAL)
    assert plan.negative_prompt is None and plan.warnings == [im.NEGATIVE_WARNING]
    assert im.plan_ideogram4(request(), "a cat", REAL).warnings == []


def test_prompts_are_padded_to_a_bucket_of_tokens() -> None:
    assert [im.text_tokens(n) for n in (0, 1, 64, 65, 200)] == [64, 64, 64, 128, 256]
