"""How the Ideogram-3-Remix parameters map onto Ideogram 4 (pure, no torch).

Ideogram 4 is a flow-matching transformer with asymmetric guidance: a conditional and an
unconditional transformer whose velocities are blended per step by a guidance schedule (7.0,
then 3.0 for the last "polish" steps). It has no negative branch, and it was trained on
structured JSON captions. `plan_ideogram4` returns the `RemixPlan` the `ideogram4` family runs;
the README's table:

| parameter | Ideogram 4 | rule |
|---|---|---|
| `image_weight` 1..100 | start step | strength as for img2img (1 -> 0.96, 50 -> 0.52, 100 -> 0.08, style codes shift it); the resolution-aware schedule is built for all steps and the remix starts at step `int(steps - steps * strength)` (at least one step runs), from the input's latents noised to that step's sigma with the job's generator |
| `rendering_speed` | steps, guidance schedule | TURBO/FLASH 12, DEFAULT/BALANCED 24, QUALITY 48 scheduled steps (the model's own default is 48); schedule 7.0 then 3.0 for the last `ceil(steps / 16)` steps (48 -> 45 + 3, the model's default), sliced from the start step |
| `resolution` / `aspect_ratio` | `height`, `width` | generated at the requested size on the model's grid (VAE factor x 2x2 packing: 16 px for the real model), capped by `OPENREMIX_MAX_SIDE`; the input is centre-cropped and resized to it; the result is resized (Lanczos) to exactly `params.size` when they differ |
| `seed` | generators | one CPU `torch.Generator(seed)` per job draws the VAE sample, then the start noise (the enhancer's sampling uses its own seeded generator): the same bytes alone or in a batch |
| `magic_prompt` | prompt | with the model's `prompt_enhancer_head`: ON always, AUTO for short or vague prompts, rewrites the prompt into Ideogram 4's structured JSON caption (seeded by the job), returned as the used prompt; where the text encoder carries Qwen3-VL's vision tower, the enhancer also sees the input (centre-cropped to the output's aspect, at most 256 image tokens) and is asked to keep what the prompt does not change; without the tower: diffusers' text-only enhancer; without the head: the template enhancer |
| `style_type` | caption, guidance | the style type's medium phrase (REALISTIC photographic, DESIGN flat graphic, FICTION / STYLIZED illustrative; AUTO picked from the prompt) is woven into the caption; guidance x the style's factor (main steps only) |
| `style_codes` | caption, start step, guidance, palette | as for img2img: a style fragment woven into the caption, a strength shift, a guidance factor, a palette preset |
| `color_palette` | caption + post-processing | the colours by name and hex woven into the caption, then `palette.transfer_palette` in Lab (amount 0.6) |
| `negative_prompt` | — | not used: the unconditional transformer sees no text; reported in `warnings` |
| `style_reference_images` | caption (vision tower) or post-processing | with the enhancer head and the vision tower: the enhancer, shown the references, describes their shared style in a phrase (sampled with a fixed seed, so it depends on the references alone) woven into the caption as `style reference: ...` (listed in the result's `styles`); no colour transfer, no warning. Otherwise the references' Lab mean/std moved onto the output (amount 0.7; warning in the result) |
| content filter | — | `safety.blocked_term` -> no image |

Captions are woven, never rewritten: a JSON caption (the enhancer's, or one the user wrote) gets
the medium and fragments appended to `high_level_description` and the colours to
`compositional_deconstruction.background`; a plain prompt gets them appended as phrases.
"""  # noqa: E501 (a Markdown table for the README)

from __future__ import annotations

import json
import math
from typing import Any

from openremix.contract.params import base_speed
from openremix.contract.request import RemixRequest
from openremix.engine.diffusion import mapping as dm
from openremix.engine.palette import PaletteColors, rgb_to_hex

STEPS = {"TURBO": 12, "DEFAULT": 24, "QUALITY": 48}
MAIN_GUIDANCE = 7.0
POLISH_GUIDANCE = 3.0
STEPS_PER_POLISH_STEP = 16
"""One polish step (guidance 3.0) per 16 scheduled steps: 3 of 48, the model's default."""
TEXT_TOKEN_BUCKET = 64
"""Prompts are padded to a multiple of this many tokens (not the pipeline's 2048): the padding
is masked out, so a shorter one only saves the transformers' work."""
NATIVE_SIDE = 2048
"""The model's default square; every API resolution is below it, so none is scaled down."""
NEGATIVE_WARNING = (
    "negative_prompt: Ideogram 4 has no negative branch (its unconditional transformer sees no "
    "text), so the negative prompt was not used"
)
REFERENCE_WARNING = (
    "style_reference_images: Ideogram 4 takes no image condition here, so only the references' "
    "colours were transferred onto the output"
)


