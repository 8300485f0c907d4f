"""How the Ideogram-3-Remix parameters become diffusers img2img arguments (pure, no torch).

`plan_remix(params, prompt, traits)` returns a `RemixPlan`: everything one pipeline call and the
post-processing of one image need. `DiffusersEngine` runs it; tests check it without torch.

| parameter | diffusers img2img | rule |
|---|---|---|
| `image_weight` 1..100 | `strength` | linear, decreasing: 1 -> 0.96 (input nearly ignored), 50 -> 0.52, 100 -> 0.08 (input nearly intact); a style code shifts it by at most ±0.08, clamped to 0.05..1.0 |
| `rendering_speed` (base models) | `num_inference_steps`, `guidance_scale` | TURBO/FLASH 12, DEFAULT/BALANCED 30, QUALITY 50 scheduled steps; img2img runs `int(steps * strength)` of them; guidance 7.0 (FLUX 3.5) |
| `rendering_speed` (turbo/LCM models) | same | TURBO 2, DEFAULT 4, QUALITY 8 *denoising* steps at any strength (the schedule is lengthened so that `int(steps * strength)` equals them); guidance 0.0 (turbo, lightning) or 1.0 (LCM): no CFG |
| any speed | — | the schedule is lengthened until `int(steps * strength) >= 1`: at least one denoising step runs |
| `resolution` / `aspect_ratio` | input size (`height`, `width` where the pipeline takes them) | generation size = output size scaled to the model's native pixel count (never up; optionally capped by `max_side`), rounded to `vae_scale_factor * 2`; the input is centre-cropped to the output's aspect and resized to it; the result is resized (Lanczos) to exactly `params.size` |
| `seed` | `generator` | one CPU `torch.Generator(seed)` per job, passed as a list: same seed, same bytes alone or in a batch |
| `negative_prompt` | `negative_prompt` | user text, then the style type's negative; a list in a batch; no effect where guidance <= 1 |
| `style_type` | prompt, negative, guidance | GENERAL: prompt as is; REALISTIC: photographic suffix, guidance x0.85; DESIGN: flat graphic suffix, x1.15; FICTION / STYLIZED: illustrative suffix, x1.05; AUTO: picked from the prompt's words (`photo` -> REALISTIC, `logo` -> DESIGN, ...) |
| `style_codes` | prompt, strength, guidance, palette | four hex digits of each code pick a style fragment (16), a palette preset or none (9), a strength shift (16 steps in ±0.08) and a guidance factor (0.90..1.20); several codes: fragments joined, shifts and factors averaged, palettes merged; a `color_palette` replaces the codes' palettes |
| `style_reference_images` | `ip_adapter_image_embeds` | with an IP-Adapter configured: the references' averaged image embedding; without: the references' Lab mean/std is moved onto the output (`palette.transfer_color_stats`, amount 0.7; warning in the result) |
| `color_palette` | prompt + post-processing | "color palette of <named colours>" appended to the prompt, then `palette.transfer_palette` in Lab (amount 0.6, weighted by `color_weight`) |
| `magic_prompt` | prompt | `prompting.template.apply_magic_prompt`; the used prompt is returned |
| content filter | — | `safety.blocked_term` -> no image; the pipeline's safety checker where it has one |
"""  # noqa: E501 (a Markdown table for the README)

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from openremix.contract.palettes import PALETTE_PRESETS, ColorPalette, palette_colors
from openremix.contract.params import base_speed
from openremix.contract.request import RemixRequest
from openremix.engine.palette import RGB, PaletteColors

STRENGTH_AT_WEIGHT_1 = 0.96
STRENGTH_AT_WEIGHT_100 = 0.08
STRENGTH_RANGE = (0.05, 1.0)
PALETTE_TRANSFER = 0.6
REFERENCE_TRANSFER = 0.7

BASE_STEPS = {"TURBO": 12, "DEFAULT": 30, "QUALITY": 50}
DISTILLED_STEPS = {"TURBO": 2, "DEFAULT": 4, "QUALITY": 8}
BASE_GUIDANCE = {"flux": 3.5}
DEFAULT_GUIDANCE = 7.0
DISTILLED_GUIDANCE = {"turbo": 0.0, "lcm": 1.0}


@dataclass(frozen=True)
class ModelFamily:
    """The model's architecture (`base`) and its few-step distillation, if any."""

    base: str
    """`sd` (1.x/2.x), `sdxl`, `sd3`, `flux`, `kandinsky`, `qwenimage` or `other`."""
    distilled: str | None = None
    """`turbo` (adversarial: SD/SDXL-Turbo, Lightning, Hyper, FLUX schnell), `lcm`, or None."""

    @property
    def name(self) -> str:
        """`sdxl`, `sdxl-turbo`, `sd-lcm`, ..."""
        return f"{self.base}-{self.distilled}" if self.distilled else self.base


