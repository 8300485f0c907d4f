"""The parameter mapping of the diffusers engine, checked without torch."""

from __future__ import annotations

import itertools
import subprocess
import sys
from typing import Any

import pytest

from openremix.contract import params as contract
from openremix.contract.request import RemixRequest
from openremix.engine.diffusion import mapping as dm

SD = dm.ModelTraits(dm.ModelFamily("sd"), multiple=16, native_side=512)
SDXL = dm.ModelTraits(dm.ModelFamily("sdxl"), multiple=16, native_side=1024)
SDXL_TURBO = dm.ModelTraits(dm.ModelFamily("sdxl", "turbo"), multiple=16, native_side=512)
SD_LCM = dm.ModelTraits(dm.ModelFamily("sd", "lcm"), multiple=16, native_side=512)
FLUX = dm.ModelTraits(dm.ModelFamily("flux"), multiple=16, native_side=1024)
ALL_TRAITS = (SD, SDXL, SDXL_TURBO, SD_LCM, FLUX)


def request(**kw: Any) -> RemixRequest:
    values: dict[str, Any] = {"image": "x", "prompt": "a cat on a wall", "seed": 1}
    values.update(kw)
    return RemixRequest.model_validate(values)


def test_the_module_does_not_import_torch() -> None:
    code = ("import sys, openremix.engine.diffusion.mapping; "
            "sys.exit('torch' in sys.modules or 'diffusers' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_strength_falls_as_image_weight_rises() -> None:
    strengths = [dm.strength_for(w) for w in range(1, 101)]
    assert all(a > b for a, b in itertools.pairwise(strengths))
    assert 0.95 <= strengths[0] <= 1.0
    assert 0.05 <= strengths[-1] <= 0.1


@pytest.mark.parametrize("traits", ALL_TRAITS, ids=lambda t: t.family.name)
def test_at_least_one_denoising_step_always_runs(traits: dm.ModelTraits) -> None:
    for weight in (1, 2, 50, 99, 100):
        for speed in contract.RENDERING_SPEEDS:
            plan = dm.plan_remix(request(image_weight=weight, rendering_speed=speed), "p", traits)
            assert plan.denoise_steps >= 1
            assert plan.denoise_steps == dm.denoising_steps(plan.steps, plan.strength)


@pytest.mark.parametrize("traits", ALL_TRAITS, ids=lambda t: t.family.name)
def test_rendering_speeds_order_the_step_counts(traits: dm.ModelTraits) -> None:
    def steps(speed: str) -> tuple[int, int]:
        plan = dm.plan_remix(request(rendering_speed=speed), "p", traits)
        return plan.steps, plan.denoise_steps

    assert steps("TURBO") < steps("DEFAULT") < steps("QUALITY")
    assert steps("FLASH") == steps("TURBO") and steps("BALANCED") == steps("DEFAULT")


def test_distilled_models_take_few_steps_and_no_cfg_while_base_models_take_many() -> None:
    for weight in (1, 50, 100):
        turbo = [dm.plan_remix(request(rendering_speed=s, image_weight=weight), "p", SDXL_TURBO)
                 for s in ("TURBO", "DEFAULT", "QUALITY")]
        assert [p.denoise_steps for p in turbo] == [2, 4, 8]
        assert all(p.guidance == 0.0 for p in turbo)
    assert dm.plan_remix(request(), "p", SD_LCM).guidance == 1.0
    base = [dm.plan_remix(request(rendering_speed=s), "p", SDXL).steps
            for s in ("TURBO", "DEFAULT", "QUALITY")]
    assert base == [12, 30, 50]
    assert dm.plan_remix(request(), "p", SDXL).guidance == pytest.approx(7.0)


@pytest.mark.parametrize(
    ("pipeline", "scheduler", "model", "proj", "expected"),
    [
        ("StableDiffusionImg2ImgPipeline", "PNDMScheduler", "runwayml/sd-v1-5", None, "sd"),
        ("StableDiffusionXLImg2ImgPipeline", "EulerDiscreteScheduler", "/m/sdxl", None, "sdxl"),
        ("StableDiffusionXLImg2ImgPipeline", "EulerAncestralDiscreteScheduler",
         "stabilityai/sdxl-turbo", None, "sdxl-turbo"),
        ("StableDiffusionImg2ImgPipeline", "EulerDiscreteScheduler", "stabilityai/sd-turbo", None,
         "sd-turbo"),
        ("StableDiffusionXLImg2ImgPipeline", "EulerDiscreteScheduler", "ByteDance/SDXL-Lightning",
         None, "sdxl-turbo"),
        ("StableDiffusionXLImg2ImgPipeline", "LCMScheduler", "/models/any", None, "sdxl-lcm"),
        ("LatentConsistencyModelImg2ImgPipeline", "LCMScheduler", "x", 256, "sd-lcm"),
        ("StableDiffusionImg2ImgPipeline", "PNDMScheduler", "x", 256, "sd-lcm"),
        ("StableDiffusion3Img2ImgPipeline", "FlowMatchEulerDiscreteScheduler", "x", None, "sd3"),
        ("FluxImg2ImgPipeline", "FlowMatchEulerDiscreteScheduler", "flux-schnell", None,
         "flux-turbo"),
        ("KandinskyV22Img2ImgCombinedPipeline", "DDPMScheduler", "x", None, "kandinsky"),
        ("SomethingNewPipeline", "X", "x", None, "other"),
    ],
)
def test_model_family_is_detected_from_class_scheduler_and_name(
    pipeline: str, scheduler: str, model: str, proj: int | None, expected: str,
) -> None:
    assert dm.detect_family(pipeline, scheduler, model, proj).name == expected


def test_generation_size_keeps_the_aspect_on_the_model_grid() -> None:
    for resolution in contract.RESOLUTIONS:
        w, h = (int(v) for v in resolution.split("x"))
        for traits in (SD, SDXL):
            gw, gh = dm.generation_size((w, h), traits)
            assert gw % 16 == 0 and gh % 16 == 0
            assert gw <= w and gh <= h
            assert abs(gw / gh - w / h) / (w / h) < 0.08
            assert gw * gh <= traits.native_side**2 * 1.1
    assert dm.generation_size((1024, 1024), SDXL) == (1024, 1024)
    assert dm.generation_size((1024, 1024), SD) == (512, 512)
    assert dm.generation_size((1536, 512), SDXL, max_side=64) == (64, 16)


def test_style_types_add_their_look_and_guidance_factor() -> None:
    general = dm.plan_remix(request(style_type="GENERAL"), "a cat", SDXL)
    realistic = dm.plan_remix(request(style_type="REALISTIC"), "a cat", SDXL)
    design = dm.plan_remix(request(style_type="DESIGN"), "a cat", SDXL)
    assert general.prompt == "a cat" and general.negative_prompt is None
    assert "photographic" in realistic.prompt and "painting" in (realistic.negative_prompt or "")
    assert "flat colors" in design.prompt
    assert realistic.guidance < general.guidance < design.guidance
    fiction = dm.plan_remix(request(style_type="FICTION"), "a cat", SDXL)
    assert "illustration" in fiction.prompt


def test_auto_style_type_is_picked_from_the_prompt_words() -> None:
    assert dm.resolve_style_type("AUTO", "a photo of my dog, 35mm") == "REALISTIC"
    assert dm.resolve_style_type("AUTO", "minimal logo for a bakery") == "DESIGN"
    assert dm.resolve_style_type("AUTO", "a dragon over a castle") == "FICTION"
    assert dm.resolve_style_type("AUTO", "anime cat") == "STYLIZED"
    assert dm.resolve_style_type("AUTO", "a cat on a wall") == "GENERAL"
    plan = dm.plan_remix(request(style_type="AUTO", prompt="a photo of a dog"), "x", SDXL)
    assert plan.style_type == "REALISTIC"


def test_negative_prompt_leads_and_the_style_negative_follows() -> None:
    plan = dm.plan_remix(request(negative_prompt="blurry", style_type="REALISTIC"), "p", SDXL)
    assert plan.negative_prompt is not None and plan.negative_prompt.startswith("blurry, ")


def test_a_style_code_always_names_the_same_style() -> None:
    a, b = dm.code_style("A1B2C3D4"), dm.code_style("a1b2c3d4")
    assert a == b
    assert abs(a.strength_shift) <= dm.CODE_STRENGTH_SHIFT
    assert 0.9 <= a.guidance_factor <= 1.2
    styles = {dm.code_style(f"{i:08X}").fragment for i in range(16)}
    assert styles == set(dm.CODE_FRAGMENTS)
    with pytest.raises(ValueError):
        dm.code_style("XYZ")
    plan1 = dm.plan_remix(request(style_codes=["A1B2C3D4"]), "a cat", SDXL)
    plan2 = dm.plan_remix(request(style_codes=["A1B2C3D4"]), "a cat", SDXL)
    other = dm.plan_remix(request(style_codes=["00000F03"]), "a cat", SDXL)
    assert plan1 == plan2
    assert plan1.styles[0]["code"] == "A1B2C3D4" and a.fragment in plan1.prompt
    assert (other.prompt, other.strength) != (plan1.prompt, plan1.strength)


def test_color_palette_conditions_the_prompt_and_is_kept_for_the_colour_transfer() -> None:
    plan = dm.plan_remix(request(color_palette={"name": "ULTRAMARINE"}), "a cat", SDXL)
    assert "color palette of" in plan.prompt and "blue" in plan.prompt
    assert plan.palette and sum(w for _, w in plan.palette) == pytest.approx(1.0)
    custom = request(color_palette={"members": [{"color_hex": "#ff0000", "color_weight": 1.0},
                                                {"color_hex": "#00ff00", "color_weight": 0.2}]})
    plan = dm.plan_remix(custom, "a cat", SDXL)
    assert plan.prompt.endswith("color palette of red and green")


def test_jobs_that_differ_only_in_prompt_and_seed_share_a_sampling_key() -> None:
    a = dm.plan_remix(request(prompt="a cat", seed=1, negative_prompt="x"), "a cat", SDXL)
    b = dm.plan_remix(request(prompt="a dog", seed=2), "a dog", SDXL)
    c = dm.plan_remix(request(prompt="a dog", rendering_speed="QUALITY"), "a dog", SDXL)
    d = dm.plan_remix(request(prompt="a dog", resolution="1536x512"), "a dog", SDXL)
    assert a.sampling_key() == b.sampling_key()
    assert len({a.sampling_key(), c.sampling_key(), d.sampling_key()}) == 3



def test_a_style_code_palette_is_its_preset_and_a_color_palette_replaces_it() -> None:
    from openremix.contract.palettes import PALETTE_PRESETS, hex_to_rgb

    code = "00000010"  # bits 4-7 = 1: the first preset
    name = dm.CODE_PALETTES[1]
    assert name is not None and dm.code_style(code).palette == name
    plan = dm.plan_remix(request(style_codes=[code]), "a cat", SDXL)
    assert [rgb for rgb, _ in plan.palette] == [hex_to_rgb(h) for h, _ in PALETTE_PRESETS[name]]
    assert sum(w for _, w in plan.palette) == pytest.approx(1.0)
    two = dm.plan_remix(request(style_codes=[code, "00000000"]), "a cat", SDXL)
    assert sum(w for _, w in two.palette) == pytest.approx(0.5)  # shares averaged over codes
    own = dm.plan_remix(request(style_codes=[code], color_palette={"name": "ULTRAMARINE"}),
                        "a cat", SDXL)
    assert own.palette[0][0] == hex_to_rgb(PALETTE_PRESETS["ULTRAMARINE"][0][0])


def test_the_readme_shows_this_mapping_table() -> None:
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    table = [line for line in (dm.__doc__ or "").splitlines() if line.startswith("|")]
    assert len(table) > 10
    assert "\n".join(table) in readme
