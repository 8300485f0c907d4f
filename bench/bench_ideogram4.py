"""Time the Ideogram 4 family against plain diffusers on a tiny random Ideogram 4.

    python -m bench.bench_ideogram4 [--threads 1] [--repeats 5]

Builds the tiny Ideogram 4 of `tests.support.tiny_ideogram4` in a temporary folder and prints
one table of warm median seconds. The baseline is like for like: plain diffusers components
doing what an image-to-image remix must, at 64x64 on the same model: the pipeline's image
processor and VAE encode the input (a sample drawn with a seeded generator), then a plain
`Ideogram4Pipeline(...)` call runs the same number of denoising steps as the remix (same prompt
padding, the guidance schedule's tail) and decodes. diffusers 0.42.1 has no Ideogram 4
img2img, so its text-to-image call stands in for the loop; the encode alone and the
text-to-image call alone are printed too. Then the engine's remix (64x64 output, then
1024x1024 as the API serves it: the difference is the resize), and a batch of 4 against 4
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

        def encode(n: int) -> object:
            """The input through the pipeline's own image processor and VAE, as img2img does."""
            with torch.inference_mode():
                pixels = plain_pipe.image_processor.preprocess(
                    [photo] * n, height=SIDE, width=SIDE)
                posterior = plain_pipe.vae.encode(pixels).latent_dist
                return posterior.sample(torch.Generator("cpu").manual_seed(0))

        def text_to_image(n: int) -> object:
            return plain_pipe(
                prompt=["a photo of a cat"] * n, height=SIDE, width=SIDE,
                num_inference_steps=plan.denoise_steps,
                guidance_schedule=list(plan.guidance_schedule[-plan.denoise_steps:]),
                max_sequence_length=plan.text_tokens,
                generator=[torch.Generator("cpu").manual_seed(i) for i in range(n)])

        def plain(n: int) -> object:
            return encode(n), text_to_image(n)

        cases: list[tuple[str, Callable[[], object]]] = [
            ("plain diffusers: VAE encode + same steps + decode, 1 image", lambda: plain(1)),
            (f"plain diffusers: encode + steps + decode, batch of {BATCH}",
             lambda: plain(BATCH)),
            ("plain diffusers: VAE encode of the input alone, 1 image", lambda: encode(1)),
            ("plain diffusers: t2i call alone (same steps), 1 image", lambda: text_to_image(1)),
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
