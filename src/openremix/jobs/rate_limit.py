"""The rate-limit rule: a token bucket per API key, as pure arithmetic.

A key may make `per_minute` requests a minute, bursting up to `per_minute` at once: its bucket
holds up to `per_minute` tokens, refills at `per_minute / 60` tokens a second, and each request
takes one. Where the buckets are kept is the caller's choice: in process memory (one API
process: `api.access.RateLimiter`) or in the job store (`PostgresJobStore.take_rate_token`, so
that several API replicas share one limit); both call `take_token`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Bucket:
    tokens: float
    updated_at: float
    """When `tokens` was last computed (seconds, the caller's clock)."""


def full_bucket(per_minute: int, now: float) -> Bucket:
    """A key's bucket the first time it is seen."""
    return Bucket(float(per_minute), now)


def take_token(bucket: Bucket, per_minute: int, now: float) -> tuple[Bucket, float]:
    """Refill `bucket` up to `now` and take one token: (the bucket after, 0.0) when taken,
    else (the refilled bucket, seconds until a token is there)."""
    rate = per_minute / 60.0
    tokens = min(float(per_minute), bucket.tokens + max(0.0, now - bucket.updated_at) * rate)
    if tokens >= 1.0:
        return Bucket(tokens - 1.0, now), 0.0
    return Bucket(tokens, now), (1.0 - tokens) / rate
