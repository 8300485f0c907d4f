"""The classic img2img family: any model `AutoPipelineForImage2Image` loads (SD 1.x/2.x, SDXL,
Turbo, LCM, SD3, FLUX.1, ...), mapped by `mapping.plan_remix` (the README's first table).

One pipeline call per group of jobs, with lists of prompts, negatives, images and one seeded
CPU generator per job; `callback_on_step_end` reports each step. With `exact` batches the text
encoders, the denoiser and the VAE decoder see each job's rows alone (`batching.rows_per_job`).
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import torch
from PIL import Image

from openremix.contract.request import RemixRequest
from openremix.engine.diffusion import mapping as dm
from openremix.engine.diffusion.batching import BatchProgress, rows_per_job
from openremix.engine.diffusion.families import FamilyOptions, Job, ModelSource
from openremix.engine.diffusion.ip_adapter import condition_on_references, load_ip_adapter
from openremix.engine.diffusion.latent_preview import (
    ProjectionCache,
    Renderer,
    pixels_of,
)
from openremix.engine.diffusion.loading import load_pipeline, model_traits
from openremix.engine.prompting.template import PromptEnhancer, apply_magic_prompt
from openremix.media.images import center_crop_resize

REFERENCE_WARNING = (
    "style_reference_images: no IP-Adapter is configured (OPENREMIX_IP_ADAPTER), so only the "
    "references' colours were transferred onto the output"
)


def open_family(source: ModelSource, options: FamilyOptions) -> Img2ImgFamily:
    """Load the model through `AutoPipelineForImage2Image` (and its IP-Adapter, if any)."""
    from diffusers import AutoPipelineForImage2Image

    pipe = load_pipeline(source, AutoPipelineForImage2Image)
    if options.ip_adapter:
        load_ip_adapter(pipe, options.ip_adapter)
    return Img2ImgFamily(pipe, source.model, options.ip_adapter, options.enhancer)


class Img2ImgFamily:
    """Remix with a diffusers img2img pipeline call."""

    name = "img2img"

    def __init__(self, pipe: Any, model: str, ip_adapter: str | None = None,
                 enhancer: PromptEnhancer | None = None) -> None:
        self.pipe = pipe
        self.ip_adapter = ip_adapter
        self.enhancer = enhancer
        self.traits = model_traits(pipe, model)
        self.reference_warning = None if ip_adapter else REFERENCE_WARNING
        self.reference_mode = "ip-adapter" if ip_adapter else "color-statistics"
        self._call_args = frozenset(inspect.signature(pipe.__call__).parameters)
        self._projection = ProjectionCache(self._encode_samples)

    def used_prompt(self, params: RemixRequest, seed: int, image: Image.Image) -> str:
        """The template (or configured) enhancer."""
        return apply_magic_prompt(params.prompt, params.magic_prompt, params.style_type, seed,
                                  self.enhancer)

    def plan(self, params: RemixRequest, prompt: str, max_side: int | None) -> dm.RemixPlan:
        """`mapping.plan_remix`."""
        return dm.plan_remix(params, prompt, self.traits, max_side)

    def batch_extra(self, params: RemixRequest) -> tuple[Any, ...]:
        """The references' addresses when an IP-Adapter is loaded (one embedding per call)."""
        return (tuple(params.style_reference_images),) if self.ip_adapter else ()

    def generate(self, group: Sequence[Job], progress: BatchProgress,
                 exact: bool) -> list[tuple[Image.Image, bool]]:
        """One pipeline call for jobs that share a key."""
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
        with torch.inference_mode(), rows_per_job(pipe, len(group) if exact else 1):
            result = pipe(**args)
        flagged = getattr(result, "nsfw_content_detected", None) or [False] * len(group)
        return [(image, bool(bad)) for image, bad in zip(result.images, flagged, strict=True)]

    # -- live previews ------------------------------------------------------------------------

    def previewer(self, group: Sequence[Job]) -> Renderer | None:
        """The latents the pipeline hands its step callback, projected to RGB; pipelines whose
        latents are packed into tokens (FLUX.1) give no preview."""
        if "callback_on_step_end" not in self._call_args or getattr(self.pipe, "vae", None) is None:
            return None

        def render(latents: torch.Tensor) -> list[Image.Image]:
            return self._projection.get().images(latents) if latents.dim() == 4 else []

        return render

    def _encode_samples(self, images: list[Image.Image]) -> tuple[torch.Tensor, torch.Tensor]:
        """The sample images in the latent space the pipeline denoises in (VAE mode, shifted
        and scaled as the pipeline's `prepare_latents` does)."""
        vae = self.pipe.vae
        pixels = pixels_of(images)
        z = vae.encode(pixels.to(device=vae.device, dtype=vae.dtype)).latent_dist.mode().float()
        shift = getattr(vae.config, "shift_factor", None) or 0.0
        return (z - shift) * vae.config.scaling_factor, pixels
