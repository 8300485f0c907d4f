"""Time a 1024x1024 Ideogram 4 remix at real size on a GPU, with random bf16 weights.

    python -m bench.bench_ideogram4_gpu [--speeds TURBO DEFAULT QUALITY] [--compile both]
    python -m bench.bench_ideogram4_gpu --tiny      # a CPU smoke test of this script

Builds the real-size architecture directly on the GPU (no download; the compute is the same as
with the real weights): both `Ideogram4Transformer2DModel`s (34 layers, 18 heads x 256, FFN
12288, 13 x 4096 text features), the 8 B Qwen3-VL text encoder (36 layers, hidden 4096), and
the FLUX.2 VAE, in bf16; the tokenizer is the tests' small BPE (the token count of a prompt
differs from Qwen's, so the table prints the padded text length used). Then it runs the
engine's Ideogram 4 family exactly as a worker does (`DiffusersEngine.remix`), at
TURBO/DEFAULT/QUALITY (image_weight 50), batch 1 and 4, without and with `torch.compile` of
the two transformers, and prints s/image, images/s, peak GPU memory, and the fraction of the
GPU's bf16 dense peak the denoising loop reaches (transformer FLOPs estimated from the shapes).
The hosted API's figure to beat is about 10.5 s per remix.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import torch
from PIL import Image

from bench.bench_diffusers import request
from openremix.engine.base import EngineInput
from openremix.engine.diffusion.engine import DiffusersEngine
from openremix.engine.diffusion.families import FamilyOptions
from openremix.engine.diffusion.ideogram4 import Ideogram4Family

BF16_PEAK_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "4090": 165.0}
"""Dense bf16 tensor-core peaks (no sparsity), by a substring of the device name."""
PROMPT = ("a portrait of a grey cat sitting on a red brick wall at dusk, cinematic photograph, "
          "soft light from a street lamp on the left, detailed fur, shallow depth")


def build_pipeline(tiny: bool, device: torch.device) -> Any:
    """Ideogram4Pipeline with random weights, built in place on `device`."""
    from diffusers import AutoencoderKLFlux2, FlowMatchEulerDiscreteScheduler, Ideogram4Pipeline
    from diffusers.models.transformers.transformer_ideogram4 import Ideogram4Transformer2DModel
    from transformers import Qwen3VLConfig, Qwen3VLModel

    from tests.support import tiny_ideogram4 as t4

    if tiny:
        tokenizer = t4.build_qwen_tokenizer()
        parts = {"text_encoder": t4._text_encoder(tokenizer), "vae": t4._vae(),
                 "transformer": t4._transformer(), "unconditional_transformer": t4._transformer()}
        return Ideogram4Pipeline(scheduler=FlowMatchEulerDiscreteScheduler(), tokenizer=tokenizer,
                                 **parts).to(device)
    tokenizer = t4.build_qwen_tokenizer()
    dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        with torch.device(device):
            text = Qwen3VLModel(Qwen3VLConfig(text_config={
                "hidden_size": 4096, "intermediate_size": 12288, "num_hidden_layers": 36,
                "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 128,
                "vocab_size": 151936, "rope_parameters": {
                    "rope_type": "default", "rope_theta": 5000000.0,
                    "mrope_section": [24, 20, 20], "mrope_interleaved": True}},
                vision_config={"out_hidden_size": 4096})).eval()
            transformers = [Ideogram4Transformer2DModel() for _ in range(2)]
            vae = AutoencoderKLFlux2()
    finally:
        torch.set_default_dtype(dtype)
    return Ideogram4Pipeline(scheduler=FlowMatchEulerDiscreteScheduler(), vae=vae,
                             text_encoder=text, tokenizer=tokenizer, transformer=transformers[0],
                             unconditional_transformer=transformers[1])


def engine_for(pipe: Any, device: torch.device, exact: bool) -> DiffusersEngine:
    """The worker's engine around an already built pipeline (no folder: 55 GB would not fit)."""
    engine = DiffusersEngine(model="random-bf16-ideogram4", device=device.type,
                             exact_batches=exact)
    family = Ideogram4Family(pipe, FamilyOptions())
    engine.family, engine.pipe, engine.traits = family, pipe, family.traits
    engine.device, engine.dtype = device, pipe.transformer.dtype
    return engine


