"""Ideogram 4's prompt enhancer with eyes: Qwen3-VL's vision tower shown the input image.

The enhancer (`prompt_enhancer_head` grafted onto the Qwen3-VL text encoder) rewrites a prompt
into Ideogram 4's structured JSON caption. diffusers 0.42.1 feeds it text only, so for a remix
the caption invents a new scene. Where the text encoder carries its vision tower (`visual`), this
module puts the centre-cropped input image into the same chat (Qwen3-VL's image tokens, the
patches through the vision tower), asking for a caption that keeps what the prompt does not
change. The same path describes the style of `style_reference_images` in a phrase woven into the
caption. Sampling is seeded (a forked RNG, as diffusers' `generate_captions` does), so a job's
caption is a function of its image, prompt and seed.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from PIL import Image

from openremix.media.images import center_crop_resize

VISION_TOKENS = 256
"""Most merged image tokens per picture (16x16 for a square): enough for layout and colours."""
KEEP_INSTRUCTION = (
    "The image above is the picture being remixed. Write the caption of the remixed picture: "
    "keep its subject, composition, colours and medium wherever the user idea does not change "
    "them, and apply the changes the idea asks for."
)
STYLE_INSTRUCTION = (
    "Describe the visual style these reference images share (medium, technique, colour palette, "
    "lighting, texture) in one short phrase of at most 25 words. Do not describe their subjects."
)
STYLE_MAX_TOKENS = 48


def has_vision(pipe: Any) -> bool:
    """True when the enhancer head is loaded and the text encoder has Qwen3-VL's vision tower."""
    encoder = getattr(pipe, "text_encoder", None)
    return (getattr(pipe, "prompt_enhancer_head", None) is not None
            and getattr(encoder, "visual", None) is not None)


