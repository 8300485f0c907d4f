"""Time the Ideogram 4 family against a plain diffusers call on a tiny random Ideogram 4.

    python -m bench.bench_ideogram4 [--threads 1] [--repeats 5]

Builds the tiny Ideogram 4 of `tests.support.tiny_ideogram4` in a temporary folder and prints
one table of warm median seconds: a plain `Ideogram4Pipeline(...)` text-to-image call running
the same number of denoising steps as the remix (same model, 64x64, same prompt padding), the
engine's remix (64x64 output, then 1024x1024 as the API serves it), and a batch of 4 against 4
sequential remixes (byte-exact batches and true batching). The ratios are in the same run.
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
from diffusers import Ideogram4Pipeline
from PIL import Image
from skimage import data

from bench.bench_diffusers import (
    BATCH,
    SIDE,
    engine_cases,
    engine_pair,
    interleaved_medians,
    request,
)
from tests.support.tiny_ideogram4 import build_tiny_ideogram4


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    photo = Image.fromarray(data.astronaut())
    with tempfile.TemporaryDirectory() as tmp:
        folder = build_tiny_ideogram4(Path(tmp) / "ideogram4", seed=0)
        exact, loose = engine_pair(folder, "cpu", args.threads)
        plan = exact._plan(request(0, "64x64"), "a photo of a cat")
        plain_pipe = Ideogram4Pipeline(**exact.pipe.components)
        plain_pipe.set_progress_bar_config(disable=True)

        def plain(n: int) -> object:
            return plain_pipe(
                prompt=["a photo of a cat"] * n, height=SIDE, width=SIDE,
                num_inference_steps=plan.denoise_steps,
                guidance_schedule=list(plan.guidance_schedule[-plan.denoise_steps:]),
                max_sequence_length=plan.text_tokens,
                generator=[torch.Generator("cpu").manual_seed(i) for i in range(n)])

        cases: list[tuple[str, Callable[[], object]]] = [
            ("plain diffusers t2i, same steps, 1 image", lambda: plain(1)),
            (f"plain diffusers t2i, batch of {BATCH}", lambda: plain(BATCH)),
            *engine_cases(exact, loose, photo),
        ]
        rows = interleaved_medians(cases, args.repeats)
    base = rows[0][1]
    width = max(len(label) for label, _ in rows)
    print(f"tiny Ideogram 4, {plan.steps} scheduled steps, {plan.denoise_steps} run "
          f"(DEFAULT, image_weight 50), torch {torch.__version__}, cpu, {args.threads} "
          f"thread(s), median of {args.repeats}\n")
    print(f"| {'case':<{width}} | seconds | per image | vs plain |")
    print(f"|{'-' * (width + 2)}|--------:|----------:|---------:|")
    for label, seconds in rows:
        n = BATCH if ("batch of" in label or "sequential" in label) else 1
        print(f"| {label:<{width}} | {seconds:7.3f} | {seconds / n:9.3f} | "
              f"{seconds / n / base:7.2f}x |")


if __name__ == "__main__":
    main()
