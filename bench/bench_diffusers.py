"""Time DiffusersEngine against plain diffusers pipeline calls on tiny random-weight models.

    python -m bench.bench_diffusers [--threads 1] [--repeats 5] [--device cpu]

Builds tiny SD and SDXL img2img pipelines in a temporary folder, then prints one table:
warm median seconds per image for a plain `pipe(...)` call and for the engine (same model,
steps, strength, guidance, 64 px generation; the engine once with a 64x64 output to show its
own overhead, once with a 1024x1024 output as the API serves it), and a batch of 4 against 4
sequential calls (engine with byte-exact batches, engine with true batching, plain diffusers).
Peak RSS is the process's maximum resident memory at the end (`resource.getrusage`).
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from PIL import Image
from skimage import data

from openremix.contract.request import RemixRequest
from openremix.engine.base import EngineInput
from openremix.engine.diffusion.engine import DiffusersEngine
from tests.support.tiny_pipelines import build_tiny_pipeline

BATCH = 4
SIDE = 64


def interleaved_medians(cases: list[tuple[str, Callable[[], object]]],
                        repeats: int) -> list[tuple[str, float]]:
    """Warm median wall time of each case, timed round-robin so that a busy machine slows
    every case alike rather than whichever ran during the noise."""
    for _, fn in cases:
        fn()
    times: dict[str, list[float]] = {label: [] for label, _ in cases}
    for _ in range(repeats):
        for label, fn in cases:
            start = time.perf_counter()
            fn()
            times[label].append(time.perf_counter() - start)
    return [(label, statistics.median(times[label])) for label, _ in cases]


def request(seed: int, resolution: str) -> RemixRequest:
    """A DEFAULT-speed request; `model_construct` allows the 64x64 overhead measurement."""
    return RemixRequest.model_construct(
        image="x", prompt="a photo of a cat", negative_prompt="blurry", seed=seed,
        resolution=resolution, rendering_speed="DEFAULT", magic_prompt="OFF", image_weight=50,
        style_type="GENERAL", style_codes=[], style_reference_images=[], color_palette=None)


def engine_pair(folder: Path, device: str, threads: int) -> tuple[DiffusersEngine,
                                                                   DiffusersEngine]:
    """The engine as served (exact batches) and with true batching, both loaded."""
    engines = tuple(DiffusersEngine(model=str(folder), device=device, max_side=SIDE,
                                    threads=threads, exact_batches=exact)
                    for exact in (True, False))
    for engine in engines:
        engine.load()
    return engines  # type: ignore[return-value]


def engine_cases(exact: DiffusersEngine, loose: DiffusersEngine,
                 photo: Image.Image) -> list[tuple[str, Callable[[], object]]]:
    """The engine's rows: one image at 64 and 1024 px out, a batch exact and true, sequential."""

    def items(n: int, resolution: str) -> list[EngineInput]:
        return [EngineInput(f"r{i}", request(i, resolution), photo) for i in range(n)]

    def run(engine: DiffusersEngine, jobs: list[EngineInput]) -> object:
        return engine.remix(jobs, lambda step, total: None)

    one64, one1024, four = items(1, "64x64"), items(1, "1024x1024"), items(BATCH, "64x64")
    return [
        ("engine, 1 image, 64x64 out", lambda: run(exact, one64)),
        ("engine, 1 image, 1024x1024 out", lambda: run(exact, one1024)),
        (f"engine exact, batch of {BATCH}", lambda: run(exact, four)),
        (f"engine true batching, batch of {BATCH}", lambda: run(loose, four)),
        (f"engine, {BATCH} sequential", lambda: [run(exact, [job]) for job in four]),
    ]


def bench_family(kind: str, folder: Path, args: argparse.Namespace) -> list[tuple[str, float]]:
    """Rows of (label, seconds) for one tiny model."""
    photo = Image.fromarray(data.astronaut())
    exact, loose = engine_pair(folder, args.device, args.threads)
    plan = exact._plan(request(0, "64x64"), "a photo of a cat")
    pipe = exact.pipe
    small = photo.resize(plan.generation_size, Image.Resampling.LANCZOS)

    def plain(n: int) -> object:
        return pipe(prompt=["a photo of a cat"] * n, negative_prompt=["blurry"] * n,
                    image=[small] * n, strength=plan.strength, guidance_scale=plan.guidance,
                    num_inference_steps=plan.steps,
                    generator=[torch.Generator("cpu").manual_seed(i) for i in range(n)])

    tag = f"{kind} {plan.steps}x{plan.strength}={plan.denoise_steps} steps, cfg {plan.guidance}"
    cases: list[tuple[str, Callable[[], object]]] = [
        ("plain diffusers, 1 image", lambda: plain(1)),
        (f"plain diffusers, batch of {BATCH}", lambda: plain(BATCH)),
        (f"plain diffusers, {BATCH} sequential", lambda: [plain(1) for _ in range(BATCH)]),
        *engine_cases(exact, loose, photo),
    ]
    return [(f"{tag}: {label}", sec) for label, sec in interleaved_medians(cases, args.repeats)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    rows: list[tuple[str, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for kind in ("sd", "sdxl"):
            folder = build_tiny_pipeline(Path(tmp) / kind, kind, seed=0)
            rows += bench_family(kind, folder, args)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if sys.platform == "darwin":  # bytes there, kilobytes on Linux
        peak_mib /= 1024

    width = max(len(label) for label, _ in rows)
    print(f"torch {torch.__version__}, {args.device}, {args.threads} thread(s), "
          f"median of {args.repeats}\n")
    print(f"| {'case':<{width}} | seconds | per image |")
    print(f"|{'-' * (width + 2)}|--------:|----------:|")
    for label, seconds in rows:
        n = BATCH if ("batch of" in label or "sequential" in label) else 1
        print(f"| {label:<{width}} | {seconds:7.3f} | {seconds / n:9.3f} |")
    print(f"\npeak RSS: {peak_mib:.0f} MiB")


if __name__ == "__main__":
    main()
