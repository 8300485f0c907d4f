"""A tiny random-weight FLUX.1 Kontext pipeline (every component, the real folder layout).

Laid out as the real one is on the hub (`model_index.json` naming `FluxKontextPipeline`, folders
`scheduler`, `vae`, `text_encoder`, `tokenizer`, `text_encoder_2`, `tokenizer_2`, `transformer`),
saved with `save_pretrained` and loaded with `from_pretrained` like a downloaded model, after the
components of diffusers' own FLUX fast tests. No model hub is needed:

- tokenizers: the word-level tokenizer of `tiny_pipelines` (built here) for both CLIP and T5;
- text encoders: `CLIPTextModel` (hidden 32: the pooled projection) and `T5EncoderModel`
  (d_model 32: the joint attention dimension);
- VAE: `AutoencoderKL` with two blocks (a generation side is a multiple of 4 px), FLUX's
  `shift_factor`/`scaling_factor` convention, no quant convs (FLUX's VAE has none);
- `FluxTransformer2DModel`: one double and one single block, 2 heads of 16, guidance embedding
  (as Kontext dev, a guidance-distilled model);
- `FlowMatchEulerDiscreteScheduler` with FLUX's dynamic shifting.

Its images are noise-like; what it proves is the plumbing through the real classes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from tests.support.tiny_pipelines import build_tiny_tokenizer

HIDDEN = 32


def _vae() -> Any:
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        block_out_channels=[32, 64], in_channels=3, out_channels=3, latent_channels=4,
        down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"],
        up_block_types=["UpDecoderBlock2D", "UpDecoderBlock2D"], sample_size=64,
        force_upcast=False, scaling_factor=4.0, shift_factor=0.05, use_quant_conv=False,
        use_post_quant_conv=False,
    )


def _t5(vocab_size: int) -> Any:
    from transformers import T5Config, T5EncoderModel

    return T5EncoderModel(T5Config(
        vocab_size=vocab_size, d_model=HIDDEN, d_kv=8, d_ff=37, num_layers=2, num_heads=4,
        relative_attention_num_buckets=8, decoder_start_token_id=0, pad_token_id=1,
        eos_token_id=1,
    )).eval()


def _clip(vocab_size: int) -> Any:
    from transformers import CLIPTextConfig, CLIPTextModel

    return CLIPTextModel(CLIPTextConfig(
        bos_token_id=0, eos_token_id=1, pad_token_id=1, hidden_size=HIDDEN, intermediate_size=37,
        num_attention_heads=4, num_hidden_layers=2, vocab_size=vocab_size, hidden_act="gelu",
        projection_dim=HIDDEN, max_position_embeddings=77,
    )).eval()


def _transformer() -> Any:
    from diffusers import FluxTransformer2DModel

    return FluxTransformer2DModel(
        patch_size=1, in_channels=16, num_layers=1, num_single_layers=1, attention_head_dim=16,
        num_attention_heads=2, joint_attention_dim=HIDDEN, pooled_projection_dim=HIDDEN,
        guidance_embeds=True, axes_dims_rope=(4, 6, 6),
    )


def build_tiny_flux_kontext(folder: str | Path, seed: int = 0) -> Path:
    """Build a tiny random FLUX.1 Kontext pipeline under `folder`; the same `seed`, the same
    weights."""
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxKontextPipeline

    tokenizer, tokenizer_2 = build_tiny_tokenizer(), build_tiny_tokenizer()
    torch.manual_seed(seed)
    text_encoder = _clip(len(tokenizer))
    torch.manual_seed(seed + 1)
    text_encoder_2 = _t5(len(tokenizer_2))
    torch.manual_seed(seed + 2)
    vae = _vae()
    torch.manual_seed(seed + 3)
    transformer = _transformer()
    scheduler = FlowMatchEulerDiscreteScheduler(
        shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
        base_image_seq_len=256, max_image_seq_len=4096)
    pipe = FluxKontextPipeline(
        scheduler=scheduler, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
        text_encoder_2=text_encoder_2, tokenizer_2=tokenizer_2, transformer=transformer,
    )
    path = Path(folder)
    path.mkdir(parents=True, exist_ok=True)
    pipe.save_pretrained(path, safe_serialization=True)
    return path
