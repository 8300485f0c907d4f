"""The FLUX.1 Kontext parameter mapping (pure: no torch, no model)."""

from __future__ import annotations

from typing import Any

import pytest

from openremix.contract.request import RemixRequest
from openremix.engine.diffusion import flux_kontext_mapping as km
from openremix.engine.diffusion import mapping as dm

TRAITS = dm.ModelTraits(family=dm.ModelFamily("flux_kontext"), multiple=16,
                        native_side=km.NATIVE_SIDE)


def plan(**kw: Any) -> Any:
    values: dict[str, Any] = {"image": "x", "prompt": "make the cat blue", "seed": 1,
                              "rendering_speed": "DEFAULT"}
    values.update(kw)
    params = RemixRequest.model_validate(values)
    return km.plan_kontext(params, params.prompt, TRAITS)


def test_rendering_speed_picks_the_steps_and_default_is_the_models_own() -> None:
    assert [plan(rendering_speed=s).steps for s in ("TURBO", "DEFAULT", "QUALITY")] == [14, 28, 50]
    assert plan(rendering_speed="FLASH").steps == 14
    assert plan(rendering_speed="BALANCED").steps == 28
    assert plan().guidance == km.GUIDANCE == 2.5


def test_a_higher_image_weight_starts_later_in_the_schedule() -> None:
    runs = [plan(image_weight=w).denoise_steps for w in (1, 25, 50, 75, 100)]
    assert runs == sorted(runs, reverse=True) and len(set(runs)) == 5
    assert runs[0] == 27 and runs[-1] >= 1  # weight 1: 27 of 28 steps


@pytest.mark.parametrize("steps,first", [(28, 0), (28, 13), (14, 13), (1, 0)])
def test_the_sigmas_are_the_full_schedules_tail(steps: int, first: int) -> None:
    full = km.schedule_sigmas(steps, 0)
    assert full[0] == 1.0 and full[-1] == pytest.approx(1.0 / steps)
    assert km.schedule_sigmas(steps, first) == full[first:]


def test_sizes_sit_on_the_16_px_grid_near_one_megapixel() -> None:
    for resolution in ("1024x1024", "1536x512", "704x1408", "1280x800"):
        w, h = plan(resolution=resolution).generation_size
        assert w % 16 == h % 16 == 0 and w * h <= 1024 * 1024 * 1.05
    assert plan(resolution="1024x1024").generation_size == (1024, 1024)


def test_style_and_palette_are_woven_into_the_instruction() -> None:
    assert plan().prompt == "make the cat blue"
    assert plan(style_type="DESIGN").prompt.startswith("make the cat blue, graphic design")
    assert "color palette of" in plan(color_palette={"name": "ULTRAMARINE"}).prompt
    coded = plan(style_codes=["A1B2C3D4"])
    assert coded.prompt != plan().prompt and coded.strength != plan().strength


def test_a_negative_prompt_turns_on_true_cfg_with_the_styles_negative() -> None:
    assert plan().negative_prompt is None
    assert plan(style_type="REALISTIC").negative_prompt is None  # no CFG cost without one
    negative = plan(negative_prompt="blurry", style_type="REALISTIC").negative_prompt
    assert negative is not None and negative.startswith("blurry, illustration")
    assert plan(negative_prompt="blurry").warnings == []
