"""The Ideogram 4 family: remix by image-to-image on Ideogram 4's own components.

diffusers 0.42.1 ships `Ideogram4Pipeline`, text-to-image only. This module runs a remix on its
components, top to bottom (`denoise`, then `decode`):

1. encode each job's prompt with the pipeline's `encode_prompt` (Qwen3-VL tapped at 13 layers,
   left-padded to the plan's `text_tokens`, packed `[text][image]`);
2. build the model's resolution-aware logit-normal schedule for the full step count
   (`schedule_sigmas`) and start at the plan's start step (what `image_weight` picks);
3. encode the centre-cropped input with the FLUX.2 VAE (a sample drawn with the job's own
   generator), pack it 2x2 into tokens and normalise it with the VAE's batch-norm statistics;
4. noise it to the start step's sigma with the same generator (`scheduler.scale_noise`);
5. run the remaining steps: the conditional transformer on `[text][image]`, the unconditional
   one on the image alone with zeroed text features, blended by the guidance schedule sliced
   from the start step (`v = g * v_cond + (1 - g) * v_uncond`), an Euler step each;
6. un-normalise, unpack and decode with the VAE.

Where the installed diffusers has upstream's `Ideogram4Img2ImgPipeline`, it is loaded instead
and a solo job (or any group without exact batches) is one call of it; a test shows both paths
give the same result on the same tiny model. The parameter mapping is `ideogram4_mapping`.

Where the text encoder carries Qwen3-VL's vision tower (and the enhancer head is loaded),
`ideogram4_vision` lets the magic-prompt enhancer see the input image, and describes the style
references into the caption (`describe_references`, at generation time: the engine hands the
family the references only with the planned jobs).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from PIL import Image

from openremix.contract.request import RemixRequest
from openremix.engine.diffusion import ideogram4_mapping as im
from openremix.engine.diffusion import ideogram4_vision as iv
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
from openremix.engine.prompting.template import (
    PromptEnhancer,
    apply_magic_prompt,
    needs_enhancement,
)
from openremix.media.images import center_crop_resize

SCHEDULE_MU = 0.0
SCHEDULE_STD = 1.5
"""The logit-normal schedule's base mean and spread (`Ideogram4Pipeline`'s defaults)."""
LOGSNR_RANGE = (-15.0, 18.0)
ENHANCER_TEMPERATURE = 1.0
STYLE_SEED = 0
"""The references' description is sampled with this seed (it depends on the references alone)."""


def open_family(source: ModelSource, options: FamilyOptions) -> Ideogram4Family:
    """Load the model: upstream's img2img pipeline where diffusers has it, else the 0.42.1
    text-to-image pipeline (its components are what this module runs)."""
    import diffusers

    upstream = getattr(diffusers, "Ideogram4Img2ImgPipeline", None)
    pipe = load_pipeline(source, upstream or diffusers.Ideogram4Pipeline)
    return Ideogram4Family(pipe, options, upstream=upstream is not None)


def schedule_sigmas(steps: int, height: int, width: int, mu: float = SCHEDULE_MU,
                    std: float = SCHEDULE_STD) -> list[float]:
    """Ideogram 4's schedule: `steps` sigmas from near 1 (noise) down, logit-normal with its
    mean shifted by half the log of the pixel count over 512x512 (the scheduler appends 0)."""
    shifted = mu + 0.5 * math.log(height * width / (512 * 512))
    quantiles = torch.linspace(0.0, 1.0, steps + 1, dtype=torch.float64)
    t = 1.0 - torch.special.expit(shifted + std * torch.special.ndtri(quantiles))
    low, high = LOGSNR_RANGE
    t = t.clamp(1.0 / (1.0 + math.exp(0.5 * high)), 1.0 / (1.0 + math.exp(0.5 * low)))
    return (1.0 - t).flip(0)[:-1].to(torch.float32).tolist()


class RunsProgress:
    """`BatchProgress` for one group run as `runs` consecutive loops of equal length: step `i`
    of loop `r` is reported as step `r * n + i` of `runs * n`."""

    def __init__(self, progress: BatchProgress, runs: int) -> None:
        self.progress, self.runs, self.run = progress, runs, 0

    def step(self, step: int, steps: int, latents: Any = None) -> None:
        """`latents` are ignored: a run holds only some of the group's rows (no previews)."""
        self.progress.step(self.run * steps + step, self.runs * steps)

    def callback(self, pipe: Any, step: int, timestep: Any,
                 kwargs: dict[str, Any]) -> dict[str, Any]:
        self.step(step, int(getattr(pipe, "num_timesteps", 0)
                            or self.progress.planned[self.progress.group]))
        return kwargs


