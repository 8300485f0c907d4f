"""How the Ideogram-3-Remix parameters map onto FLUX.1 Kontext (pure, no torch).

FLUX.1 Kontext edits by instruction: the input image's latents are appended to the tokens the
transformer sees (a condition, not a start latent), and the generation normally starts from pure
noise. Left that way, `image_weight` would have nothing to act on, so the remix also *starts*
from the input, as img2img does: the flow-matching schedule is built for all steps and the run
starts at the step `image_weight` picks, from the input's latents noised to that step's sigma.
Low weights are Kontext's own edit (nearly pure noise, the input kept only through the
condition); high weights keep the input's pixels as well. `plan_kontext` returns the
`RemixPlan` the `flux_kontext` family runs; the README's table:

| parameter | FLUX.1 Kontext | rule |
|---|---|---|
| `image_weight` 1..100 | start step (the input is always the condition too) | strength as for img2img (1 -> 0.96, 50 -> 0.52, 100 -> 0.08, style codes shift it); the model's shifted schedule (`sigmas` 1 .. 1/steps, `mu` from the token count) is built for all steps and the run starts at step `int(steps - steps * strength)` (at least one step runs), from the input's latents noised to that sigma with the job's generator |
| `rendering_speed` | `num_inference_steps`, `guidance_scale` | TURBO/FLASH 14, DEFAULT/BALANCED 28 (the model's default), QUALITY 50 scheduled steps; distilled guidance 2.5 x the style's factor (at least 1.0) |
| `resolution` / `aspect_ratio` | `height`, `width` (and `max_area`) | output size scaled to the model's native ~1 MP (never up; capped by `OPENREMIX_MAX_SIDE`), on the 16 px grid (VAE factor x 2x2 packing); the input is centre-cropped and resized to it (no snapping to Kontext's preferred sizes); the result is resized (Lanczos) to exactly `params.size` when they differ |
| `seed` | start noise | one CPU `torch.Generator(seed)` per job draws the start noise (the input is encoded with the VAE's mode): the same bytes alone or in a batch |
| `magic_prompt` | prompt | `prompting.template.apply_magic_prompt`; the used prompt is returned |
| `style_type`, `style_codes` | instruction, start step, guidance, palette | as for img2img: the style's suffix and the codes' fragments appended to the instruction, the codes' strength shift and guidance factors, their palette presets |
| `color_palette` | instruction + post-processing | "color palette of <named colours>" appended to the instruction, then `palette.transfer_palette` in Lab (amount 0.6) |
| `negative_prompt` | `negative_prompt`, `true_cfg_scale` | given: true classifier-free guidance at scale 1.5 on the user's text plus the style type's negative (a second transformer pass per step: about twice the time); jobs with and without one never share a call |
| `style_reference_images` | post-processing | the references' Lab mean/std moved onto the output (amount 0.7; warning in the result) |
| content filter | — | `safety.blocked_term` -> no image |
"""  # noqa: E501 (a Markdown table for the README)

from __future__ import annotations

import numpy as np

from openremix.contract.params import base_speed
from openremix.contract.request import RemixRequest
from openremix.engine.diffusion import mapping as dm
from openremix.engine.diffusion.ideogram4_mapping import start_step

STEPS = {"TURBO": 14, "DEFAULT": 28, "QUALITY": 50}
GUIDANCE = 2.5
"""FLUX.1 Kontext dev's distilled guidance (an embedding, not CFG)."""
TRUE_CFG_SCALE = 1.5
"""True CFG when the user gives a negative prompt (the pipeline's `true_cfg_scale`)."""
NATIVE_SIDE = 1024
TEXT_TOKENS = 512
"""T5's `max_sequence_length` (FLUX's default); a tokenizer with a shorter limit lowers it."""
REFERENCE_WARNING = (
    "style_reference_images: FLUX.1 Kontext takes one image condition (the input), so only the "
    "references' colours were transferred onto the output"
)


def schedule_sigmas(steps: int, first: int) -> list[float]:
    """The pipeline's unshifted sigmas (`linspace(1, 1/steps, steps)`) from step `first`; the
    scheduler shifts each by the resolution's `mu`, so the slice is the full schedule's tail."""
    return [float(s) for s in np.linspace(1.0, 1.0 / steps, steps)[first:]]


def plan_kontext(params: RemixRequest, prompt: str, traits: dm.ModelTraits,
                 max_side: int | None = None) -> dm.RemixPlan:
    """Map one validated request (with the used `prompt`) onto FLUX.1 Kontext."""
    style = dm.choose_style(params)
    steps = STEPS[base_speed(params.rendering_speed)]
    first = start_step(steps, style.strength)
    negative = None
    if params.negative_prompt:
        negative = dm.join_phrases([params.negative_prompt, style.template.negative])
    return dm.RemixPlan(
        prompt=dm.styled_prompt(prompt, style),
        negative_prompt=negative,
        strength=style.strength,
        steps=steps,
        denoise_steps=steps - first,
        guidance=round(max(1.0, GUIDANCE * style.guidance_factor), 2),
        generation_size=dm.generation_size(params.size, traits, max_side),
        style_type=style.style_type,
        styles=style.describe(),
        palette=style.palette,
    )
