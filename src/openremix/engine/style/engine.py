"""`StyleEngine`: the default, offline, CPU remix engine (fast neural style transfer).

One remix reads top to bottom in `_remix_one`:

1. prepare: content filter, magic prompt, centre-crop and resize the input to `params.size`;
2. style: the target style vector, from `style_codes`, else `style_reference_images`, else the
   prompt matched against the style library (by words, plus by meaning when the optional MiniLM
   matcher is installed; seeded); a `color_palette` swatch is blended in, and `image_weight`
   interpolates it with the input's own style vector;
3. transfer: the arbitrary-style network at the speed's processing scale (QUALITY adds a
   full-resolution pass for fine texture);
4. palette: colours moved toward `color_palette` in Lab space;
5. finishing: luminance detail from the input (DEFAULT, QUALITY; REALISTIC swaps the style's
   fine texture for the photo's own) and, for high image weights, a blend back to the input.

`on_step(step, total)` is called after each stage; `JobCancelled` from it propagates. It makes
no live previews (`supports_previews`): a whole remix takes about a second, and its only
intermediate picture (after the transfer) is the result less its palette and finishing, which
arrives moments later; encoding and storing it would cost about as much as a stage.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from openremix.contract.params import base_speed
from openremix.contract.request import RemixRequest
from openremix.engine import palette as pal
from openremix.engine.base import EngineError, EngineInput, EngineOutput, StepCallback
from openremix.engine.pixels import to_array, to_image
from openremix.engine.prompting.llm import LlamaPromptEnhancer, default_enhancer
from openremix.engine.prompting.template import PromptEnhancer, apply_magic_prompt
from openremix.engine.safety import DEFAULT_BLOCKLIST, refused_prompt
from openremix.engine.style import semantic as semantic_matching
from openremix.engine.style.library import StyleBlend, StyleLibrary, load_library
from openremix.engine.style.matching import match_styles, pick_blend
from openremix.engine.style.networks import StyleNetworks
from openremix.media.images import center_crop_resize

log = logging.getLogger(__name__)

STAGES = 5
PALETTE_STYLE_WEIGHT = 0.3
PALETTE_TRANSFER = 0.7
REALISTIC_TEXTURE_SWAP = 0.8


@dataclass(frozen=True)
class SpeedPlan:
    """How a `rendering_speed` is processed."""

    name: str
    pixels: int | None
    """Stylize at about this many pixels (None: at the output's full size)."""
    detail: float
    """How much of the input's fine luminance detail is put back (0: none)."""
    full_res_pass: bool = False
    """Also stylize at full size and take the fine texture from that pass."""

    def passes(self) -> int:
        """Network passes per image."""
        return 2 if self.full_res_pass else 1


SPEEDS: dict[str, SpeedPlan] = {
    "TURBO": SpeedPlan("TURBO", 512 * 512, 0.0),
    "DEFAULT": SpeedPlan("DEFAULT", 768 * 768, 0.35),
    "QUALITY": SpeedPlan("QUALITY", 768 * 768, 0.45, full_res_pass=True),
}


@dataclass
class StylePlan:
    """The style one remix applies, and how to report it."""

    vector: np.ndarray
    styles: list[dict[str, Any]]
    codes: list[str]
    source: str
    palette: pal.PaletteColors = field(default_factory=list)


def _resize(array: np.ndarray, size: tuple[int, int], method: Image.Resampling) -> np.ndarray:
    """Resize a float HxWxC array per channel (mode F keeps the precision)."""
    chans = [Image.fromarray(np.ascontiguousarray(array[..., c]), mode="F").resize(size, method)
             for c in range(array.shape[-1])]
    return np.stack([np.asarray(c) for c in chans], axis=-1)


def lowpass(array: np.ndarray, factor: int = 4) -> np.ndarray:
    """A cheap blur: shrink by `factor` (box) and grow back (bicubic)."""
    h, w = array.shape[:2]
    small = _resize(array, (max(1, w // factor), max(1, h // factor)), Image.Resampling.BOX)
    return _resize(small, (w, h), Image.Resampling.BICUBIC)


def _luma(array: np.ndarray) -> np.ndarray:
    return (array @ np.array([0.299, 0.587, 0.114], np.float32))[..., None]


def image_weight_mix(image_weight: int) -> tuple[float, float]:
    """(own-style share of the vector, final blend toward the input) for image_weight 1..100."""
    f = (min(max(image_weight, 1), 100) - 1) / 99.0
    own = 0.8 * f**1.4
    blend = 0.88 * max(0.0, (f - 0.5) / 0.5) ** 2
    return own, blend


class StyleEngine:
    """Remix by neural style transfer: prompt-matched library styles, codes, references."""

    name = "style"

    def __init__(
        self,
        threads: int | None = None,
        blocklist: Iterable[str] = DEFAULT_BLOCKLIST,
        enhancer: PromptEnhancer | None = None,
        semantic: bool | None = None,
    ) -> None:
        """`enhancer` None: SmolLM2 when installed, else the template. `semantic` None: match
        prompts by meaning too when MiniLM is installed; False: by words only."""
        self.threads = threads
        self.blocklist = tuple(blocklist)
        self.enhancer = enhancer if enhancer is not None else default_enhancer()
        self.nets: StyleNetworks | None = None
        self.library: StyleLibrary = load_library()
        if semantic is None:
            semantic = semantic_matching.available()
        self.semantic = semantic_matching.SemanticStyleMatcher(self.library) if semantic else None

    def load(self) -> None:
        """Open the ONNX sessions (about half a second), then warm the optional models."""
        if self.nets is None:
            self.nets = StyleNetworks(threads=self.threads)
        # optional extras: a broken install falls back (words; the template), never stops us
        if isinstance(self.enhancer, LlamaPromptEnhancer):
            try:
                self.enhancer.load()
            except Exception as exc:
                log.warning("magic prompt model unavailable (%s); using the template", exc)
        if self.semantic is not None:
            try:
                self.semantic.load()
            except Exception as exc:
                log.warning("semantic style matching unavailable (%s); matching by words", exc)
                self.semantic = None

    def batch_key(self, params: RemixRequest) -> tuple[Any, ...]:
        """Jobs of the same size and speed may share a `remix` call."""
        return (params.size, SPEEDS[base_speed(params.rendering_speed)].name)

    def remix(self, inputs: Sequence[EngineInput], on_step: StepCallback) -> list[EngineOutput]:
        """Remix each input in turn; the result of one never depends on the others."""
        self.load()
        total = STAGES * len(inputs)
        outputs = []
        for n, item in enumerate(inputs):
            def tick(stage: int, n: int = n) -> None:
                on_step(n * STAGES + stage, total)

            outputs.append(self._remix_one(item, tick))
        return outputs

    # -- one remix, in order --------------------------------------------------------------------

    def _remix_one(self, item: EngineInput, tick: Any) -> EngineOutput:
        params = item.params
        seed = int(params.seed or 0)
        refused = refused_prompt(params, self.blocklist)
        if refused is not None:
            return refused
        prompt = apply_magic_prompt(params.prompt, params.magic_prompt, params.style_type, seed,
                                    self.enhancer)
        speed = SPEEDS[base_speed(params.rendering_speed)]
        size = params.size
        content = to_array(center_crop_resize(item.image, size))
        tick(1)

        rng = np.random.default_rng([seed, 0x5EED])
        plan = self._style_plan(params, prompt, item.style_images, rng)
        own_share, blend = image_weight_mix(params.image_weight)
        own = self._nets().predict(content)
        vector = (1.0 - own_share) * plan.vector + own_share * own
        tick(2)

        stylized, proc_size = self._stylize(content, vector, speed)
        tick(3)

        if plan.palette:
            amount = PALETTE_TRANSFER * (1.0 - 0.5 * blend)
            stylized = pal.transfer_palette(stylized, plan.palette, amount)
        tick(4)

        detail = _luma(content) - _luma(lowpass(content, 4))
        if params.style_type == "REALISTIC":
            # a photographic grade: the style's tone and colour, the photo's own fine texture
            texture = _luma(stylized) - _luma(lowpass(stylized, 4))
            stylized = stylized - REALISTIC_TEXTURE_SWAP * (texture - detail)
        elif speed.detail:
            stylized = stylized + speed.detail * (1.0 - blend) * detail
        out = (1.0 - blend) * stylized + blend * content
        image = to_image(out)
        tick(5)

        details = {
            "engine": self.name,
            "styles": plan.styles,
            "style_codes": plan.codes,
            "style_source": plan.source,
            "style_type": params.style_type,
            "image_weight": params.image_weight,
            "rendering_speed": speed.name,
            "processing_size": list(proc_size),
            "passes": speed.passes(),
            "steps": STAGES,
        }
        if plan.palette:
            details["color_palette"] = pal.blend_colors(plan.palette)
        return EngineOutput(image=image, prompt=prompt, seed=seed, details=details)

    def _nets(self) -> StyleNetworks:
        if self.nets is None:
            raise EngineError("the style engine was not loaded")
        return self.nets

    def _style_plan(self, params: RemixRequest, prompt: str, style_images: list[Image.Image],
                    rng: np.random.Generator) -> StylePlan:
        """Target style: codes win, then reference images, then the prompt (seeded pick)."""
        lib = self.library
        if params.style_codes:
            blends = []
            for code in params.style_codes:
                try:
                    blends.append(StyleBlend.from_code(code, len(lib)))
                except ValueError:
                    raise EngineError(f"not a style code: {code!r}") from None
            vector = np.mean([b.vector(lib) for b in blends], axis=0)
            styles = [s for b in blends for s in b.describe(lib)]
            plan = StylePlan(vector, styles, [c.upper() for c in params.style_codes], "style_codes")
        elif style_images:
            weights = np.array([1.0 / (k + 1) for k in range(len(style_images))])
            weights /= weights.sum()
            vecs = [self._nets().predict(img) for img in style_images]
            vector = np.sum([w * v for w, v in zip(weights, vecs, strict=True)], axis=0)
            styles = [{"name": f"reference-{k + 1}", "weight": round(float(w), 3)}
                      for k, w in enumerate(weights)]
            plan = StylePlan(vector.astype(np.float32), styles, [], "style_reference_images")
        else:
            eligible = lib.eligible(params.style_type)
            scores = match_styles(prompt, params.negative_prompt, lib, eligible, params.prompt)
            if self.semantic is not None:
                scores = self.semantic.refine(scores, prompt, params.negative_prompt, eligible,
                                              params.prompt)
            blend = pick_blend(scores, rng)
            plan = StylePlan(blend.vector(lib), blend.describe(lib), [blend.to_code()], "prompt")
        if params.color_palette is not None:
            try:
                plan.palette = pal.palette_colors(params.color_palette)
            except (KeyError, ValueError) as exc:
                raise EngineError(f"unusable color_palette: {exc}") from None
            if plan.palette:
                swatch = self._nets().predict(pal.palette_swatch(plan.palette))
                share = PALETTE_STYLE_WEIGHT
                plan.vector = (1 - share) * plan.vector + share * swatch
        return plan

    def _stylize(self, content: np.ndarray, vector: np.ndarray,
                 speed: SpeedPlan) -> tuple[np.ndarray, tuple[int, int]]:
        """Run the transform network at the speed's scale; returns (image, processing size)."""
        nets = self._nets()
        h, w = content.shape[:2]
        scale = 1.0 if speed.pixels is None else min(1.0, (speed.pixels / (w * h)) ** 0.5)
        pw, ph = max(32, round(w * scale / 4) * 4), max(32, round(h * scale / 4) * 4)
        if (pw, ph) == (w, h):
            return np.clip(nets.transform(content, vector), 0, 1), (w, h)
        small = _resize(content, (pw, ph), Image.Resampling.BOX)
        base = _resize(nets.transform(small, vector), (w, h), Image.Resampling.BICUBIC)
        if speed.full_res_pass:
            fine = nets.transform(content, vector)
            base = lowpass(base, 2) + (fine - lowpass(fine, 2))
        return np.clip(base, 0, 1), (pw, ph)