class Ideogram4Family:
    """Remix with Ideogram 4 (see the module docstring for the steps)."""

    name = "ideogram4"

    def __init__(self, pipe: Any, options: FamilyOptions, upstream: bool = False) -> None:
        self.pipe = pipe
        self.upstream = upstream
        self.enhancer: PromptEnhancer | None = options.enhancer
        self.enhancer_max_tokens = options.enhancer_max_tokens
        self.patch = int(getattr(pipe, "patch_size", 2))
        self.traits = im.traits(int(pipe.vae_scale_factor) * self.patch)
        self._projection = ProjectionCache(self._encode_samples)

    @property
    def reference_warning(self) -> str | None:
        """None where the vision tower describes the references into the caption (then the
        engine transfers no colours); else the colour-statistics fallback's warning."""
        return None if iv.has_vision(self.pipe) else im.REFERENCE_WARNING

    @property
    def reference_mode(self) -> str:
        """"caption" where the vision tower describes the references, else the colour fallback."""
        return "caption" if iv.has_vision(self.pipe) else "color-statistics"

    # -- mapping ------------------------------------------------------------------------------

    def used_prompt(self, params: RemixRequest, seed: int, image: Image.Image) -> str:
        """The model's own structured-caption enhancer when its head is loaded (ON; AUTO for
        short or vague prompts), seeded by the job; else the template enhancer. Where the text
        encoder has its vision tower, the enhancer sees the centre-cropped input image too
        (`ideogram4_vision`), so the caption keeps what the prompt does not change."""
        head = getattr(self.pipe, "prompt_enhancer_head", None)
        mode = params.magic_prompt
        if head is None or mode == "OFF" or (mode == "AUTO" and not needs_enhancement(
                params.prompt)):
            return apply_magic_prompt(params.prompt, mode, params.style_type, seed, self.enhancer)
        width, height = params.size
        if iv.has_vision(self.pipe):
            caption = iv.remix_caption(self.pipe, params.prompt, image, params.size, seed,
                                       self.enhancer_max_tokens, ENHANCER_TEMPERATURE)
            return caption or apply_magic_prompt(params.prompt, "ON", params.style_type, seed,
                                                 self.enhancer)
        with torch.inference_mode():
            caption = self.pipe.upsample_prompt(
                params.prompt, height=height, width=width, temperature=ENHANCER_TEMPERATURE,
                max_new_tokens=self.enhancer_max_tokens,
                generator=torch.Generator("cpu").manual_seed(seed),
                device=self.pipe._execution_device)[0].strip()
        return caption or apply_magic_prompt(params.prompt, "ON", params.style_type, seed,
                                             self.enhancer)

    def plan(self, params: RemixRequest, prompt: str, max_side: int | None) -> dm.RemixPlan:
        """`ideogram4_mapping.plan_ideogram4`, with the caption's padded token count."""
        plan = im.plan_ideogram4(params, prompt, self.traits, max_side)
        plan.text_tokens = im.text_tokens(self.token_count(plan.prompt))
        return plan

    def token_count(self, prompt: str) -> int:
        """Tokens of `prompt` in the chat form the pipeline's `encode_prompt` feeds the encoder."""
        messages = [{"role": "user", "content": [{"type": "text", "text": prompt}]}]
        text = self.pipe.tokenizer.apply_chat_template(messages, add_generation_prompt=True,
                                                       tokenize=False)
        return len(self.pipe.tokenizer(text, add_special_tokens=False)["input_ids"])

    def batch_extra(self, params: RemixRequest) -> tuple[Any, ...]:
        """The references' addresses where the vision tower describes them (one description
        per group); else nothing beyond the plan's sampling key."""
        if iv.has_vision(self.pipe) and params.style_reference_images:
            return (tuple(params.style_reference_images),)
        return ()

    def describe_references(self, group: Sequence[Job]) -> None:
        """Weave the vision tower's description of the group's references (they share them,
        see `batch_extra`) into each job's caption, and re-count its text tokens. Seeded by a
        constant, not by a job: a description depends on the references alone."""
        references = group[0].item.style_images
        if not references or not iv.has_vision(self.pipe):
            return
        style = iv.describe_style(self.pipe, references, STYLE_SEED, ENHANCER_TEMPERATURE,
                                  min(iv.STYLE_MAX_TOKENS, self.enhancer_max_tokens))
        if not style:
            return
        for job in group:
            job.plan.prompt = im.weave_caption(job.plan.prompt, [f"style reference: {style}"], [])
            job.plan.text_tokens = im.text_tokens(self.token_count(job.plan.prompt))
            job.plan.styles.append({"name": "style reference", "source": "vision tower",
                                    "description": style})

    # -- generation ---------------------------------------------------------------------------

    def generate(self, group: Sequence[Job], progress: BatchProgress,
                 exact: bool) -> list[tuple[Image.Image, bool]]:
        """Images at the plan's generation size (the model has no safety checker). Where the
        references' description makes the group's captions pad to different token counts, each
        count runs as a loop of its own, in order, so each job gets the bytes it gets alone."""
        self.describe_references(group)
        runs: dict[int, list[Job]] = {}
        for job in group:
            runs.setdefault(job.plan.text_tokens, []).append(job)
        if len(runs) == 1:
            return self._generate(group, progress, exact)
        shared = RunsProgress(progress, len(runs))
        images: dict[int, tuple[Image.Image, bool]] = {}
        for run in runs.values():
            images.update(zip((job.index for job in run),
                              self._generate(run, shared, exact), strict=True))
            shared.run += 1
        return [images[job.index] for job in group]

    def _generate(self, group: Sequence[Job], progress: BatchProgress | RunsProgress,
                  exact: bool) -> list[tuple[Image.Image, bool]]:
        if self.upstream and (len(group) == 1 or not exact):
            images = self._upstream_call(group, progress)
        else:
            with torch.inference_mode():
                images = self.decode(self.denoise(group, progress, exact), group[0].plan, exact)
        return [(image, False) for image in images]

    def _upstream_call(self, group: Sequence[Job],
                       progress: BatchProgress | RunsProgress) -> list[Image.Image]:
        plan = group[0].plan
        width, height = plan.generation_size
        with torch.inference_mode():
            return list(self.pipe(
                prompt=[job.plan.prompt for job in group],
                image=[center_crop_resize(job.item.image, (width, height)) for job in group],
                strength=plan.strength, height=height, width=width,
                num_inference_steps=plan.steps, guidance_schedule=list(plan.guidance_schedule),
                max_sequence_length=plan.text_tokens,
                generator=[torch.Generator("cpu").manual_seed(job.seed) for job in group],
                # no tensors asked back: upstream collects them with `locals()` inside a
                # comprehension, which finds none before Python 3.12 (KeyError)
                callback_on_step_end=progress.callback, callback_on_step_end_tensor_inputs=[],
                output_type="pil").images)

    def denoise(self, group: Sequence[Job], progress: BatchProgress | RunsProgress,
                exact: bool = True) -> torch.Tensor:
        """Steps 1-5: the group's packed, normalised latents after the remaining steps."""
        pipe, plan = self.pipe, group[0].plan
        device = pipe._execution_device
        width, height = plan.generation_size
        grid_h, grid_w = height // self.traits.multiple, width // self.traits.multiple
        text = plan.text_tokens
        # read once: each `_execution_device` / `.dtype` walks the modules (~0.5-10 ms on CPU)
        cond_dtype, uncond_dtype = pipe.transformer.dtype, pipe.unconditional_transformer.dtype
        features, positions, segments, indicator = self._encode_prompts(
            [job.plan.prompt for job in group], grid_h, grid_w, text, exact, device)
        uncond_features = torch.zeros(len(group), grid_h * grid_w, features.shape[-1],
                                      dtype=uncond_dtype, device=device)
        features = features.to(cond_dtype)

        pipe.scheduler.set_timesteps(sigmas=schedule_sigmas(plan.steps, height, width),
                                     device=device)
        first = plan.steps - plan.denoise_steps
        timesteps = pipe.scheduler.timesteps[first:]
        pipe.scheduler.set_begin_index(first)
        weights = torch.tensor(plan.guidance_schedule[first:], dtype=torch.float32, device=device)

        generators = [torch.Generator("cpu").manual_seed(job.seed) for job in group]
        clean = torch.cat([self.encode_image(job.item.image, (width, height), gen, device)
                           for job, gen in zip(group, generators, strict=True)])
        noise = torch.cat([self._noise(clean.shape[1:], gen, device) for gen in generators])
        latents = pipe.scheduler.scale_noise(clean, timesteps[:1].repeat(len(group)), noise)

        padding = torch.zeros(len(group), text, clean.shape[-1], device=device)
        train_steps = pipe.scheduler.config.num_train_timesteps
        with rows_per_job(pipe, len(group) if exact else 1):
            for i, t in enumerate(timesteps):
                model_t = (1.0 - t.float() / train_steps).expand(len(group))
                cond = pipe.transformer(
                    hidden_states=torch.cat([padding, latents], 1).to(cond_dtype),
                    timestep=model_t.to(cond_dtype), encoder_hidden_states=features,
                    position_ids=positions, segment_ids=segments, indicator=indicator,
                    return_dict=False)[0][:, text:].to(torch.float32)
                uncond = pipe.unconditional_transformer(
                    hidden_states=latents.to(uncond_dtype),
                    timestep=model_t.to(uncond_dtype),
                    encoder_hidden_states=uncond_features, position_ids=positions[:, text:],
                    segment_ids=segments[:, text:], indicator=indicator[:, text:],
                    return_dict=False)[0].to(torch.float32)
                velocity = weights[i] * cond + (1.0 - weights[i]) * uncond
                latents = pipe.scheduler.step(-velocity, t, latents, return_dict=False)[0]
                progress.step(i, len(timesteps), latents)
        return latents

    def previewer(self, group: Sequence[Job]) -> Renderer | None:
        """The denoising loop's packed, normalised tokens projected to RGB, one pixel per token
        (upstream's pipeline call hands its callback no latents: no previews there)."""
        return token_renderer(self._projection, group[0].plan.generation_size,
                              self.traits.multiple)

    def _encode_samples(self, images: list[Image.Image]) -> tuple[torch.Tensor, torch.Tensor]:
        """The sample images as the loop's tokens (`encode_image`, the VAE's mode), on a grid."""
        side = images[0].width // self.traits.multiple
        tokens = torch.cat([self.encode_image(im, im.size) for im in images])
        return tokens_to_grid(tokens, side, side), pixels_of(images)

    def _encode_prompts(self, prompts: list[str], grid_h: int, grid_w: int, text: int,
                        exact: bool, device: torch.device) -> tuple[torch.Tensor, ...]:
        """`encode_prompt`'s packed conditioning, padded to `text` tokens; one prompt per call
        when batches are exact (the pipeline calls the encoder's layers directly, so
        `rows_per_job` cannot split them)."""
        batches = [[p] for p in prompts] if exact else [prompts]
        parts = [self.pipe.encode_prompt(b, grid_h, grid_w, text, device) for b in batches]
        return tuple(torch.cat(column) for column in zip(*parts, strict=True))

    def _noise(self, shape: torch.Size, generator: torch.Generator,
               device: torch.device) -> torch.Tensor:
        from diffusers.utils.torch_utils import randn_tensor

        return randn_tensor((1, *shape), generator=generator, device=device, dtype=torch.float32)

    def _bn(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The VAE's batch-norm mean and std over packed token channels."""
        vae = self.pipe.vae
        mean = vae.bn.running_mean.view(1, 1, -1)
        std = torch.sqrt(vae.bn.running_var + vae.config.batch_norm_eps).view(1, 1, -1)
        return (mean.to(device=like.device, dtype=like.dtype),
                std.to(device=like.device, dtype=like.dtype))

    def encode_image(self, image: Image.Image, size: tuple[int, int],
                     generator: torch.Generator | None = None,
                     device: torch.device | None = None) -> torch.Tensor:
        """Step 3: the centre-cropped image as packed, normalised tokens `(1, tokens, channels)`;
        the VAE's sample is drawn with `generator` (its mean without one). `device`: the
        pipeline's execution device, when the caller already has it."""
        pipe, p = self.pipe, self.patch
        pixels = pipe.image_processor.preprocess(center_crop_resize(image, size)).float()
        pixels = pixels.to(device=device or pipe._execution_device, dtype=pipe.vae.dtype)
        posterior = pipe.vae.encode(pixels).latent_dist
        z = (posterior.sample(generator) if generator is not None else posterior.mode()).float()
        _, channels, h, w = z.shape
        z = z.view(1, channels, h // p, p, w // p, p).permute(0, 2, 4, 3, 5, 1)
        z = z.reshape(1, (h // p) * (w // p), p * p * channels)
        mean, std = self._bn(z)
        return (z - mean) / std

    def decode(self, latents: torch.Tensor, plan: dm.RemixPlan,
               exact: bool = True) -> list[Image.Image]:
        """Step 6: packed latents -> images (one VAE call per job when batches are exact)."""
        pipe, p = self.pipe, self.patch
        width, height = plan.generation_size
        grid_h, grid_w = height // self.traits.multiple, width // self.traits.multiple
        mean, std = self._bn(latents)
        z = latents * std + mean
        channels = z.shape[-1] // (p * p)
        z = z.view(-1, grid_h, grid_w, p, p, channels).permute(0, 5, 1, 3, 2, 4)
        z = z.reshape(-1, channels, grid_h * p, grid_w * p).to(pipe.vae.dtype)
        rows = z.split(1) if exact else [z]
        decoded = torch.cat([pipe.vae.decode(r, return_dict=False)[0] for r in rows])
        return list(pipe.image_processor.postprocess(decoded.float(), output_type="pil"))
