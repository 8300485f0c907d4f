"""Tiny random-weight diffusers img2img pipelines, saved to a folder, for tests and the bench.

No model hub is needed: every component is built from a small config with seeded random
weights, the way diffusers' own fast tests build theirs (`get_dummy_components()` in
`tests/pipelines/stable_diffusion*/test_*img2img.py`), except the tokenizer, which is a
`tokenizers` WordLevel model trained here on a few words and wrapped as a
`PreTrainedTokenizerFast`. The saved folder loads with
`AutoPipelineForImage2Image.from_pretrained(folder, local_files_only=True)` like a real model.

Kinds:
- `sd`: SD 1.x layout (one CLIP text encoder, `UNet2DConditionModel`, `AutoencoderKL`, PNDM);
- `sdxl`: SDXL layout (two text encoders, `addition_embed_type="text_time"`, Euler).

The images they make are noise-like; what they prove is the plumbing: prompts, negatives,
strength, guidance, generators, callbacks and batching run through the real pipeline classes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

TINY_KINDS = ("sd", "sdxl")
"""The layouts `build_tiny_pipeline` can make."""

TINY_WORDS: tuple[str, ...] = (
    "a", "photo", "of", "an", "astronaut", "cat", "dog", "city", "street", "painting", "portrait",
    "landscape", "forest", "sea", "sky", "red", "orange", "yellow", "green", "blue", "purple",
    "pink", "brown", "black", "white", "gray", "bright", "dark", "colorful", "blurry", "noisy",
    "ugly", "watercolor", "oil", "sketch", "flat", "vector", "poster", "graphic", "design",
    "illustration", "realistic", "photographic", "cinematic", "fantasy", "stylized", "bold",
    "soft", "light", "shadow", "color", "palette", "and", "with", "in", "on", "the", "style",
    "detail", "high", "quality",
)
"""The words the tiny tokenizer knows; any other word becomes `<unk>`."""

_BOS, _EOS, _UNK = "<|startoftext|>", "<|endoftext|>", "<unk>"
_MAX_TOKENS = 77


def build_tiny_tokenizer() -> Any:
    """A CLIP-shaped word-level tokenizer (bos ... eos, padded with eos to 77 tokens)."""
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast

    vocab = {token: i for i, token in enumerate((_BOS, _EOS, _UNK, *dict.fromkeys(TINY_WORDS)))}
    tok = Tokenizer(WordLevel(vocab, unk_token=_UNK))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single=f"{_BOS} $A {_EOS}", special_tokens=[(_BOS, vocab[_BOS]), (_EOS, vocab[_EOS])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=_BOS, eos_token=_EOS, pad_token=_EOS, unk_token=_UNK,
        model_max_length=_MAX_TOKENS,
    )


def _text_config(vocab_size: int) -> Any:
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        bos_token_id=0, eos_token_id=1, pad_token_id=1, hidden_size=32, intermediate_size=37,
        layer_norm_eps=1e-05, num_attention_heads=4, num_hidden_layers=2, vocab_size=vocab_size,
        hidden_act="gelu", projection_dim=32, max_position_embeddings=_MAX_TOKENS,
    )


def _vae() -> Any:
    """A random VAE that behaves like a trained one where img2img cares: its encoder is
    deterministic (the log-variance half of `quant_conv` pinned to -20, else the latent sample
    carries noise as large as the signal) and `scaling_factor` gives latents of about unit
    variance (as 0.18215 does for SD's VAE), so `strength` sets how much of the input survives."""
    from diffusers import AutoencoderKL

    vae = AutoencoderKL(
        block_out_channels=[32, 64], in_channels=3, out_channels=3, latent_channels=4,
        down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"],
        up_block_types=["UpDecoderBlock2D", "UpDecoderBlock2D"], sample_size=64,
        force_upcast=False, scaling_factor=4.0,
    )
    with torch.no_grad():
        vae.quant_conv.weight[4:] = 0.0
        vae.quant_conv.bias[4:] = -20.0
    return vae


def _sd_components(seed: int) -> dict[str, Any]:
    from diffusers import PNDMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel

    tokenizer = build_tiny_tokenizer()
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=1, sample_size=32, in_channels=4,
        out_channels=4, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=32,
    )
    scheduler = PNDMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", skip_prk_steps=True,
        steps_offset=1, set_alpha_to_one=False,
    )
    torch.manual_seed(seed + 1)
    vae = _vae()
    torch.manual_seed(seed + 2)
    text_encoder = CLIPTextModel(_text_config(len(tokenizer)))
    return {
        "unet": unet, "scheduler": scheduler, "vae": vae, "text_encoder": text_encoder,
        "tokenizer": tokenizer, "safety_checker": None, "feature_extractor": None,
        "image_encoder": None, "requires_safety_checker": False,
    }