def vision_size(size: tuple[int, int], factor: int, tokens: int = VISION_TOKENS) -> tuple[int, int]:
    """`size`'s aspect at most `tokens` merged tokens, each side a multiple of `factor` px."""
    width, height = size
    scale = min(1.0, math.sqrt(tokens * factor * factor / (width * height)))
    return (max(factor, int(width * scale) // factor * factor),
            max(factor, int(height * scale) // factor * factor))


def image_inputs(pipe: Any, images: list[Image.Image],
                 size: tuple[int, int] | None = None) -> dict[str, torch.Tensor]:
    """Qwen3-VL's `pixel_values` and `image_grid_thw` for `images`, each centre-cropped to
    `size`'s aspect (its own without one) within the token budget."""
    try:
        from transformers import Qwen2VLImageProcessorPil as Processor
    except ImportError:  # older transformers
        from transformers import Qwen2VLImageProcessor as Processor

    vision = pipe.text_encoder.config.vision_config
    factor = vision.patch_size * vision.spatial_merge_size
    processor = Processor(patch_size=vision.patch_size, merge_size=vision.spatial_merge_size,
                          temporal_patch_size=vision.temporal_patch_size,
                          image_mean=[0.5] * 3, image_std=[0.5] * 3, do_resize=False)
    cropped = [center_crop_resize(image.convert("RGB"),
                                  vision_size(size or image.size, factor)) for image in images]
    out = processor(images=cropped, return_tensors="pt")
    return {"pixel_values": out["pixel_values"], "image_grid_thw": out["image_grid_thw"]}


def _enhancer(pipe: Any) -> Any:
    """The generative Qwen3-VL (shared body, the head's LM head) and, where `outlines` is
    installed, the caption schema's logits processor: built once, on the pipeline, as diffusers'
    `upsample_prompt` does (so both paths share them)."""
    from diffusers.pipelines.ideogram4.prompt_enhancer import (
        build_caption_logits_processor,
        build_prompt_enhancer,
    )
    from diffusers.utils import is_outlines_available

    if getattr(pipe, "_prompt_enhancer", None) is None:
        pipe._prompt_enhancer = build_prompt_enhancer(pipe.text_encoder, pipe.prompt_enhancer_head)
    if getattr(pipe, "_caption_logits_processor", None) is None and is_outlines_available():
        pipe._caption_logits_processor = build_caption_logits_processor(pipe._prompt_enhancer,
                                                                        pipe.tokenizer)
    return pipe._prompt_enhancer


def _chat_ids(pipe: Any, messages: list[dict[str, Any]], grid_thw: torch.Tensor) -> torch.Tensor:
    """The chat's token ids, each image's one `<|image_pad|>` expanded to its merged token count
    (what Qwen3-VL's processor does)."""
    tokenizer = pipe.tokenizer
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    merge = pipe.text_encoder.config.vision_config.spatial_merge_size ** 2
    pad = "<|image_pad|>"
    parts = text.split(pad)
    if len(parts) != len(grid_thw) + 1:
        raise ValueError("the chat template did not place one image token per image")
    counts = [int(thw.prod()) // merge for thw in grid_thw]
    text = parts[0] + "".join(pad * n + rest for n, rest in zip(counts, parts[1:], strict=True))
    return tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"]


def generate(pipe: Any, messages: list[dict[str, Any]], images: dict[str, torch.Tensor],
             seed: int, max_new_tokens: int, temperature: float,
             constrained: bool = False) -> str:
    """Sample the enhancer's answer to `messages` (images included), seeded by `seed`;
    `constrained` uses the caption schema's logits processor where diffusers built one."""
    enhancer = _enhancer(pipe)
    device = pipe._execution_device
    ids = _chat_ids(pipe, messages, images["image_grid_thw"]).to(device)
    kwargs: dict[str, Any] = {
        "input_ids": ids, "attention_mask": torch.ones_like(ids),
        "pixel_values": images["pixel_values"].to(device=device, dtype=enhancer.dtype),
        "image_grid_thw": images["image_grid_thw"].to(device),
        "max_new_tokens": max_new_tokens, "do_sample": temperature > 0,
        "temperature": temperature, "use_cache": True,
        "pad_token_id": pipe.tokenizer.pad_token_id,
    }
    processor = getattr(pipe, "_caption_logits_processor", None) if constrained else None
    if processor is not None:
        processor.reset()
        kwargs["logits_processor"] = [processor]
    devices = [device] if getattr(device, "type", None) == "cuda" else []
    with torch.inference_mode(), torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        generated = enhancer.generate(**kwargs)
    return str(pipe.tokenizer.decode(generated[0, ids.shape[1]:], skip_special_tokens=True)).strip()


def remix_caption(pipe: Any, prompt: str, image: Image.Image, size: tuple[int, int], seed: int,
                  max_new_tokens: int, temperature: float) -> str:
    """The structured caption of the remix of `image` (centre-cropped to `size`) by `prompt`."""
    from diffusers.pipelines.ideogram4.prompt_enhancer import (
        CAPTION_SYSTEM_MESSAGE,
        CAPTION_USER_TEMPLATE,
    )

    width, height = size
    divisor = math.gcd(width, height) or 1
    idea = CAPTION_USER_TEMPLATE.format(aspect_ratio=f"{width // divisor}:{height // divisor}",
                                        original_prompt=prompt)
    messages = [
        {"role": "system", "content": CAPTION_SYSTEM_MESSAGE},
        {"role": "user", "content": [{"type": "image"},
                                     {"type": "text", "text": f"{KEEP_INSTRUCTION}\n{idea}"}]},
    ]
    return generate(pipe, messages, image_inputs(pipe, [image], size), seed, max_new_tokens,
                    temperature, constrained=True)


def describe_style(pipe: Any, references: list[Image.Image], seed: int, temperature: float,
                   max_new_tokens: int = STYLE_MAX_TOKENS) -> str:
    """A short phrase describing the references' shared style (one line, no quotes)."""
    messages = [{"role": "user", "content": [*({"type": "image"} for _ in references),
                                             {"type": "text", "text": STYLE_INSTRUCTION}]}]
    text = generate(pipe, messages, image_inputs(pipe, references), seed, max_new_tokens,
                    temperature)
    return " ".join(text.replace('"', "'").split())
