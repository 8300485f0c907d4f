"""The FLUX.1 Kontext family: instruction editing with `FluxKontextPipeline`, entered part-way.

Kontext conditions its transformer on the input image (its latents appended to the image
tokens) and normally denoises from pure noise. To let `image_weight` set how much of the input
survives, each group runs, top to bottom:

1. encode each job's centre-cropped input with the VAE (its mode, shifted and scaled as the
   pipeline does; one VAE call per job): the condition *and* the start point;
2. build the model's schedule for the full step count (`flux_kontext_mapping.schedule_sigmas`,
   shifted by the `mu` the pipeline computes from the token count) and take its tail from the
   start step the plan picked;
3. noise the packed input latents to the first remaining sigma with each job's own generator
   (`scheduler.scale_noise`);
4. one `FluxKontextPipeline` call with those start `latents`, the input latents as `image`, the
   sliced `sigmas`, the plan's size (`max_area` = its pixel count, so the pipeline keeps it),
   the distilled guidance, and true CFG where the jobs carry a negative prompt.

The parameter mapping is `flux_kontext_mapping` (the README's table).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from PIL import Image

from openremix.contract.request import RemixRequest
from openremix.engine.diffusion import flux_kontext_mapping as km
from openremix.engine.diffusion import mapping as dm
from openremix.engine.diffusion.batching import BatchProgress, rows_per_job
from openremix.engine.diffusion.families import FamilyOptions, Job, ModelSource
from openremix.engine.diffusion.latent_preview import (
    ProjectionCache,
    Renderer,
    pixels_of,
    token_renderer,
    tokens_to_grid,
)
from openremix.engine.diffusion.loading import load_pipeline
from openremix.engine.prompting.template import PromptEnhancer, apply_magic_prompt
from openremix.media.images import center_crop_resize


def open_family(source: ModelSource, options: FamilyOptions) -> FluxKontextFamily:
    """Load the model with `FluxKontextPipeline`."""
    from diffusers import FluxKontextPipeline

    return FluxKontextFamily(load_pipeline(source, FluxKontextPipeline), options.enhancer)


class FluxKontextFamily:
    """Remix with FLUX.1 Kontext (see the module docstring for the steps)."""

    name = "flux_kontext"
    reference_warning = km.REFERENCE_WARNING
    reference_mode = "color-statistics"

    def __init__(self, pipe: Any, enhancer: PromptEnhancer | None = None) -> None:
        self.pipe = pipe
        self.enhancer = enhancer
        self.traits = dm.ModelTraits(family=dm.ModelFamily(self.name),
                                     multiple=int(pipe.vae_scale_factor) * 2,
                                     native_side=km.NATIVE_SIDE)
        self._projection = ProjectionCache(self._encode_samples)
        limit = int(getattr(pipe.tokenizer_2, "model_max_length", km.TEXT_TOKENS) or 0)
        self.text_tokens = min(km.TEXT_TOKENS, limit) if limit > 0 else km.TEXT_TOKENS

    # -- mapping ------------------------------------------------------------------------------

    def plan(self, params: RemixRequest, prompt: str, max_side: int | None) -> dm.RemixPlan:
        """`flux_kontext_mapping.plan_kontext`."""
        return km.plan_kontext(params, prompt, self.traits, max_side)

    def batch_extra(self, params: RemixRequest) -> tuple[Any, ...]:
        """Whether true CFG runs (a negative prompt): the pipeline decides it per call."""
        return (bool(params.negative_prompt),)

    def used_prompt(self, params: RemixRequest, seed: int, image: Image.Image) -> str:
        """The template (or configured) enhancer, as for img2img: Kontext has none of its own."""
        return apply_magic_prompt(params.prompt, params.magic_prompt, params.style_type, seed,
                                  self.enhancer)

    # -- generation ---------------------------------------------------------------------------

    def generate(self, group: Sequence[Job], progress: BatchProgress,
                 exact: bool) -> list[tuple[Image.Image, bool]]:
        """One pipeline call for the group (the model has no safety checker)."""
        with torch.inference_mode():
            images = self.run(group, progress, exact, output_type="pil")
        return [(image, False) for image in images]

    def run(self, group: Sequence[Job], progress: BatchProgress, exact: bool = True,
            output_type: str = "pil") -> Any:
        """Steps 1-4; `output_type="latent"` returns the packed latents (for tests)."""
        pipe, plan = self.pipe, group[0].plan
        width, height = plan.generation_size
        first = plan.steps - plan.denoise_steps
        sigmas = km.schedule_sigmas(plan.steps, first)
        condition = torch.cat([self.encode_image(job.item.image, (width, height))
                               for job in group])
        latents = self.start_latents(condition, sigmas, [job.seed for job in group])
        args: dict[str, Any] = {
            "prompt": [job.plan.prompt for job in group],
            "image": condition, "latents": latents, "sigmas": sigmas,
            "num_inference_steps": len(sigmas), "height": height, "width": width,
            "max_area": width * height, "guidance_scale": plan.guidance,
            "max_sequence_length": self.text_tokens,
            "callback_on_step_end": progress.callback,
            "callback_on_step_end_tensor_inputs": ["latents"],
            "output_type": output_type,
        }
        if group[0].plan.negative_prompt is not None:  # the group shares it (`batch_extra`)
            args["negative_prompt"] = [job.plan.negative_prompt or "" for job in group]
            args["true_cfg_scale"] = km.TRUE_CFG_SCALE
        with rows_per_job(pipe, len(group) if exact else 1):
            return pipe(**args).images

    def previewer(self, group: Sequence[Job]) -> Renderer | None:
        """The packed latents the pipeline hands its step callback, projected to RGB, one
        pixel per token (2x2 latent cells)."""
        return token_renderer(self._projection, group[0].plan.generation_size,
                              self.traits.multiple)

    def _encode_samples(self, images: list[Image.Image]) -> tuple[torch.Tensor, torch.Tensor]:
        """The sample images packed as the pipeline's latents (`encode_image`, `_pack_latents`)."""
        z = torch.cat([self.encode_image(im, im.size) for im in images]).float()
        batch, channels, h, w = z.shape
        packed = self.pipe._pack_latents(z, batch, channels, h, w)
        return tokens_to_grid(packed, h // 2, w // 2), pixels_of(images)

    def encode_image(self, image: Image.Image, size: tuple[int, int]) -> torch.Tensor:
        """Step 1: the centre-cropped input as the VAE's scaled latents `(1, C, h, w)` (its
        mode, as the pipeline encodes a condition)."""
        pipe = self.pipe
        pixels = pipe.image_processor.preprocess(center_crop_resize(image, size))
        pixels = pixels.to(device=pipe._execution_device, dtype=pipe.vae.dtype)
        z = pipe.vae.encode(pixels).latent_dist.mode()
        return (z - pipe.vae.config.shift_factor) * pipe.vae.config.scaling_factor

    def start_latents(self, condition: torch.Tensor, sigmas: list[float],
                      seeds: list[int]) -> torch.Tensor:
        """Steps 2-3: the packed input latents noised to the first of `sigmas` (after the
        pipeline's resolution shift), one seeded noise draw per job."""
        from diffusers.pipelines.flux.pipeline_flux_kontext import calculate_shift
        from diffusers.utils.torch_utils import randn_tensor

        pipe = self.pipe
        batch, channels, h, w = condition.shape
        packed = pipe._pack_latents(condition, batch, channels, h, w)
        config = pipe.scheduler.config
        mu = calculate_shift(packed.shape[1], config.get("base_image_seq_len", 256),
                             config.get("max_image_seq_len", 4096),
                             config.get("base_shift", 0.5), config.get("max_shift", 1.15))
        pipe.scheduler.set_timesteps(sigmas=sigmas, device=packed.device, mu=mu)
        noise = torch.cat([
            randn_tensor((1, channels, h, w), generator=torch.Generator("cpu").manual_seed(seed),
                         device=packed.device, dtype=packed.dtype) for seed in seeds])
        noise = pipe._pack_latents(noise, batch, channels, h, w)
        start = pipe.scheduler.timesteps[:1].repeat(batch)
        return pipe.scheduler.scale_noise(packed, start, noise)
