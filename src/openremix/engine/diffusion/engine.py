"""`DiffusersEngine`: remix with any diffusers image-to-image model (SD 1.x/2.x, SDXL, Turbo, ...).

The model loads once through `AutoPipelineForImage2Image` from a local folder or a hub id.
`diffusion_mapping` turns each request into pipeline arguments (the README's table); one
`remix` call then reads top to bottom:

1. prepare: content filter, magic prompt, the plan; jobs with equal plans share a group;
2. generate: one pipeline call per group, with lists of prompts, negatives, images and one
   seeded CPU generator per job; `on_step` runs after every denoising step;
3. finish: resize to exactly `params.size`, reference colours (when no IP-Adapter), palette.

Batches are byte-exact: with `exact_batches` (the default) the text encoders, the denoiser and
the VAE decoder see each job's rows alone (the shapes of a solo run), because CPU and GPU
kernels round differently for different batch sizes; the rest of the call is shared. Turn it
off for the throughput of true batching, at the price of last-bit differences.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffusers import AutoPipelineForImage2Image
from diffusers.utils import deprecation_utils
from PIL import Image

from openremix.contract.request import RemixRequest
from openremix.engine.base import EngineError, EngineInput, EngineOutput, StepCallback
from openremix.engine.diffusion import mapping as dm
from openremix.engine.palette import transfer_palette
from openremix.engine.prompting.template import (
    DEFAULT_BLOCKLIST,
    PromptEnhancer,
    apply_magic_prompt,
    blocked_term,
)
from openremix.media.images import center_crop_resize

DEFAULT_MODEL = "stabilityai/sdxl-turbo"
IP_ADAPTER_SCALE = 0.6
REFERENCE_WARNING = (
    "style_reference_images: no IP-Adapter is configured (OPENREMIX_IP_ADAPTER), so only the "
    "references' colours were transferred onto the output"
)
_DTYPE_ARG = ("dtype" if hasattr(deprecation_utils, "_TORCH_DTYPE_DEPRECATION_MESSAGE")
              else "torch_dtype")
"""`from_pretrained`'s dtype keyword: `dtype` where diffusers deprecated `torch_dtype`."""
_DTYPES = {"float16": torch.float16, "fp16": torch.float16, "bfloat16": torch.bfloat16,
           "bf16": torch.bfloat16, "float32": torch.float32, "fp32": torch.float32}


def pick_device(name: str | None = None) -> torch.device:
    """`name`, or the best available: cuda, then mps, then cpu."""
    if name and name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def pick_dtype(name: str | None, device: torch.device) -> torch.dtype:
    """`name`, or: bf16 on a GPU that has it, else fp16 on GPUs, fp32 on CPU."""
    if name and name != "auto":
        if name.lower() not in _DTYPES:
            raise EngineError(f"unknown dtype {name!r}: use one of {', '.join(_DTYPES)}")
        return _DTYPES[name.lower()]
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float16 if device.type == "mps" else torch.float32


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
        model: str | None = None,
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
        """Arguments left out fall back to `OPENREMIX_MODEL`, `OPENREMIX_DEVICE`,
        `OPENREMIX_DTYPE` and `OPENREMIX_IP_ADAPTER`. `max_side` caps the generation size
        (tests generate tiny models at 64 px); the output is always `params.size`. `threads`
        sets torch's CPU threads for the process (1 keeps tiny models fast on a busy machine)."""
        env = os.environ.get
        self.model = model or env("OPENREMIX_MODEL") or DEFAULT_MODEL
        self.device_name = device or env("OPENREMIX_DEVICE") or None
        self.dtype_name = dtype or env("OPENREMIX_DTYPE") or None
        self.ip_adapter = ip_adapter or env("OPENREMIX_IP_ADAPTER") or None
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
        if self.device.type == "cuda":  # same shapes -> same kernels -> same bytes
            torch.backends.cudnn.benchmark = False
            torch.backends.cudnn.deterministic = True
        local = Path(self.model).expanduser().is_dir()
        source = str(Path(self.model).expanduser()) if local else self.model
        try:
            pipe = AutoPipelineForImage2Image.from_pretrained(
                source, **{_DTYPE_ARG: self.dtype}, local_files_only=local)
        except Exception as exc:  # hub errors, missing files, unknown pipelines: one message
            raise EngineError(f"cannot load the diffusers model {self.model!r}: {exc}") from exc
        pipe = pipe.to(self.device)
        pipe.set_progress_bar_config(disable=True)
        _use_sdpa(pipe)
        if self.ip_adapter:
            _load_ip_adapter(pipe, self.ip_adapter)
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
            term = blocked_term(params.prompt, self.blocklist)
            if term is not None:
                outputs[index] = EngineOutput(
                    image=None, prompt=params.prompt, seed=seed, is_image_safe=False,
                    error=f"prompt blocked by the content filter: {term!r}")
                continue
            prompt = apply_magic_prompt(params.prompt, params.magic_prompt, params.style_type,
                                        seed, self.enhancer)
            plan = self._plan(params, prompt)
            groups.setdefault(self._key(params, plan), []).append(
                _Job(index, item, plan, prompt, seed))
        progress = _Progress(on_step, [g[0].plan.denoise_steps for g in groups.values()])
        for group in groups.values():
            for job, output in zip(group, self._generate(group, progress), strict=True):
                outputs[job.index] = output
            progress.next_group()
        return [out for out in outputs if out is not None]

    def _generate(self, group: list[_Job], progress: _Progress) -> list[EngineOutput]:
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
        references = group[0].item.style_images
        if self.ip_adapter:
            args["ip_adapter_image_embeds"] = _ip_embeds(pipe, references, plan.guidance > 1.0)
            pipe.set_ip_adapter_scale(IP_ADAPTER_SCALE if references else 0.0)
        rows = len(group) if self.exact_batches else 1
        with torch.inference_mode(), _rows_per_job(pipe, rows):
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
            references = [_to_array(ref) for ref in job.item.style_images]
            image = _to_image(dm.transfer_color_stats(_to_array(image), references))
            warnings.append(REFERENCE_WARNING)
        if plan.palette:
            image = _to_image(transfer_palette(_to_array(image), plan.palette, dm.PALETTE_TRANSFER))
            details["color_palette"] = [
                {"color_hex": "#{:02x}{:02x}{:02x}".format(*rgb), "color_weight": round(w, 3)}
                for rgb, w in plan.palette]
        if job.item.style_images:
            details["style_reference"] = "ip-adapter" if self.ip_adapter else "color-statistics"
        return EngineOutput(image=image, prompt=job.prompt, seed=job.seed, warnings=warnings,
                            details=details)