_BASE_BY_CLASS = (
    ("StableDiffusionXL", "sdxl"), ("StableDiffusion3", "sd3"), ("Flux", "flux"),
    ("LatentConsistencyModel", "sd"), ("StableDiffusion", "sd"), ("Kandinsky", "kandinsky"),
    ("QwenImage", "qwenimage"),
)
_TURBO_HINTS = ("turbo", "lightning", "hyper", "schnell")


def detect_family(pipeline_class: str, scheduler_class: str = "", model: str = "",
                  time_cond_proj_dim: int | None = None) -> ModelFamily:
    """The family from the loaded pipeline's class, scheduler, model name and UNet config."""
    base = next((b for prefix, b in _BASE_BY_CLASS if pipeline_class.startswith(prefix)), "other")
    name = model.lower()
    distilled = None
    if (scheduler_class in ("LCMScheduler", "TCDScheduler") or time_cond_proj_dim
            or pipeline_class.startswith("LatentConsistencyModel") or "lcm" in name):
        distilled = "lcm"
    elif any(hint in name for hint in _TURBO_HINTS):
        distilled = "turbo"
    return ModelFamily(base, distilled)


@dataclass(frozen=True)
class ModelTraits:
    """What the mapping needs to know about the loaded model."""

    family: ModelFamily
    multiple: int = 16
    """Generation sides are multiples of this (`vae_scale_factor * 2`)."""
    native_side: int = 1024
    """Side of the square the model was trained at (`sample_size * vae_scale_factor`)."""


def strength_for(image_weight: int) -> float:
    """Denoising strength for `image_weight` 1..100: decreasing, 0.96 at 1, 0.08 at 100."""
    f = (min(max(image_weight, 1), 100) - 1) / 99.0
    return STRENGTH_AT_WEIGHT_1 + f * (STRENGTH_AT_WEIGHT_100 - STRENGTH_AT_WEIGHT_1)


def denoising_steps(steps: int, strength: float) -> int:
    """How many steps diffusers' img2img runs for a schedule of `steps` (its own formula)."""
    return min(int(steps * strength), steps)


def schedule_steps(speed: str, family: ModelFamily, strength: float) -> int:
    """`num_inference_steps` for a rendering speed; at least one denoising step always runs."""
    speed = base_speed(speed)
    if family.distilled:
        target, steps = DISTILLED_STEPS[speed], DISTILLED_STEPS[speed]
    else:
        target, steps = 1, BASE_STEPS[speed]
    while denoising_steps(steps, strength) < target:
        steps += 1
    return steps


def base_guidance(family: ModelFamily) -> float:
    """The family's guidance scale before style factors."""
    if family.distilled:
        return DISTILLED_GUIDANCE[family.distilled]
    return BASE_GUIDANCE.get(family.base, DEFAULT_GUIDANCE)


def generation_size(size: tuple[int, int], traits: ModelTraits,
                    max_side: int | None = None) -> tuple[int, int]:
    """The size to generate at: `size` scaled to the native pixel count (never up), rounded."""
    w, h = size
    scale = min(1.0, traits.native_side / math.sqrt(w * h))
    if max_side:
        scale = min(scale, max_side / max(w, h))
    m = traits.multiple
    return max(m, round(w * scale / m) * m), max(m, round(h * scale / m) * m)


# --- style types ------------------------------------------------------------------------------

@dataclass(frozen=True)
class StyleTemplate:
    """How a `style_type` conditions the pipeline."""

    suffix: str
    negative: str
    guidance_factor: float


STYLE_TEMPLATES: dict[str, StyleTemplate] = {
    "GENERAL": StyleTemplate("", "", 1.0),
    "REALISTIC": StyleTemplate("photographic, realistic, natural light, high detail",
                               "illustration, painting, cartoon, drawing", 0.85),
    "DESIGN": StyleTemplate("graphic design, flat colors, clean vector shapes, poster",
                            "photo, blurry, noisy, cluttered", 1.15),
    "FICTION": StyleTemplate("fantasy illustration, imaginative, storybook art",
                             "photo, dull, plain", 1.05),
    "STYLIZED": StyleTemplate("stylized illustration, bold shapes, expressive color",
                              "photo, realistic, plain", 1.05),
}
AUTO_KEYWORDS: dict[str, tuple[str, ...]] = {
    "REALISTIC": ("photo", "photograph", "photorealistic", "realistic", "portrait", "cinematic",
                  "camera", "dslr", "35mm", "film"),
    "DESIGN": ("logo", "poster", "icon", "flat", "vector", "typography", "minimal", "graphic",
               "infographic", "sticker", "badge"),
    "FICTION": ("fantasy", "dragon", "wizard", "castle", "fairy", "myth", "alien", "sci-fi",
                "storybook", "magic"),
    "STYLIZED": ("anime", "cartoon", "comic", "painting", "watercolor", "sketch", "pixel",
                 "illustration", "oil", "pop"),
}