def _sdxl_components(seed: int) -> dict[str, Any]:
    from diffusers import EulerDiscreteScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    tokenizer = build_tiny_tokenizer()
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=1, sample_size=32, in_channels=4,
        out_channels=4, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), attention_head_dim=(2, 4),
        use_linear_projection=True, addition_embed_type="text_time", addition_time_embed_dim=8,
        transformer_layers_per_block=(1, 2),
        projection_class_embeddings_input_dim=80,  # 6 time ids * 8 + 32 pooled text
        cross_attention_dim=64,
    )
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, steps_offset=1, beta_schedule="scaled_linear",
        timestep_spacing="leading",
    )
    torch.manual_seed(seed + 1)
    vae = _vae()
    torch.manual_seed(seed + 2)
    text_encoder = CLIPTextModel(_text_config(len(tokenizer)))
    torch.manual_seed(seed + 3)
    text_encoder_2 = CLIPTextModelWithProjection(_text_config(len(tokenizer)))
    return {
        "unet": unet, "scheduler": scheduler, "vae": vae, "text_encoder": text_encoder,
        "tokenizer": tokenizer, "text_encoder_2": text_encoder_2,
        "tokenizer_2": build_tiny_tokenizer(), "image_encoder": None, "feature_extractor": None,
        "requires_aesthetics_score": False, "force_zeros_for_empty_prompt": True,
    }


def build_tiny_pipeline(folder: str | Path, kind: str = "sd", seed: int = 0) -> Path:
    """Build a tiny random-weight img2img pipeline of `kind` and save it under `folder`.

    The same `seed` gives the same weights. Returns the folder, ready for
    `DiffusersEngine(model=str(folder))`.
    """
    from diffusers import StableDiffusionImg2ImgPipeline, StableDiffusionXLImg2ImgPipeline

    if kind == "sd":
        pipe: Any = StableDiffusionImg2ImgPipeline(**_sd_components(seed))
    elif kind == "sdxl":
        pipe = StableDiffusionXLImg2ImgPipeline(**_sdxl_components(seed))
    else:
        raise ValueError(f"unknown tiny pipeline kind {kind!r}: use one of {', '.join(TINY_KINDS)}")
    path = Path(folder)
    path.mkdir(parents=True, exist_ok=True)
    pipe.save_pretrained(path, safe_serialization=True)
    return path


def build_tiny_ip_adapter(folder: str | Path, pipeline: str | Path, seed: int = 0) -> Path:
    """A tiny random IP-Adapter for the tiny pipeline saved in `pipeline`; returns its file.

    Writes `ip-adapter.safetensors` (image projection + per-cross-attention `to_k_ip`/`to_v_ip`,
    the layout `load_ip_adapter` reads) and `image_encoder/` (a tiny
    `CLIPVisionModelWithProjection`) under `folder`.
    """
    from diffusers import UNet2DConditionModel
    from diffusers.models.attention_processor import IPAdapterAttnProcessor
    from diffusers.models.embeddings import ImageProjection
    from safetensors.torch import save_file
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    unet = UNet2DConditionModel.from_pretrained(Path(pipeline) / "unet")
    config = unet.config
    out, down = Path(folder), list(config.block_out_channels)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    tensors: dict[str, torch.Tensor] = {}
    key_id = 1
    for name in unet.attn_processors:
        if name.endswith("attn1.processor"):
            continue  # self-attention: IP-Adapter adds keys/values to cross-attention only
        block = int(name.split(".")[1]) if not name.startswith("mid_block") else None
        hidden = (down[-1] if block is None
                  else list(reversed(down))[block] if name.startswith("up_blocks") else down[block])
        proc = IPAdapterAttnProcessor(hidden_size=hidden,
                                      cross_attention_dim=config.cross_attention_dim)
        weights = proc.state_dict()
        tensors[f"ip_adapter.{key_id}.to_k_ip.weight"] = weights["to_k_ip.0.weight"]
        tensors[f"ip_adapter.{key_id}.to_v_ip.weight"] = weights["to_v_ip.0.weight"]
        key_id += 2
    projection = ImageProjection(cross_attention_dim=config.cross_attention_dim,
                                 image_embed_dim=32, num_image_text_embeds=4).state_dict()
    tensors["image_proj.proj.weight"] = projection["image_embeds.weight"]
    tensors["image_proj.proj.bias"] = projection["image_embeds.bias"]
    tensors["image_proj.norm.weight"] = projection["norm.weight"]
    tensors["image_proj.norm.bias"] = projection["norm.bias"]
    weight_file = out / "ip-adapter.safetensors"
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(weight_file))
    vision = CLIPVisionConfig(hidden_size=32, intermediate_size=37, num_attention_heads=4,
                              num_hidden_layers=2, image_size=32, patch_size=8, projection_dim=32)
    CLIPVisionModelWithProjection(vision).save_pretrained(out / "image_encoder")
    return weight_file