class _Progress:
    """Turns each group's `callback_on_step_end` into `on_step(step, total)` for the batch."""

    def __init__(self, on_step: StepCallback, planned: list[int]) -> None:
        self.on_step, self.planned = on_step, planned
        self.group, self.done = 0, 0
        self.current: int | None = None
        """Denoising steps of the running group, as the pipeline counts them."""

    def callback(self, pipe: Any, step: int, timestep: Any,
                 kwargs: dict[str, Any]) -> dict[str, Any]:
        """Called by diffusers after each denoising step; `JobCancelled` propagates."""
        steps = int(getattr(pipe, "num_timesteps", 0) or self.planned[self.group])
        self.current = steps
        total = self.done + steps + sum(self.planned[self.group + 1:])
        self.on_step(self.done + step + 1, total)
        return kwargs

    def next_group(self) -> None:
        """The group finished: its actual step count joins the done count."""
        self.done += self.planned[self.group] if self.current is None else self.current
        self.group += 1
        self.current = None


# -- the loaded model ----------------------------------------------------------------------------

def model_traits(pipe: Any, model: str) -> dm.ModelTraits:
    """Family, size multiple and native side of a loaded pipeline."""
    denoiser = getattr(pipe, "unet", None) or getattr(pipe, "transformer", None)
    config = dict(getattr(denoiser, "config", {}) or {})
    family = dm.detect_family(type(pipe).__name__, type(pipe.scheduler).__name__, model,
                              config.get("time_cond_proj_dim"))
    scale = int(getattr(pipe, "vae_scale_factor", 8) or 8)
    sample = getattr(pipe, "default_sample_size", None) or config.get("sample_size")
    native = int(sample) * scale if isinstance(sample, int) else 1024
    return dm.ModelTraits(family=family, multiple=scale * 2, native_side=native)


def _use_sdpa(pipe: Any) -> None:
    """PyTorch's fused attention (`AttnProcessor2_0`) on UNets still on another processor."""
    from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

    unet = getattr(pipe, "unet", None)
    processors = getattr(unet, "attn_processors", {})
    if any(type(p) is AttnProcessor for p in processors.values()):
        unet.set_attn_processor(AttnProcessor2_0())


