"""Sync latency of a 1024x1024 remix through `openremix serve` and the real segmind SDK.

Baseline (same run): the StyleEngine's own `remix` call in this process on the same input, so
the ratio is what the service around the engine (HTTP, queue, decode, encode, storage) costs.

    .venv/bin/python -m bench.bench_sync_latency [--runs 5]
"""

from __future__ import annotations

import argparse
import base64
import io
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import httpx
from PIL import Image
from segmind import SegmindClient
from skimage import data

from openremix.contract.request import parse_remix_request
from openremix.engine.base import EngineInput
from openremix.engine.style.engine import StyleEngine

KEY = "or_bench_key_0001"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def photo_uri() -> str:
    buffer = io.BytesIO()
    Image.fromarray(data.coffee()).save(buffer, "JPEG", quality=92)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


def engine_only(body: dict, runs: int) -> float:
    engine = StyleEngine()
    engine.load()
    request, _ = parse_remix_request(body)
    image = Image.open(io.BytesIO(base64.b64decode(body["image"].split(",", 1)[1]))).convert("RGB")
    times = []
    for _ in range(runs + 1):
        start = time.perf_counter()
        engine.remix([EngineInput("bench", request, image)], lambda step, total: None)
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    uri = photo_uri()
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "OPENREMIX_API_KEYS": KEY, "OPENREMIX_DATA_DIR": tmp,
               "OPENREMIX_PORT": str(port), "OPENREMIX_RATE_LIMIT_PER_MINUTE": "0"}
        server = subprocess.Popen([sys.executable, "-m", "openremix.cli", "serve"], env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            base = f"http://127.0.0.1:{port}"
            for _ in range(200):
                try:
                    if httpx.get(f"{base}/readyz").status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.1)
            client = SegmindClient(api_key=KEY, base_url=f"{base}/v1")
            rows = []
            for speed in ("TURBO", "DEFAULT", "QUALITY"):
                body = {"image": uri, "prompt": "painted like van gogh's starry night",
                        "seed": 7, "rendering_speed": speed, "magic_prompt": "OFF"}
                times = []
                for _ in range(args.runs + 1):
                    start = time.perf_counter()
                    client.run_sync("ideogram-3-remix", **body)
                    times.append(time.perf_counter() - start)
                rows.append((speed, engine_only(body, args.runs), statistics.median(times[1:])))
        finally:
            server.terminate()
            server.wait(30)
    print(f"{'1024x1024':10} {'engine only (s)':>16} {'sync via SDK (s)':>17} {'x baseline':>11}")
    for speed, base_s, e2e in rows:
        print(f"{speed:10} {base_s:16.3f} {e2e:17.3f} {e2e / base_s:11.2f}")


if __name__ == "__main__":
    main()
