"""Rate limits shared by every API replica: the token buckets of `jobs.rate_limit`, kept in the
`rate_buckets` table (migration 3) instead of each process's memory.

One transaction per request: make sure the key's row exists, lock it (`FOR UPDATE`: requests of
one key through any replica take turns; other keys are not held up), apply `take_token`, write
the bucket back. The table is UNLOGGED: after a crash the buckets start full again.
"""

from __future__ import annotations

import psycopg

from openremix.jobs.rate_limit import Bucket, full_bucket, take_token

_ENSURE = ("INSERT INTO rate_buckets (key_id, tokens, updated_at) VALUES (%s, %s, %s)"
           " ON CONFLICT (key_id) DO NOTHING")
_LOCK = "SELECT tokens, updated_at FROM rate_buckets WHERE key_id = %s FOR UPDATE"
_STORE = "UPDATE rate_buckets SET tokens = %s, updated_at = %s WHERE key_id = %s"


def take_rate_token(conn: psycopg.Connection, key_id: str, per_minute: int, now: float) -> float:
    """Within a transaction: take one of `key_id`'s tokens; 0.0 when taken, else the seconds
    until one is there (nothing taken)."""
    first = full_bucket(per_minute, now)
    conn.execute(_ENSURE, (key_id, first.tokens, first.updated_at))
    row = conn.execute(_LOCK, (key_id,)).fetchone()
    bucket, wait = take_token(Bucket(row["tokens"], row["updated_at"]), per_minute, now)
    conn.execute(_STORE, (bucket.tokens, bucket.updated_at, key_id))
    return wait