def _load_ip_adapter(pipe: Any, spec: str) -> None:
    """`spec`: a local weight file, or "<owner>/<repo>/<subfolder>/<weight file>" on the hub."""
    if getattr(pipe, "unet", None) is None:
        raise EngineError(f"ip_adapter: {type(pipe).__name__} has no UNet to condition")
    path = Path(spec).expanduser()
    if path.is_file():
        source, subfolder, weight = str(path.parent), "", path.name
    else:
        parts = spec.strip("/").split("/")
        if len(parts) < 3:
            raise EngineError(f"ip_adapter {spec!r}: give a weight file or owner/repo/.../file")
        source, subfolder, weight = "/".join(parts[:2]), "/".join(parts[2:-1]), parts[-1]
    try:
        pipe.load_ip_adapter(source, subfolder=subfolder, weight_name=weight,
                             local_files_only=path.is_file())
    except Exception as exc:  # missing files, wrong architecture: one message
        raise EngineError(f"cannot load the IP-Adapter {spec!r}: {exc}") from exc


def _ip_embeds(pipe: Any, references: list[Image.Image], cfg: bool) -> list[torch.Tensor]:
    """One averaged image embedding per IP-Adapter (zeros without references), CFG-stacked."""
    from diffusers.models.embeddings import ImageProjection

    images = references or [Image.new("RGB", (224, 224), (127, 127, 127))]
    embeds = []
    for layer in pipe.unet.encoder_hid_proj.image_projection_layers:
        hidden = not isinstance(layer, ImageProjection)
        with torch.inference_mode():
            pos, neg = pipe.encode_image(images, pipe.device, 1, hidden)
        pos, neg = pos.mean(0, keepdim=True)[None], neg.mean(0, keepdim=True)[None]
        if not references:
            pos = torch.zeros_like(pos)
        embeds.append(torch.cat([neg, pos]) if cfg else pos)
    return embeds


# -- byte-exact batches -------------------------------------------------------------------------

_PER_JOB_MODULES = ("text_encoder", "text_encoder_2", "text_encoder_3", "unet", "transformer")


@contextmanager
def _rows_per_job(pipe: Any, jobs: int) -> Iterator[None]:
    """While active, the pipeline's models run each job's rows as a call of their own."""
    targets = [(getattr(pipe, n, None), "forward") for n in _PER_JOB_MODULES]
    targets.append((getattr(pipe, "vae", None), "decode"))
    patched = []
    if jobs > 1:
        for module, attr in targets:
            if module is None:
                continue
            saved = module.__dict__.get(attr)
            setattr(module, attr, _split_by_job(getattr(module, attr), jobs))
            patched.append((module, attr, saved))
    try:
        yield
    finally:
        for module, attr, saved in patched:
            if saved is None:
                delattr(module, attr)
            else:
                setattr(module, attr, saved)


def _split_by_job(fn: Callable[..., Any], jobs: int) -> Callable[..., Any]:
    """`fn` run once per job on rows `i, i + jobs, ...` (diffusers stacks CFG halves), merged."""
    def call(*args: Any, **kwargs: Any) -> Any:
        rows = _first_rows(args, kwargs)
        if rows is None or rows % jobs or rows == 1:
            return fn(*args, **kwargs)
        groups = [[i + k * jobs for k in range(rows // jobs)] for i in range(jobs)]
        outs = [fn(*_take(args, idx, rows), **_take(kwargs, idx, rows)) for idx in groups]
        order = torch.tensor([r for g in groups for r in g])
        return _merge(outs, torch.argsort(order), rows)

    return call


def _first_rows(args: tuple[Any, ...], kwargs: dict[str, Any]) -> int | None:
    tensors = (v for v in (*args, *kwargs.values()) if isinstance(v, torch.Tensor) and v.dim())
    return next((int(t.shape[0]) for t in tensors), None)


def _take(value: Any, idx: list[int], rows: int) -> Any:
    if isinstance(value, torch.Tensor):
        return value[idx] if value.dim() > 0 and value.shape[0] == rows else value
    if isinstance(value, dict):
        return {k: _take(v, idx, rows) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_take(v, idx, rows) for v in value)
    return value


def _merge(outs: list[Any], inverse: torch.Tensor, rows: int) -> Any:
    first = outs[0]
    if isinstance(first, torch.Tensor):
        if first.dim() == 0 or sum(o.shape[0] for o in outs) != rows:
            return first
        return torch.cat(outs)[inverse]
    if isinstance(first, dict):  # diffusers' and transformers' ModelOutput are dicts
        merged = {k: _merge([o[k] for o in outs], inverse, rows) for k in first}
        return type(first)(**merged)
    if isinstance(first, (list, tuple)):
        return type(first)(_merge(list(items), inverse, rows) for items in zip(*outs, strict=True))
    return first


# -- pixels --------------------------------------------------------------------------------------

def _to_array(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0


def _to_image(array: np.ndarray) -> Image.Image:
    return Image.fromarray((np.clip(array, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8))
