"""Bounded loopback load: concurrent clients submit, poll and fetch through `openremix serve`.

Phase 1 (no rate limit): N submits from C concurrent clients; submit latency percentiles, and
every accepted job must reach COMPLETED (nothing lost). Phase 2 (rate limit on): the limiter
answers 429 with Retry-After cleanly and every accepted job still completes.
Baseline (same run): GET /healthz latency under the same concurrency (the cost of HTTP alone).
The engine is a resize stand-in (tests/support/noop_engine.py) so the API and queue are what
is measured.

    .venv/bin/python -m bench.bench_load [--requests 500 --concurrency 50]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from PIL import Image
from skimage import data

KEY = "or_load_key_0001"
MODEL = "ideogram-3-remix"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(tmp: str, rate_limit: int) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "OPENREMIX_API_KEYS": KEY, "OPENREMIX_DATA_DIR": tmp,
           "OPENREMIX_PORT": str(port), "OPENREMIX_RATE_LIMIT_PER_MINUTE": str(rate_limit),
           "OPENREMIX_DEFAULT_CREDITS": "1000000", "OPENREMIX_LOG_LEVEL": "warning",
           "OPENREMIX_ENGINE": "tests.support.noop_engine:ResizeEngine",
           # the API and queue are measured here, not the image safety screen (its own bench)
           "OPENREMIX_IMAGE_SAFETY": "0",
           "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen([sys.executable, "-m", "openremix.cli", "serve"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if httpx.get(f"{base}/readyz").status_code == 200:
                return proc, base
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError("server did not start")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def run_phase(base: str, total: int, concurrency: int, image: str) -> dict:
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(headers={"x-api-key": KEY}, limits=limits, timeout=60) as http:
        queue: asyncio.Queue[int] = asyncio.Queue()
        for i in range(total):
            queue.put_nowait(i)
        submit_times: list[float] = []
        health_times: list[float] = []
        accepted: list[str] = []
        limited: list[httpx.Response] = []

        async def client() -> None:
            while not queue.empty():
                i = queue.get_nowait()
                start = time.perf_counter()
                answer = await http.post(f"{base}/v2/{MODEL}", json={
                    "image": image, "prompt": "load", "seed": i, "aspect_ratio": "1x1"})
                submit_times.append(time.perf_counter() - start)
                if answer.status_code == 200:
                    accepted.append(answer.json()["request_id"])
                elif answer.status_code == 429:
                    limited.append(answer)
                else:
                    raise AssertionError(f"unexpected {answer.status_code}: {answer.text}")
                start = time.perf_counter()
                await http.get(f"{base}/healthz")
                health_times.append(time.perf_counter() - start)

        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        submit_wall = time.perf_counter() - started
        pending = set(accepted)
        deadline = time.monotonic() + 300
        while pending and time.monotonic() < deadline:
            for request_id in list(pending):
                status = (await http.get(f"{base}/v2/requests/{request_id}/status")).json()
                if status["status"] == "COMPLETED":
                    pending.discard(request_id)
                elif status["status"] == "FAILED":
                    raise AssertionError(f"{request_id} failed: {status}")
            await asyncio.sleep(0.2)
        drained = time.perf_counter() - started
    clean_429 = all(r.headers.get("retry-after") and r.json().get("error") for r in limited)
    return {"submit": submit_times, "health": health_times, "accepted": len(accepted),
            "limited": len(limited), "lost": len(pending), "clean_429": clean_429,
            "submit_wall": submit_wall, "drained": drained}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=50)
    args = parser.parse_args()
    buffer = io.BytesIO()
    Image.fromarray(data.astronaut()).resize((256, 256)).save(buffer, "JPEG")
    image = "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()
    rows = []
    for name, limit, count in (("no rate limit", 0, args.requests),
                               ("rate limit 120/min", 120, min(args.requests, 200))):
        with tempfile.TemporaryDirectory() as tmp:
            proc, base = start_server(tmp, limit)
            try:
                rows.append((name, count, asyncio.run(
                    run_phase(base, count, args.concurrency, image))))
            finally:
                proc.terminate()
                proc.wait(30)
    print(f"{args.concurrency} concurrent clients, loopback, resize engine")
    print(f"{'phase':20} {'sent':>5} {'200':>5} {'429':>5} {'lost':>5} {'p50 ms':>8} "
          f"{'p95 ms':>8} {'p99 ms':>8} {'healthz p50':>12} {'x baseline':>11} {'jobs/s':>7}")
    for name, count, r in rows:
        base_p50 = statistics.median(r["health"]) * 1000
        p50 = pct(r["submit"], 0.5)
        print(f"{name:20} {count:5} {r['accepted']:5} {r['limited']:5} {r['lost']:5} "
              f"{p50:8.1f} {pct(r['submit'], 0.95):8.1f} {pct(r['submit'], 0.99):8.1f} "
              f"{base_p50:12.1f} {p50 / base_p50:11.1f} {r['accepted'] / r['drained']:7.1f}")
        assert r["lost"] == 0 and r["clean_429"]


if __name__ == "__main__":
    main()
