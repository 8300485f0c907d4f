"""What the image safety screen costs, beside the style engine's own remix time (same run).

    python -m bench.bench_image_safety [--threads 2] [--repeats 5]

Prints warm median seconds: the open_nsfw score of one image and of a batch of four, and a
1024x1024 remix by the style engine alone (the baseline) and behind the screen (which scores
the input and the output).
"""

from __future__ import annotations

import argparse
import time

from PIL import Image
from skimage import data

from bench.bench_style_engine import median_seconds, print_seconds
from openremix.contract.request import RemixRequest
from openremix.engine.base import EngineInput
from openremix.engine.image_safety import NsfwClassifier
from openremix.engine.screen import ScreenedEngine
from openremix.engine.style.engine import StyleEngine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    photo = Image.fromarray(data.astronaut()).resize((1024, 1024), Image.Resampling.LANCZOS)
    engine = StyleEngine(threads=args.threads)
    engine.load()
    classifier = NsfwClassifier(threads=args.threads)
    start = time.perf_counter()
    classifier.load()
    print(f"classifier load: {time.perf_counter() - start:.2f} s ({args.threads} threads)\n")
    screened = ScreenedEngine(engine, classifier, threshold=0.8)

    rows: list[tuple[str, float]] = []
    for speed in ("TURBO", "DEFAULT"):
        params = RemixRequest.model_construct(
            image="x", prompt="van gogh starry night", seed=1, resolution="1024x1024",
            rendering_speed=speed, magic_prompt="OFF")
        item = EngineInput("bench", params, photo)
        rows.append((f"baseline: style engine remix 1024² {speed}",
                     median_seconds(lambda item=item: engine.remix([item], lambda s, t: None),
                                    args.repeats)))
        rows.append((f"screened style engine remix 1024² {speed} (input + output)",
                     median_seconds(lambda item=item: screened.remix([item], lambda s, t: None),
                                    args.repeats)))
    rows.append(("open_nsfw score, one 1024² image",
                 median_seconds(lambda: classifier.scores([photo]), args.repeats)))
    rows.append(("open_nsfw score, batch of four 1024² images (per image)",
                 median_seconds(lambda: classifier.scores([photo] * 4), args.repeats) / 4))

    print_seconds(rows, "what")


if __name__ == "__main__":
    main()