def transformer_flops(pipe: Any, text: int, image_tokens: int, steps: int, batch: int) -> float:
    """2 x parameters x tokens for both transformers, plus attention's two seq^2 products."""
    config = pipe.transformer.config
    params = sum(p.numel() for p in pipe.transformer.parameters())
    hidden = config.attention_head_dim * config.num_attention_heads
    per_step = 0.0
    for seq in (text + image_tokens, image_tokens):  # conditional, unconditional
        per_step += 2 * params * seq + 4 * config.num_layers * seq * seq * hidden
    return per_step * steps * batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--speeds", nargs="+", default=["TURBO", "DEFAULT", "QUALITY"])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 4])
    parser.add_argument("--compile", choices=["off", "on", "both"], default="both")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--tiny", action="store_true", help="tiny model on the CPU (smoke test)")
    args = parser.parse_args()
    device = torch.device("cpu" if args.tiny else "cuda")
    side = 64 if args.tiny else 1024
    start = time.perf_counter()
    pipe = build_pipeline(args.tiny, device)
    pipe.set_progress_bar_config(disable=True)
    name = "cpu" if args.tiny else torch.cuda.get_device_name()
    peak = next((v for k, v in BF16_PEAK_TFLOPS.items() if k in name), None)
    print(f"{name}: built in {time.perf_counter() - start:.0f} s; torch {torch.__version__}\n")
    photo = Image.new("RGB", (side, side), (120, 90, 60))
    rows = []
    for compiled in ([False, True] if args.compile == "both" else [args.compile == "on"]):
        if compiled:
            pipe.transformer.compile()
            pipe.unconditional_transformer.compile()
        for batch in args.batches:
            engine = engine_for(pipe, device, exact=batch == 1)
            for speed in args.speeds:
                jobs = [EngineInput(f"r{i}", request(i, f"{side}x{side}").model_copy(
                    update={"rendering_speed": speed, "prompt": PROMPT}), photo)
                    for i in range(batch)]
                engine.remix(jobs, lambda s, t: None)  # warm-up (and compilation)
                if device.type == "cuda":
                    torch.cuda.synchronize()
                    torch.cuda.reset_peak_memory_stats()
                times = []
                for _ in range(args.repeats):
                    t0 = time.perf_counter()
                    outs = engine.remix(jobs, lambda s, t: None)
                    if device.type == "cuda":
                        torch.cuda.synchronize()
                    times.append(time.perf_counter() - t0)
                seconds = statistics.median(times)
                details = outs[0].details
                plan_steps, text = details["denoise_steps"], engine.family.plan(  # type: ignore[union-attr]
                    jobs[0].params, PROMPT, None).text_tokens
                flops = transformer_flops(pipe, text, (side // 16) ** 2, plan_steps, batch)
                memory = (torch.cuda.max_memory_allocated() / 2**30
                          if device.type == "cuda" else 0.0)
                share = flops / seconds / (peak * 1e12) if peak else float("nan")
                rows.append((f"{speed} ({plan_steps} steps, text {text})", batch, compiled,
                             seconds / batch, batch / seconds, memory, share))
    print("| speed | batch | compile | s/image | images/s | peak GiB | bf16 peak share |")
    print("|---|--:|---|--:|--:|--:|--:|")
    for label, batch, compiled, per_image, rate, memory, share in rows:
        print(f"| {label} | {batch} | {'on' if compiled else 'off'} | {per_image:.2f} | "
              f"{rate:.3f} | {memory:.1f} | {share:.1%} |")
    print("\nhosted Ideogram 3 Remix: about 10.5 s per remix")


if __name__ == "__main__":
    main()
