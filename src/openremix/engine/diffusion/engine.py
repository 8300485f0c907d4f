"""`DiffusersEngine`: remix with a diffusers model of any supported family.

Its configuration comes only as arguments (the worker passes the `Settings` values). The model
loads once: `families.open_model` reads the folder's `model_index.json` and picks the family
(classic img2img, Ideogram 4, FLUX.1 Kontext), which brings its own parameter mapping and
generation. One `remix` call then reads top to bottom, for every family:

1. prepare: content filter, magic prompt, the family's plan; jobs with equal plans share a group;
2. generate: one family call per group, one seeded CPU generator per job; `on_step` runs after
   every denoising step (`JobCancelled` stops between steps); when `on_preview` asks for one,
   the step's latents are pictured by the family's linear projection (`latent_preview`);
3. finish: resize to exactly `params.size`, reference colours (when the model is not
   conditioned on them), palette; what the mapping could not honour goes to `warnings`.

Batches are byte-exact: with `exact_batches` (the default) every model sees each job's rows
alone, so a job's bytes are the same alone or in a batch. Turn it off for the throughput of
true batching, at the price of last-bit differences.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch
from PIL import Image

from openremix.contract.request import RemixRequest
from openremix.engine.base import (
    EngineError,
    EngineInput,
    EngineOutput,
    PreviewCallback,
    StepCallback,
)
from openremix.engine.diffusion import mapping as dm
from openremix.engine.diffusion.batching import BatchProgress
from openremix.engine.diffusion.families import Family, FamilyOptions, Job, open_model
from openremix.engine.diffusion.img2img import REFERENCE_WARNING
from openremix.engine.diffusion.loading import model_source, pick_device, pick_dtype
from openremix.engine.palette import rgb_to_hex, transfer_color_stats, transfer_palette
from openremix.engine.pixels import to_array, to_image
from openremix.engine.prompting.template import PromptEnhancer
from openremix.engine.safety import DEFAULT_BLOCKLIST, refused_prompt

__all__ = ["MISSING_MODEL", "REFERENCE_WARNING", "DiffusersEngine"]

MISSING_MODEL = (
    "OPENREMIX_MODEL is empty: the diffusers engine needs a model; set it to a local model "
    "folder, a name pulled with `openremix models pull`, or a hub id such as "
    "stabilityai/sdxl-turbo"
)


class DiffusersEngine:
    """Remix with a diffusers img2img pipeline; see the module docstring for the steps."""

    name = "diffusers"
    supports_batching = True
    supports_previews = True

    def __init__(
        self,
        model: str,
        device: str | None = None,
        dtype: str | None = None,
        ip_adapter: str | None = None,
        *,
        max_side: int | None = None,
        cpu_offload: bool = False,
        variant: str | None = None,
        exact_batches: bool = True,
        threads: int | None = None,
        blocklist: Iterable[str] = DEFAULT_BLOCKLIST,
        enhancer: PromptEnhancer | None = None,
        enhancer_max_tokens: int = 1024,
    ) -> None:
        """`model`: a local model folder or a hub id; empty is an EngineError. `device` (cuda,
        mps, cpu) and `dtype` (float16, bfloat16, float32): empty or "auto" picks the best.
        `ip_adapter`: a weight file or "<owner>/<repo>/<subfolder>/<file>"; empty: none.
        `max_side` caps the generation size (tests generate tiny models at 64 px); the output
        is always `params.size`. `cpu_offload` keeps components on the CPU and moves each to
        the GPU while it runs (cards too small for the model); `variant` picks a repository's
        weight variant. `threads` sets torch's CPU threads for the process (1 keeps tiny models
        fast on a busy machine). `enhancer_max_tokens` bounds a model's own prompt enhancer."""
        if not model.strip():
            raise EngineError(MISSING_MODEL)
        self.model = model
        self.device_name = device or None
        self.dtype_name = dtype or None
        self.ip_adapter = ip_adapter or None
        self.max_side = max_side or None
        self.cpu_offload = cpu_offload
        self.variant = variant or None
        self.exact_batches = exact_batches
        self.threads = threads
        self.blocklist = tuple(blocklist)
        self.options = FamilyOptions(ip_adapter=self.ip_adapter, enhancer=enhancer,
                                     enhancer_max_tokens=enhancer_max_tokens)
        self.family: Family | None = None
        self.pipe: Any = None
        self.traits: dm.ModelTraits | None = None
        self.device = torch.device("cpu")
        self.dtype = torch.float32

    # -- loading ------------------------------------------------------------------------------

    def load(self) -> None:
        """Load the model once, with the family its `model_index.json` names (a local folder
        never touches the hub)."""
        if self.family is not None:
            return
        if self.threads:
            torch.set_num_threads(self.threads)
        self.device = pick_device(self.device_name)
        self.dtype = pick_dtype(self.dtype_name, self.device)
        source = model_source(self.model, self.device, self.dtype, cpu_offload=self.cpu_offload,
                              variant=self.variant)
        family = open_model(source, self.options)
        self.pipe, self.traits, self.family = family.pipe, family.traits, family

    def batch_key(self, params: RemixRequest) -> tuple[Any, ...]:
        """(model, generation size, steps, strength, guidance, ...): what one call shares."""
        return self._key(params, self._plan(params, params.prompt))

    def _key(self, params: RemixRequest, plan: dm.RemixPlan) -> tuple[Any, ...]:
        assert self.family is not None
        return (self.model, *plan.sampling_key(), *self.family.batch_extra(params))

    def _plan(self, params: RemixRequest, prompt: str) -> dm.RemixPlan:
        self.load()
        assert self.family is not None
        try:
            return self.family.plan(params, prompt, self.max_side)
        except (KeyError, ValueError) as exc:
            raise EngineError(f"cannot map the request onto {self.model!r}: {exc}") from None

    # -- remix --------------------------------------------------------------------------------

    def prepare(self, inputs: Sequence[EngineInput]) -> tuple[
            dict[int, EngineOutput], dict[tuple[Any, ...], list[Job]]]:
        """Step 1: refused prompts' outputs by input index, and the planned jobs by key."""
        self.load()
        assert self.family is not None
        refused: dict[int, EngineOutput] = {}
        groups: dict[tuple[Any, ...], list[Job]] = {}
        for index, item in enumerate(inputs):
            params, seed = item.params, int(item.params.seed or 0)
            output = refused_prompt(params, self.blocklist)
            if output is not None:
                refused[index] = output
                continue
            prompt = self.family.used_prompt(params, seed, item.image)
            plan = self._plan(params, prompt)
            groups.setdefault(self._key(params, plan), []).append(
                Job(index, item, plan, prompt, seed))
        return refused, groups

    def remix(self, inputs: Sequence[EngineInput], on_step: StepCallback,
              on_preview: PreviewCallback | None = None) -> list[EngineOutput]:
        """Remix a batch: one family call per group of equal keys; outputs in input order."""
        refused, groups = self.prepare(inputs)
        assert self.family is not None
        outputs: dict[int, EngineOutput] = dict(refused)
        progress = BatchProgress(on_step, [g[0].plan.denoise_steps for g in groups.values()],
                                 on_preview)
        for group in groups.values():
            # Optional for a family: one without `previewer` simply shows no previews.
            previewer = getattr(self.family, "previewer", None)
            if on_preview is not None and previewer is not None:
                progress.watch([job.index for job in group], previewer(group))
            images = self.family.generate(group, progress, self.exact_batches)
            for job, (image, flagged) in zip(group, images, strict=True):
                outputs[job.index] = self._finish(job, image, flagged)
            progress.next_group()
        return [outputs[index] for index in sorted(outputs)]

    def _finish(self, job: Job, image: Image.Image, flagged: bool) -> EngineOutput:
        """Resize to the output size, then reference colours and palette; report details."""
        params, plan = job.item.params, job.plan
        assert self.traits is not None and self.family is not None
        details: dict[str, Any] = {
            "engine": self.name, "model": self.model, "family": self.traits.family.name,
            "pipeline": type(self.pipe).__name__,
            "steps": plan.steps, "denoise_steps": plan.denoise_steps,
            "strength": plan.strength, "guidance": plan.guidance,
            "generation_size": list(plan.generation_size), "styles": plan.styles,
            "style_type": plan.style_type, "style_codes": list(params.style_codes),
            "conditioning_prompt": plan.prompt, "negative_prompt": plan.negative_prompt,
            "device": self.device.type, "dtype": str(self.dtype).removeprefix("torch."),
        }
        if plan.guidance_schedule:
            details["guidance_schedule"] = list(plan.guidance_schedule)
        if flagged:
            return EngineOutput(image=None, prompt=job.prompt, seed=job.seed, is_image_safe=False,
                                error="the output was flagged by the model's safety checker",
                                details=details)
        image = image.convert("RGB")
        if image.size != params.size:
            image = image.resize(params.size, Image.Resampling.LANCZOS)
        warnings = list(plan.warnings)
        transfer_references = self.family.reference_warning is not None
        if job.item.style_images and transfer_references:
            references = [to_array(ref) for ref in job.item.style_images]
            image = to_image(transfer_color_stats(to_array(image), references,
                                                  dm.REFERENCE_TRANSFER))
            warnings.append(self.family.reference_warning or "")
        if plan.palette:
            image = to_image(transfer_palette(to_array(image), plan.palette, dm.PALETTE_TRANSFER))
            details["color_palette"] = [
                {"color_hex": rgb_to_hex(rgb), "color_weight": round(w, 3)}
                for rgb, w in plan.palette]
        if job.item.style_images:
            details["style_reference"] = self.family.reference_mode
        return EngineOutput(image=image, prompt=job.prompt, seed=job.seed, warnings=warnings,
                            details=details)