def resolve_style_type(style_type: str, prompt: str) -> str:
    """AUTO -> the type whose keywords the prompt uses most (ties: table order), else GENERAL."""
    if style_type != "AUTO":
        return style_type
    words = set(re.findall(r"[a-z0-9-]+", prompt.lower()))
    hits = {kind: len(words & set(keys)) for kind, keys in AUTO_KEYWORDS.items()}
    best = max(hits, key=lambda kind: hits[kind])
    return best if hits[best] else "GENERAL"


# --- style codes ------------------------------------------------------------------------------

CODE_FRAGMENTS: tuple[str, ...] = (
    "watercolor painting", "oil painting, thick brushstrokes", "flat vector illustration",
    "pencil sketch", "cinematic photograph", "pop art, halftone dots", "ukiyo-e woodblock print",
    "art nouveau poster", "neon cyberpunk", "pastel dreamy illustration", "charcoal drawing",
    "low poly 3d render", "stained glass", "impressionist painting", "retro 1970s print",
    "claymation",
)
CODE_PALETTES: tuple[str | None, ...] = (None, *PALETTE_PRESETS)
CODE_STRENGTH_SHIFT = 0.08


@dataclass(frozen=True)
class CodeStyle:
    """The style one 8-hex-digit code names."""

    code: str
    fragment: str
    palette: str | None
    strength_shift: float
    guidance_factor: float

    def describe(self) -> dict[str, Any]:
        """The style as reported in the result's details."""
        return {"code": self.code, "name": self.fragment, "palette": self.palette,
                "strength_shift": round(self.strength_shift, 3),
                "guidance_factor": round(self.guidance_factor, 3)}


def code_style(code: str) -> CodeStyle:
    """Decode a style code: bits 0-3 fragment, 4-7 palette, 8-11 strength, 12-15 guidance."""
    if not re.fullmatch(r"[0-9a-fA-F]{8}", code):
        raise ValueError(f"not a style code: {code!r} (8 hex digits)")
    bits = int(code, 16)
    fragment = CODE_FRAGMENTS[bits & 0xF]
    palette = CODE_PALETTES[((bits >> 4) & 0xF) % len(CODE_PALETTES)]
    shift = (((bits >> 8) & 0xF) / 15.0 * 2.0 - 1.0) * CODE_STRENGTH_SHIFT
    guidance = 0.9 + ((bits >> 12) & 0xF) / 15.0 * 0.3
    return CodeStyle(code.upper(), fragment, palette, shift, guidance)


# --- colours ----------------------------------------------------------------------------------

COLOR_NAMES: dict[str, RGB] = {
    "black": (20, 20, 20), "white": (245, 245, 245), "gray": (128, 128, 128),
    "red": (200, 30, 30), "dark red": (120, 20, 15), "orange": (235, 120, 20),
    "yellow": (240, 210, 40), "cream": (245, 235, 200), "brown": (110, 70, 35),
    "olive": (120, 130, 50), "green": (40, 150, 60), "dark green": (20, 70, 35),
    "mint": (150, 230, 190), "teal": (40, 160, 150), "sky blue": (130, 190, 230),
    "blue": (30, 70, 200), "navy": (15, 25, 90), "purple": (110, 40, 170),
    "lavender": (210, 190, 230), "magenta": (210, 50, 170), "pink": (250, 170, 190),
}


def color_name(rgb: RGB) -> str:
    """The nearest name in `COLOR_NAMES` (RGB distance, luminance weighted)."""
    def dist(ref: RGB) -> float:
        return sum(wt * (a - b) ** 2 for wt, a, b in zip((0.3, 0.59, 0.11), rgb, ref, strict=True))

    return min(COLOR_NAMES, key=lambda name: dist(COLOR_NAMES[name]))


def palette_phrase(colors: PaletteColors, most: int = 4) -> str:
    """"color palette of red, orange and cream": the heaviest distinct colour names."""
    names: list[str] = []
    for rgb, _ in sorted(colors, key=lambda c: -c[1]):
        name = color_name(rgb)
        if name not in names:
            names.append(name)
    names = names[:most]
    listed = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
    return f"color palette of {listed}"


