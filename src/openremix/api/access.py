"""Who is calling and whether they may: API-key authentication and per-key rate limits."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from openremix.api.errors import ApiError
from openremix.jobs.model import ApiKey
from openremix.jobs.store import JobStore

MISSING_KEY = "Missing Authorization or x-api-key in header"
INVALID_KEY = "Unauthorized. API key is invalid or may have expired"


def presented_secret(request: Request) -> str | None:
    """The key from `x-api-key` (Segmind's header), `Api-Key` (Ideogram's), or
    `Authorization: Bearer <key>` (OpenAI's; an extension on the other wires)."""
    for header in ("x-api-key", "api-key"):
        key = request.headers.get(header, "").strip()
        if key:
            return key
    auth = request.headers.get("authorization", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


async def authenticate(request: Request, store: JobStore) -> ApiKey:
    secret = presented_secret(request)
    if secret is None:
        raise ApiError(401, MISSING_KEY)
    key = await run_in_threadpool(store.find_api_key, secret)
    if key is None or key.revoked:
        raise ApiError(401, INVALID_KEY)
    request.state.api_key_id = key.key_id
    return key


class RateLimiter:
    """A token bucket per API key: `per_minute` requests, bursting up to the same number.

    Kept in process memory, so with several API replicas each enforces its own share.
    """

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def check(self, key_id: str) -> None:
        """Take one token or raise a 429 `ApiError` with `Retry-After`."""
        if self.per_minute <= 0:
            return
        rate = self.per_minute / 60.0
        with self._lock:
            now = self.clock()
            tokens, last = self._buckets.get(key_id, (float(self.per_minute), now))
            tokens = min(float(self.per_minute), tokens + (now - last) * rate)
            if tokens >= 1.0:
                self._buckets[key_id] = (tokens - 1.0, now)
                return
            self._buckets[key_id] = (tokens, now)
            wait = (1.0 - tokens) / rate
        retry_after = max(1, math.ceil(wait))
        reset_at = datetime.fromtimestamp(time.time() + wait, tz=timezone.utc)
        raise ApiError(
            429,
            f"Rate limit exceeded: {self.per_minute} requests per minute; "
            f"retry after {retry_after} s",
            headers={
                "Retry-After": str(retry_after),
                "x-rate-limit-reset-at-utc": reset_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            },
        )
