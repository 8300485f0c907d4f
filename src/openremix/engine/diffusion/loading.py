"""Loading a diffusers model: the device and dtype, the pipeline, and what the classic mapping
needs to know about it (`ModelTraits`).

`families.open_model` reads the folder's `model_index.json` and hands the `ModelSource` to the
family's module, which names its pipeline class; `load_pipeline` loads any class the same way
(local folders never touch the hub; bf16/fp16 on GPUs; CPU offload for small cards; one
EngineError sentence for any failure).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from diffusers.utils import deprecation_utils

from openremix.engine.base import EngineError
from openremix.engine.diffusion import mapping as dm
from openremix.engine.diffusion.families import ModelSource

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


def model_source(model: str, device: torch.device, dtype: torch.dtype, *,
                 cpu_offload: bool = False, variant: str | None = None) -> ModelSource:
    """Where `model` is: a local folder (expanded) or a hub id."""
    local = Path(model).expanduser().is_dir()
    path = str(Path(model).expanduser()) if local else model
    return ModelSource(model, path, local, device, dtype, cpu_offload, variant or None)


def load_pipeline(source: ModelSource, pipeline_class: Any, **components: Any) -> Any:
    """`pipeline_class.from_pretrained(source)` on the source's device, quiet.

    `components` replace or add pipeline components (e.g. an optional head). With
    `cpu_offload` the components stay on the CPU and each moves to the GPU while it runs.
    """
    if source.device.type == "cuda":  # same shapes -> same kernels -> same bytes
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
    extra: dict[str, Any] = {_DTYPE_ARG: source.dtype, **components}
    if source.variant:
        extra["variant"] = source.variant
    try:
        pipe = pipeline_class.from_pretrained(source.path, local_files_only=source.local, **extra)
    except Exception as exc:  # hub errors, missing files, unknown pipelines: one message
        raise EngineError(f"cannot load the diffusers model {source.model!r}: {exc}") from exc
    if source.cpu_offload and source.device.type != "cpu":
        pipe.enable_model_cpu_offload(device=source.device)
    else:
        pipe = pipe.to(source.device)
    pipe.set_progress_bar_config(disable=True)
    _use_sdpa(pipe)
    return pipe


def _use_sdpa(pipe: Any) -> None:
    """PyTorch's fused attention (`AttnProcessor2_0`) on UNets still on another processor."""
    from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0

    unet = getattr(pipe, "unet", None)
    processors = getattr(unet, "attn_processors", {})
    if any(type(p) is AttnProcessor for p in processors.values()):
        unet.set_attn_processor(AttnProcessor2_0())


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
