"""Who is calling and whether they may: API-key authentication, key scopes (403) and per-key
rate limits (429)."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from openremix.api.errors import ApiError
from openremix.jobs.accounts import ScopeDenied, scope_denial
from openremix.jobs.model import ApiKey
from openremix.jobs.rate_limit import Bucket, full_bucket, take_token
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


def require_scope(key: ApiKey, *, wire: str, model: str) -> None:
    """Refuse (`ScopeDenied`, answered 403 by `api.errors`) a call that `key`'s scopes do not
    allow: `model` (its slug) on `wire` (one of `accounts.WIRES`). Every submitting route calls
    it after authenticating and before anything is stored or charged."""
    denial = scope_denial(key.scopes, wire=wire, model=model)
    if denial is not None:
        raise ScopeDenied(denial)


class RateLimiter:
    """A token bucket per API key (`jobs.rate_limit`): `per_minute` requests, bursting up to
    the same number.

    With a store that shares rate limits (`SharesRateLimits`: PostgreSQL, where several API
    replicas may serve), the buckets live in the store and the limit holds for all replicas
    together; otherwise in this process's memory.
    """

    def __init__(
        self,
        per_minute: int,
        clock: Callable[[], float] = time.monotonic,
        store: JobStore | None = None,
    ) -> None:
        self.per_minute = per_minute
        self.clock = clock
        self._shared = getattr(store, "take_rate_token", None)  # jobs.store.SharesRateLimits
        self._buckets: dict[str, Bucket] = {}
        self._lock = threading.Lock()

    async def take(self, key_id: str) -> None:
        """`check` from the event loop (a shared bucket is a database call)."""
        if self.per_minute <= 0:
            return
        if self._shared is None:
            self.check(key_id)
        else:
            await run_in_threadpool(self.check, key_id)

    def check(self, key_id: str) -> None:
        """Take one token or raise a 429 `ApiError` with `Retry-After`. Blocks on the store
        when the buckets are shared: from async code, `await take(...)`."""
        if self.per_minute <= 0:
            return
        if self._shared is not None:
            wait = self._shared(key_id, self.per_minute)
        else:
            with self._lock:
                now = self.clock()
                bucket = self._buckets.get(key_id) or full_bucket(self.per_minute, now)
                self._buckets[key_id], wait = take_token(bucket, self.per_minute, now)
        if wait <= 0:
            return
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