# --- the plan ---------------------------------------------------------------------------------

@dataclass
class RemixPlan:
    """One job's pipeline arguments and post-processing, and what to report about them."""

    prompt: str
    """The conditioning prompt (used prompt + style and palette phrases)."""
    negative_prompt: str | None
    strength: float
    steps: int
    """`num_inference_steps` (the schedule)."""
    denoise_steps: int
    """Steps img2img actually runs: `int(steps * strength)`."""
    guidance: float
    generation_size: tuple[int, int]
    style_type: str
    styles: list[dict[str, Any]] = field(default_factory=list)
    palette: PaletteColors = field(default_factory=list)
    guidance_schedule: tuple[float, ...] = ()
    """Per-step guidance over the full schedule (Ideogram 4); empty: `guidance` at every step."""
    text_tokens: int = 0
    """Length the prompt is padded to (Ideogram 4, which packs text and image tokens); 0: n/a."""
    warnings: list[str] = field(default_factory=list)
    """What the mapping could not honour, returned in the result's `warnings`."""

    def sampling_key(self) -> tuple[Any, ...]:
        """What jobs of one pipeline call must share."""
        return (self.generation_size, self.steps, self.strength, self.guidance,
                self.guidance_schedule, self.text_tokens)


def join_phrases(parts: Sequence[str | None]) -> str:
    return ", ".join(p.strip().rstrip(",") for p in parts if p and p.strip())


@dataclass(frozen=True)
class StyleChoice:
    """What a request's style parameters amount to, before any family's own mapping."""

    style_type: str
    """`style_type`, with AUTO resolved from the prompt."""
    template: StyleTemplate
    codes: list[CodeStyle]
    strength: float
    """`strength_for(image_weight)` shifted by the codes, clamped to `STRENGTH_RANGE`."""
    guidance_factor: float
    """The style type's factor times the codes' mean factor."""
    palette: PaletteColors
    """The user's `color_palette`, else the codes' palettes merged."""

    def describe(self) -> list[dict[str, Any]]:
        """The styles as reported in the result's details."""
        styles = [c.describe() for c in self.codes]
        if not self.codes and self.style_type != "GENERAL":
            styles = [{"name": self.style_type.lower(), "source": "style_type"}]
        return styles


def choose_style(params: RemixRequest) -> StyleChoice:
    """Resolve `style_type`, `style_codes`, `color_palette` and `image_weight` (all families)."""
    style_type = resolve_style_type(params.style_type, params.prompt)
    template = STYLE_TEMPLATES.get(style_type, STYLE_TEMPLATES["GENERAL"])
    codes = [code_style(c) for c in params.style_codes]
    strength = strength_for(params.image_weight)
    factor = template.guidance_factor
    palette: PaletteColors = []
    if codes:
        strength += sum(c.strength_shift for c in codes) / len(codes)
        factor *= sum(c.guidance_factor for c in codes) / len(codes)
        for c in codes:
            if c.palette:
                preset = palette_colors(ColorPalette(name=c.palette))
                palette += [(rgb, w / len(codes)) for rgb, w in preset]
    strength = round(min(max(strength, STRENGTH_RANGE[0]), STRENGTH_RANGE[1]), 3)
    if params.color_palette is not None:
        palette = palette_colors(params.color_palette)  # the user's palette wins over codes'
    return StyleChoice(style_type, template, codes, strength, factor, palette)


def styled_prompt(prompt: str, style: StyleChoice) -> str:
    """`prompt` with the style type's suffix, the codes' fragments and the palette's phrase."""
    palette = palette_phrase(style.palette) if style.palette else None
    return join_phrases([prompt, style.template.suffix, *(c.fragment for c in style.codes),
                         palette])


def plan_remix(params: RemixRequest, prompt: str, traits: ModelTraits,
               max_side: int | None = None) -> RemixPlan:
    """Map one validated request (with the used `prompt`) onto the loaded model."""
    family = traits.family
    style = choose_style(params)
    guidance = base_guidance(family)
    if guidance > 1.0:  # CFG is on: style factors apply
        guidance = round(max(1.5, guidance * style.guidance_factor), 2)
    steps = schedule_steps(params.rendering_speed, family, style.strength)
    return RemixPlan(
        prompt=styled_prompt(prompt, style),
        negative_prompt=join_phrases([params.negative_prompt, style.template.negative]) or None,
        strength=style.strength,
        steps=steps,
        denoise_steps=denoising_steps(steps, style.strength),
        guidance=guidance,
        generation_size=generation_size(params.size, traits, max_side),
        style_type=style.style_type,
        styles=style.describe(),
        palette=style.palette,
    )
