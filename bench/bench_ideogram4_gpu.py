"""Time a 1024x1024 Ideogram 4 remix at real size on a GPU, with random bf16 weights.

    python -m bench.bench_ideogram4_gpu                 # compile off: one 10-minute call
    python -m bench.bench_ideogram4_gpu --compile on    # a second call
    python -m bench.bench_ideogram4_gpu --tiny          # a CPU smoke test of this script

Builds the real-size architecture directly on the GPU (no download; the compute is the same as
with the real weights): both `Ideogram4Transformer2DModel`s (34 layers, 18 heads x 256, FFN
12288, 13 x 4096 text features), the 8 B Qwen3-VL text encoder (36 layers, hidden 4096), and
the FLUX.2 VAE, in bf16; the tokenizer is the tests' small BPE (the token count of a prompt
differs from Qwen's, so the table prints the padded text length used). Then it runs the
engine's Ideogram 4 family exactly as a worker does (`DiffusersEngine.remix`), at
TURBO/DEFAULT/QUALITY (image_weight 50), batch 1 and 4, with `torch.compile` of the two
transformers off or on (`--compile`, one run each: together they do not fit one 10-minute
call), and prints each row as it is measured: s/image, images/s, peak GPU memory, and the
fraction of the GPU's bf16 dense peak the denoising loop reaches (transformer FLOPs estimated
from the shapes). Rows whose estimated time (from the seconds per step measured so far) would
pass `--budget-seconds` from the start are not begun and are named at the end.
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


def row_plan(speeds: list[str], batches: list[int]) -> list[tuple[int, str]]:
    """(batch, speed) in the order measured: batch 1 first, the cheapest rows of each first."""
    return [(batch, speed) for batch in batches for speed in speeds]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--speeds", nargs="+", default=["TURBO", "DEFAULT", "QUALITY"])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 4])
    parser.add_argument("--compile", choices=["off", "on"], default="off",
                        help="torch.compile the two transformers (a run of its own: the "
                             "compilation of each batch shape is counted in its warm-up)")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--budget-seconds", type=float, default=450.0,
                        help="start no row whose estimated time would end past this many "
                             "seconds from the start (0: no budget)")
    parser.add_argument("--tiny", action="store_true", help="tiny model on the CPU (smoke test)")
    args = parser.parse_args()
    device = torch.device("cpu" if args.tiny else "cuda")
    side = 64 if args.tiny else 1024
    compiled = args.compile == "on"
    start = time.perf_counter()
    pipe = build_pipeline(args.tiny, device)
    pipe.set_progress_bar_config(disable=True)
    name = "cpu" if args.tiny else torch.cuda.get_device_name()
    peak = next((v for k, v in BF16_PEAK_TFLOPS.items() if k in name), None)
    print(f"{name}: built in {time.perf_counter() - start:.0f} s; torch {torch.__version__}; "
          f"compile {args.compile}; {side}x{side}; median of {args.repeats} after a warm-up "
          f"per batch size\n", flush=True)
    if compiled:
        pipe.transformer.compile()
        pipe.unconditional_transformer.compile()
    photo = Image.new("RGB", (side, side), (120, 90, 60))
    print("| speed | batch | compile | s/image | images/s | peak GiB | bf16 peak share |",
          flush=True)
    print("|---|--:|---|--:|--:|--:|--:|", flush=True)
    step_seconds: dict[int, float] = {}  # batch -> seconds per denoising step, last measured
    warm: set[int] = set()
    skipped: list[str] = []
    engines: dict[int, DiffusersEngine] = {}
    for batch, speed in row_plan(args.speeds, args.batches):
        engine = engines.setdefault(batch, engine_for(pipe, device, exact=batch == 1))
        jobs = [EngineInput(f"r{i}", request(i, f"{side}x{side}").model_copy(
            update={"rendering_speed": speed, "prompt": PROMPT}), photo) for i in range(batch)]
        plan = engine.family.plan(jobs[0].params, PROMPT, None)  # type: ignore[union-attr]
        runs = args.repeats + (batch not in warm)
        per_step = step_seconds.get(batch) or (
            max(step_seconds.values()) * batch if step_seconds else None)
        elapsed = time.perf_counter() - start
        if (args.budget_seconds and per_step is not None
                and elapsed + per_step * plan.denoise_steps * runs > args.budget_seconds):
            skipped.append(f"{speed} batch {batch}")
            continue
        if batch not in warm:  # shapes are the same at every speed: one warm-up (and compile)
            engine.remix(jobs, lambda s, t: None)
            warm.add(batch)
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
        steps = outs[0].details["denoise_steps"]
        step_seconds[batch] = seconds / steps
        flops = transformer_flops(pipe, plan.text_tokens, (side // 16) ** 2, steps, batch)
        memory = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else 0.0
        share = flops / seconds / (peak * 1e12) if peak else float("nan")
        print(f"| {speed} ({steps} steps, text {plan.text_tokens}) | {batch} | {args.compile} | "
              f"{seconds / batch:.2f} | {batch / seconds:.3f} | {memory:.1f} | {share:.1%} |",
              flush=True)
    if skipped:
        print(f"\nnot run (would pass --budget-seconds {args.budget_seconds:.0f}): "
              f"{', '.join(skipped)}", flush=True)
    print(f"\ntotal {time.perf_counter() - start:.0f} s; hosted Ideogram 3 Remix: about 10.5 s "
          "per remix", flush=True)


if __name__ == "__main__":
    main()
