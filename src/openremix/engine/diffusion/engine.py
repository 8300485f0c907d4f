"""`DiffusersEngine`: remix with any diffusers image-to-image model (SD 1.x/2.x, SDXL, Turbo, ...).

Its configuration comes only as arguments (the worker passes the `Settings` values); the model
loads once (`loading`), and `mapping` turns each request into pipeline arguments (the README's
table). One `remix` call then reads top to bottom:

1. prepare: content filter, magic prompt, the plan; jobs with equal plans share a group;
2. generate: one pipeline call per group, with lists of prompts, negatives, images and one
   seeded CPU generator per job; `on_step` runs after every denoising step;
3. finish: resize to exactly `params.size`, reference colours (when no IP-Adapter), palette.

Batches are byte-exact: with `exact_batches` (the default) the text encoders, the denoiser and
the VAE decoder see each job's rows alone (`batching.rows_per_job`); the rest of the call is
shared. Turn it off for the throughput of true batching, at the price of last-bit differences.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image

from openremix.contract.request import RemixRequest
from openremix.engine.base import EngineError, EngineInput, EngineOutput, StepCallback
from openremix.engine.diffusion import mapping as dm
from openremix.engine.diffusion.batching import BatchProgress, rows_per_job
from openremix.engine.diffusion.ip_adapter import condition_on_references, load_ip_adapter
from openremix.engine.diffusion.loading import (
    load_pipeline,
    model_traits,
    pick_device,
    pick_dtype,
)
from openremix.engine.palette import rgb_to_hex, transfer_color_stats, transfer_palette
from openremix.engine.pixels import to_array, to_image
from openremix.engine.prompting.template import PromptEnhancer, apply_magic_prompt
from openremix.engine.safety import DEFAULT_BLOCKLIST, refused_prompt
from openremix.media.images import center_crop_resize

MISSING_MODEL = (
    "OPENREMIX_MODEL is empty: the diffusers engine needs a model; set it to a local model "
    "folder, a name pulled with `openremix models pull`, or a hub id such as "
    "stabilityai/sdxl-turbo"
)
REFERENCE_WARNING = (
    "style_reference_images: no IP-Adapter is configured (OPENREMIX_IP_ADAPTER), so only the "
    "references' colours were transferred onto the output"
)


@dataclass
class _Job:
    index: int
    item: EngineInput
    plan: dm.RemixPlan
    prompt: str
    seed: int


class DiffusersEngine:
    """Remix with a diffusers img2img pipeline; see the module docstring for the steps."""

    name = "diffusers"
    supports_batching = True

    def __init__(
        self,
        model: str,
        device: str | None = None,
        dtype: str | None = None,
        ip_adapter: str | None = None,
        *,
        max_side: int | None = None,
        exact_batches: bool = True,
        threads: int | None = None,
        blocklist: Iterable[str] = DEFAULT_BLOCKLIST,
        enhancer: PromptEnhancer | None = None,
    ) -> None:
        """`model`: a local model folder or a hub id; empty is an EngineError. `device` (cuda,
        mps, cpu) and `dtype` (float16, bfloat16, float32): empty or "auto" picks the best.
        `ip_adapter`: a weight file or "<owner>/<repo>/<subfolder>/<file>"; empty: none.
        `max_side` caps the generation size (tests generate tiny models at 64 px); the output
        is always `params.size`. `threads` sets torch's CPU threads for the process (1 keeps
        tiny models fast on a busy machine)."""
        if not model.strip():
            raise EngineError(MISSING_MODEL)
        self.model = model
        self.device_name = device or None
        self.dtype_name = dtype or None
        self.ip_adapter = ip_adapter or None
        self.max_side = max_side
        self.exact_batches = exact_batches
        self.threads = threads
        self.blocklist = tuple(blocklist)
        self.enhancer = enhancer
        self.pipe: Any = None
        self.traits: dm.ModelTraits | None = None
        self.device = torch.device("cpu")
        self.dtype = torch.float32
        self._call_args: frozenset[str] = frozenset()

    # -- loading ------------------------------------------------------------------------------

    def load(self) -> None:
        """Load the pipeline once (a local folder never touches the hub)."""
        if self.pipe is not None:
            return
        if self.threads:
            torch.set_num_threads(self.threads)
        self.device = pick_device(self.device_name)
        self.dtype = pick_dtype(self.dtype_name, self.device)
        pipe = load_pipeline(self.model, self.device, self.dtype)
        if self.ip_adapter:
            load_ip_adapter(pipe, self.ip_adapter)
        self._call_args = frozenset(inspect.signature(pipe.__call__).parameters)
        self.traits = model_traits(pipe, self.model)
        self.pipe = pipe

    def batch_key(self, params: RemixRequest) -> tuple[Any, ...]:
        """(model, generation size, steps, strength, guidance); plus the references'
        addresses when an IP-Adapter is loaded (one image embedding per call)."""
        return self._key(params, self._plan(params, params.prompt))

    def _key(self, params: RemixRequest, plan: dm.RemixPlan) -> tuple[Any, ...]:
        key = (self.model, *plan.sampling_key())
        return (*key, tuple(params.style_reference_images)) if self.ip_adapter else key

    def _plan(self, params: RemixRequest, prompt: str) -> dm.RemixPlan:
        self.load()
        assert self.traits is not None
        try:
            return dm.plan_remix(params, prompt, self.traits, self.max_side)
        except (KeyError, ValueError) as exc:
            raise EngineError(f"cannot map the request onto {self.model!r}: {exc}") from None

    # -- remix --------------------------------------------------------------------------------

    def remix(self, inputs: Sequence[EngineInput], on_step: StepCallback) -> list[EngineOutput]:
        """Remix a batch: one pipeline call per group of equal keys; outputs in input order."""
        self.load()
        outputs: list[EngineOutput | None] = [None] * len(inputs)
        groups: dict[tuple[Any, ...], list[_Job]] = {}
        for index, item in enumerate(inputs):
            params, seed = item.params, int(item.params.seed or 0)
            refused = refused_prompt(params, self.blocklist)
            if refused is not None:
                outputs[index] = refused
                continue
            prompt = apply_magic_prompt(params.prompt, params.magic_prompt, params.style_type,
                                        seed, self.enhancer)
            plan = self._plan(params, prompt)
            groups.setdefault(self._key(params, plan), []).append(
                _Job(index, item, plan, prompt, seed))
        progress = BatchProgress(on_step, [g[0].plan.denoise_steps for g in groups.values()])
        for group in groups.values():
            for job, output in zip(group, self._generate(group, progress), strict=True):
                outputs[job.index] = output
            progress.next_group()
        return [out for out in outputs if out is not None]

    def _generate(self, group: list[_Job], progress: BatchProgress) -> list[EngineOutput]:
        """One pipeline call for jobs that share a key, then each image's finishing."""
        pipe, plan = self.pipe, group[0].plan
        width, height = plan.generation_size
        args: dict[str, Any] = {
            "prompt": [job.plan.prompt for job in group],
            "image": [center_crop_resize(job.item.image, (width, height)) for job in group],
            "strength": plan.strength,
            "num_inference_steps": plan.steps,
            "guidance_scale": plan.guidance,
            "generator": [torch.Generator("cpu").manual_seed(job.seed) for job in group],
            "output_type": "pil",
        }
        if "negative_prompt" in self._call_args:
            args["negative_prompt"] = [job.plan.negative_prompt or "" for job in group]
        if "height" in self._call_args:
            args["height"], args["width"] = height, width
        if "callback_on_step_end" in self._call_args:
            args["callback_on_step_end"] = progress.callback
        if self.ip_adapter:  # the group shares its references (they are part of the key)
            args["ip_adapter_image_embeds"] = condition_on_references(
                pipe, group[0].item.style_images, plan.guidance > 1.0)
        rows = len(group) if self.exact_batches else 1
        with torch.inference_mode(), rows_per_job(pipe, rows):
            result = pipe(**args)
        flagged = getattr(result, "nsfw_content_detected", None) or [False] * len(group)
        return [self._finish(job, image, bool(bad))
                for job, image, bad in zip(group, result.images, flagged, strict=True)]

    def _finish(self, job: _Job, image: Image.Image, flagged: bool) -> EngineOutput:
        """Resize to the output size, then reference colours and palette; report details."""
        params, plan = job.item.params, job.plan
        assert self.traits is not None
        details: dict[str, Any] = {
            "engine": self.name, "model": self.model, "family": self.traits.family.name,
            "steps": plan.steps, "denoise_steps": plan.denoise_steps,
            "strength": plan.strength, "guidance": plan.guidance,
            "generation_size": list(plan.generation_size), "styles": plan.styles,
            "style_type": plan.style_type, "style_codes": list(params.style_codes),
            "conditioning_prompt": plan.prompt, "negative_prompt": plan.negative_prompt,
            "device": self.device.type, "dtype": str(self.dtype).removeprefix("torch."),
        }
        if flagged:
            return EngineOutput(image=None, prompt=job.prompt, seed=job.seed, is_image_safe=False,
                                error="the output was flagged by the model's safety checker",
                                details=details)
        image = image.convert("RGB")
        if image.size != params.size:
            image = image.resize(params.size, Image.Resampling.LANCZOS)
        warnings: list[str] = []
        if job.item.style_images and not self.ip_adapter:
            references = [to_array(ref) for ref in job.item.style_images]
            image = to_image(transfer_color_stats(to_array(image), references,
                                                  dm.REFERENCE_TRANSFER))
            warnings.append(REFERENCE_WARNING)
        if plan.palette:
            image = to_image(transfer_palette(to_array(image), plan.palette, dm.PALETTE_TRANSFER))
            details["color_palette"] = [
                {"color_hex": rgb_to_hex(rgb), "color_weight": round(w, 3)}
                for rgb, w in plan.palette]
        if job.item.style_images:
            details["style_reference"] = "ip-adapter" if self.ip_adapter else "color-statistics"
        return EngineOutput(image=image, prompt=job.prompt, seed=job.seed, warnings=warnings,
                            details=details)
