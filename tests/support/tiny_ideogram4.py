"""A tiny random-weight Ideogram 4 pipeline (every component, the real folder layout).

Built the way the real one is laid out on the hub (`model_index.json` naming `Ideogram4Pipeline`,
folders `scheduler`, `vae`, `text_encoder`, `tokenizer`, `transformer`,
`unconditional_transformer`, optionally `prompt_enhancer_head`), saved with `save_pretrained`
and loaded with `from_pretrained` like a downloaded model. No model hub is needed:

- tokenizer: a byte-level BPE trained here on a few sentences, with Qwen's special tokens and a
  Qwen-style chat template (text and image parts), wrapped as `PreTrainedTokenizerFast`;
- text encoder: `Qwen3VLModel`, hidden 16 with 36 decoder layers (the pipeline taps 13 of them,
  up to layer 35) and a small vision tower (patch 8, merge 2: one image token per 16x16 px),
  which the enhancer uses to see the input image and the style references;
- VAE: `AutoencoderKLFlux2` with two blocks of 8 channels and 4 latent channels (latents are
  packed 2x2 into 16-channel tokens; a generation side is a multiple of 4 px);
- two `Ideogram4Transformer2DModel`s (2 layers, 2 heads of 16) reading 13 x 16 text features;
- optionally `Ideogram4PromptEnhancerHead` (the LM head that makes the text encoder generate).

Its images are noise-like; what it proves is the plumbing through the real classes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

TEXT_HIDDEN = 16
TAPPED_LAYERS = 13
"""The pipeline concatenates the hidden states of 13 decoder layers (`llm_features_dim`)."""

_SPECIAL = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
            "<|image_pad|>", "<|video_pad|>")
_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'text' %}{{ part['text'] }}"
    "{% else %}<|vision_start|><|image_pad|><|vision_end|>{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
_CORPUS = (
    "a photo of an astronaut, a cat and a dog in the city street at night",
    "watercolor painting of a forest by the sea under a blue sky, soft light",
    '{"high_level_description":"a red poster","compositional_deconstruction":'
    '{"background":"flat teal","elements":[{"type":"obj","desc":"a cat"}]}}',
    "colour palette: orange, yellow, green, purple, pink, brown, black, white, gray",
    "realistic cinematic photograph, flat vector design, bold stylized illustration, 0123456789",
)


def build_qwen_tokenizer() -> Any:
    """A byte-level BPE tokenizer with Qwen's special tokens and a chat template."""
    from diffusers.pipelines.ideogram4.prompt_enhancer import CAPTION_SYSTEM_MESSAGE
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=3000, special_tokens=list(_SPECIAL),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    # the enhancer's long system message is in the corpus, so it is few tokens (fast tests)
    tok.train_from_iterator([*_CORPUS, CAPTION_SYSTEM_MESSAGE], trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>",
                                   pad_token="<|endoftext|>", model_max_length=8192)
    fast.chat_template = _CHAT_TEMPLATE
    return fast


def _text_encoder(tokenizer: Any) -> Any:
    from transformers import Qwen3VLConfig, Qwen3VLModel

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in _SPECIAL}
    config = Qwen3VLConfig(
        text_config={
            "hidden_size": TEXT_HIDDEN, "intermediate_size": 32, "num_hidden_layers": 36,
            "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 8,
            "vocab_size": len(tokenizer), "max_position_embeddings": 8192,
            "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0,
                                "mrope_section": [2, 1, 1], "mrope_interleaved": True},
        },
        vision_config={
            "depth": 2, "hidden_size": 16, "intermediate_size": 32, "num_heads": 2,
            "out_hidden_size": TEXT_HIDDEN, "patch_size": 8, "spatial_merge_size": 2,
            "temporal_patch_size": 2, "num_position_embeddings": 16,
            "deepstack_visual_indexes": [1],
        },
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
    )
    return Qwen3VLModel(config).eval()


def _vae() -> Any:
    """FLUX.2's VAE, tiny; batch-norm statistics set to non-trivial values, as trained ones are,
    so the normalisation the pipeline applies is exercised."""
    from diffusers import AutoencoderKLFlux2

    vae = AutoencoderKLFlux2(
        block_out_channels=(8, 8), down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4, norm_num_groups=4,
        layers_per_block=1, sample_size=64,
    )
    with torch.no_grad():
        vae.bn.running_mean.copy_(torch.linspace(-0.2, 0.2, vae.bn.num_features))
        vae.bn.running_var.copy_(torch.linspace(0.5, 2.0, vae.bn.num_features))
        latent = vae.config.latent_channels  # a deterministic encoder (see tiny_pipelines._vae)
        vae.quant_conv.weight[latent:] = 0.0
        vae.quant_conv.bias[latent:] = -20.0
    return vae


def _transformer() -> Any:
    from diffusers.models.transformers.transformer_ideogram4 import Ideogram4Transformer2DModel

    return Ideogram4Transformer2DModel(
        in_channels=16, num_layers=2, attention_head_dim=16, num_attention_heads=2,
        intermediate_size=64, adaln_dim=32, llm_features_dim=TAPPED_LAYERS * TEXT_HIDDEN,
        mrope_section=(4, 2, 2),
    )


def build_tiny_ideogram4(folder: str | Path, seed: int = 0, enhancer_head: bool = False) -> Path:
    """Build a tiny random Ideogram 4 pipeline under `folder`; the same `seed`, the same
    weights. `enhancer_head` adds `prompt_enhancer_head` (magic prompt's structured captions)."""
    from diffusers import FlowMatchEulerDiscreteScheduler, Ideogram4Pipeline
    from diffusers.pipelines.ideogram4 import Ideogram4PromptEnhancerHead

    tokenizer = build_qwen_tokenizer()
    torch.manual_seed(seed)
    text_encoder = _text_encoder(tokenizer)
    torch.manual_seed(seed + 1)
    vae = _vae()
    torch.manual_seed(seed + 2)
    transformer = _transformer()
    torch.manual_seed(seed + 3)
    unconditional = _transformer()
    head = None
    if enhancer_head:
        torch.manual_seed(seed + 4)
        head = Ideogram4PromptEnhancerHead(hidden_size=TEXT_HIDDEN, vocab_size=len(tokenizer))
    pipe = Ideogram4Pipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(), vae=vae, text_encoder=text_encoder,
        tokenizer=tokenizer, transformer=transformer, unconditional_transformer=unconditional,
        prompt_enhancer_head=head,
    )
    path = Path(folder)
    path.mkdir(parents=True, exist_ok=True)
    pipe.save_pretrained(path, safe_serialization=True)
    return path
