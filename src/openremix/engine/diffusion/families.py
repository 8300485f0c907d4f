"""Model families: which code runs a model, picked from its folder's `model_index.json`.

A family is one module of this package with an `open_family(source, options)` function that
loads the pipeline and returns a `Family`: its own parameter mapping (`plan`) and its own
generation (`generate`). `DiffusersEngine` does the rest for every family (content filter,
grouping, batching, progress, resizing, palettes). Adding a family (say Qwen-Image-Edit) is one
new module and one line in `FAMILY_MODULES`.

| `_class_name` in `model_index.json` | family module | how it remixes |
|---|---|---|
| `Ideogram4Pipeline`, `Ideogram4Img2ImgPipeline` | `ideogram4` | image-to-image on Ideogram 4's own components |
| `FluxKontextPipeline` | `flux_kontext` | instruction editing conditioned on the input, entered at the step `image_weight` picks |
| anything else | `img2img` | `AutoPipelineForImage2Image` (SD 1.x/2.x, SDXL, SD3, FLUX.1, ...) |
"""  # noqa: E501 (a Markdown table for the README)

from __future__ import annotations

import importlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from PIL import Image

from openremix.contract.request import RemixRequest
from openremix.engine.base import EngineError, EngineInput
from openremix.engine.diffusion import mapping as dm
from openremix.engine.diffusion.batching import BatchProgress
from openremix.engine.diffusion.latent_preview import Renderer
from openremix.engine.prompting.template import PromptEnhancer

FAMILY_MODULES: dict[str, str] = {
    "Ideogram4Pipeline": "ideogram4",
    "Ideogram4Img2ImgPipeline": "ideogram4",
    "FluxKontextPipeline": "flux_kontext",
}
"""`_class_name` -> family module; any other class is classic img2img."""
DEFAULT_FAMILY = "img2img"


@dataclass(frozen=True)
class ModelSource:
    """Where and how to load a model (all families)."""

    model: str
    """As configured (reported in results)."""
    path: str
    """A local folder, or the hub id."""
    local: bool
    device: torch.device
    dtype: torch.dtype
    cpu_offload: bool = False
    """Keep the components on the CPU and move each to the GPU while it runs (small cards)."""
    variant: str | None = None
    """The weight files' variant (`fp16`, ...) where a repository carries several."""


@dataclass(frozen=True)
class FamilyOptions:
    """Family-specific settings; a family ignores those it has no use for."""

    ip_adapter: str | None = None
    enhancer: PromptEnhancer | None = None
    """The template/LLM magic-prompt enhancer (families without one of their own)."""
    enhancer_max_tokens: int = 1024
    """Most tokens a model's own prompt enhancer writes (Ideogram 4's structured caption)."""


@dataclass
class Job:
    """One job of a `remix` call, planned."""

    index: int
    item: EngineInput
    plan: dm.RemixPlan
    prompt: str
    """The used prompt (after magic prompt), returned to the user."""
    seed: int


class Family(Protocol):
    """What `DiffusersEngine` needs from a family."""

    name: str
    pipe: Any
    traits: dm.ModelTraits
    reference_warning: str | None
    """The warning for `style_reference_images` when the family transfers only their colours;
    None when the model is conditioned on them (then no colour transfer)."""
    reference_mode: str
    """How `style_reference_images` are used, reported in the result's `style_reference`:
    "ip-adapter", "caption" (described into the prompt) or "color-statistics"."""

    def used_prompt(self, params: RemixRequest, seed: int, image: Image.Image) -> str:
        """The prompt after magic prompt (returned to the user)."""
        ...

    def plan(self, params: RemixRequest, prompt: str, max_side: int | None) -> dm.RemixPlan:
        """The family's parameter mapping; KeyError/ValueError for a request it cannot map."""
        ...

    def batch_extra(self, params: RemixRequest) -> tuple[Any, ...]:
        """What else jobs of one call must share beyond `RemixPlan.sampling_key`."""
        ...

    def generate(self, group: Sequence[Job], progress: BatchProgress,
                 exact: bool) -> list[tuple[Image.Image, bool]]:
        """Images (at the plan's generation size) and safety flags, one per job, in order."""
        ...

    def previewer(self, group: Sequence[Job]) -> Renderer | None:
        """How to picture the group's latents after a step (`latent_preview`), or None where
        the family cannot. Optional: a family without it shows no live previews."""
        ...


def pipeline_class_name(source: ModelSource) -> str:
    """`_class_name` of the model's `model_index.json` (a hub id reads it from the hub)."""
    try:
        if source.local:
            index = json.loads((Path(source.path) / "model_index.json").read_text())
        else:
            from diffusers import DiffusionPipeline

            index = DiffusionPipeline.load_config(source.path)
        return str(index["_class_name"])
    except Exception as exc:  # missing file, bad JSON, hub errors: one sentence
        raise EngineError(f"cannot load the diffusers model {source.model!r}: no readable "
                          f"model_index.json ({exc})") from exc


def family_name(class_name: str) -> str:
    """The family module for a pipeline class."""
    return FAMILY_MODULES.get(class_name, DEFAULT_FAMILY)


def open_model(source: ModelSource, options: FamilyOptions) -> Family:
    """Load the model with the family its `model_index.json` names."""
    module = importlib.import_module(
        f"openremix.engine.diffusion.{family_name(pipeline_class_name(source))}")
    family: Family = module.open_family(source, options)
    return family