def traits(multiple: int) -> dm.ModelTraits:
    """Ideogram 4's traits; `multiple` is `vae_scale_factor * 2` (16 for the real model)."""
    return dm.ModelTraits(family=dm.ModelFamily("ideogram4"), multiple=multiple,
                          native_side=NATIVE_SIDE)


def schedule_steps(speed: str) -> int:
    """Scheduled steps for a rendering speed."""
    return STEPS[base_speed(speed)]


def guidance_schedule(steps: int, factor: float = 1.0) -> tuple[float, ...]:
    """Per-step guidance over the full schedule: main (x `factor`), then the polish steps."""
    polish = math.ceil(steps / STEPS_PER_POLISH_STEP)
    main = round(max(1.5, MAIN_GUIDANCE * factor), 2)
    return (main,) * (steps - polish) + (POLISH_GUIDANCE,) * polish


def start_step(steps: int, strength: float) -> int:
    """The first step run: img2img's rule `int(steps - steps * strength)`; one step at least."""
    return min(int(max(steps - steps * strength, 0)), steps - 1)


def text_tokens(count: int) -> int:
    """`count` prompt tokens rounded up to the padding bucket."""
    return max(1, math.ceil(count / TEXT_TOKEN_BUCKET)) * TEXT_TOKEN_BUCKET


def colour_list(colors: PaletteColors, most: int = 5) -> str:
    """"deep blue #120a8f, cream #f5ebc8": the heaviest colours by name and exact hex."""
    heaviest = sorted(colors, key=lambda c: -c[1])[:most]
    return ", ".join(f"{dm.color_name(rgb)} {rgb_to_hex(rgb)}" for rgb, _ in heaviest)


def parse_caption(text: str) -> dict[str, Any] | None:
    """`text` as a structured caption (a JSON object with `high_level_description`), or None."""
    try:
        caption = json.loads(text)
    except ValueError:
        return None
    if isinstance(caption, dict) and isinstance(caption.get("high_level_description"), str):
        return caption
    return None


def weave_caption(prompt: str, phrases: list[str], colors: PaletteColors) -> str:
    """The conditioning caption: `prompt` with the style `phrases` and the palette woven in."""
    colour_text = f"colour palette: {colour_list(colors)}" if colors else ""
    caption = parse_caption(prompt)
    if caption is None:
        return dm.join_phrases([prompt, *phrases, colour_text])
    described = caption["high_level_description"]
    caption["high_level_description"] = dm.join_phrases([described, *phrases])
    if colour_text:
        scene = caption.get("compositional_deconstruction")
        if not isinstance(scene, dict):
            scene = caption["compositional_deconstruction"] = {}
        background = scene.get("background")
        scene["background"] = dm.join_phrases([background if isinstance(background, str) else "",
                                        colour_text])
    return json.dumps(caption, ensure_ascii=False, separators=(",", ":"))


def plan_ideogram4(params: RemixRequest, prompt: str, traits: dm.ModelTraits,
                   max_side: int | None = None) -> dm.RemixPlan:
    """Map one validated request (with the used `prompt`) onto Ideogram 4.

    `text_tokens` stays 0 here: the family counts the caption's tokens with its tokenizer.
    """
    style = dm.choose_style(params)
    steps = schedule_steps(params.rendering_speed)
    schedule = guidance_schedule(steps, style.guidance_factor)
    first = start_step(steps, style.strength)
    warnings = [NEGATIVE_WARNING] if params.negative_prompt else []
    phrases = [style.template.suffix, *(c.fragment for c in style.codes)]
    return dm.RemixPlan(
        prompt=weave_caption(prompt, [p for p in phrases if p], style.palette),
        negative_prompt=None,
        strength=style.strength,
        steps=steps,
        denoise_steps=steps - first,
        guidance=schedule[first],
        generation_size=dm.generation_size(params.size, traits, max_side),
        style_type=style.style_type,
        styles=style.describe(),
        palette=style.palette,
        guidance_schedule=schedule,
        warnings=warnings,
    )
