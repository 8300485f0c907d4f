"""The PostgreSQL claim: several jobs per round trip, fair across API keys, capped per key.

One statement (the rule: `JobStore.claim_batch`; SQLite's statement is in `sqlite.store`,
and `SQLJobStore.queue_position` counts in the same order):

1. `keys`: the API keys that have QUEUED jobs, found by a loose index scan of `jobs_key_queue`
   (one index probe per key, however many jobs each has queued);
2. per key, its PROCESSING jobs (`running`, from `jobs_key_running`) and its first QUEUED jobs
   in priority-then-age order, locked with `FOR UPDATE SKIP LOCKED` so that concurrent claimers
   pass over each other's rows instead of waiting (at most `limit` per key, and no more than the
   per-key cap leaves room for);
3. each candidate's *slot* is `running + its rank within its key`; the batch is the `limit`
   candidates with the highest priority, then the lowest slot, then the oldest;
4. those rows become PROCESSING with this worker's lease.

With a per-key cap, claims run one at a time (`CAPPED_CLAIM_LOCK`, taken in the claiming
transaction before the statement's snapshot), so that two claimers never both see room for the
same last slot of a key. Without a cap, claims run side by side.
"""

from __future__ import annotations

from openremix.jobs.sql.rows import JOB_FIELDS
from openremix.jobs.sql.store import PROCESSING, QUEUED

CAPPED_CLAIM_LOCK = 0x6F72636c61696d21  # advisory lock id: claims under a per-key cap

_RETURNING = ", ".join(f"jobs.{name}" for name in JOB_FIELDS)

CLAIM_BATCH = f"""
WITH RECURSIVE keys AS (
    (SELECT api_key_id FROM jobs WHERE state = '{QUEUED}' ORDER BY api_key_id LIMIT 1)
    UNION ALL
    SELECT (SELECT j.api_key_id FROM jobs AS j WHERE j.state = '{QUEUED}'
            AND j.api_key_id > keys.api_key_id ORDER BY j.api_key_id LIMIT 1)
    FROM keys WHERE keys.api_key_id IS NOT NULL
), load AS MATERIALIZED (
    SELECT k.api_key_id,
           (SELECT count(*) FROM jobs AS r
             WHERE r.state = '{PROCESSING}' AND r.api_key_id = k.api_key_id) AS running
    FROM keys AS k WHERE k.api_key_id IS NOT NULL
), candidates AS (
    SELECT c.request_id, c.priority, c.created_at, c.seq,
           l.running + row_number() OVER (PARTITION BY l.api_key_id
                                          ORDER BY c.priority DESC, c.created_at, c.seq) AS slot
    FROM load AS l CROSS JOIN LATERAL (
        SELECT q.request_id, q.priority, q.created_at, q.seq FROM jobs AS q
        WHERE q.state = '{QUEUED}' AND q.api_key_id = l.api_key_id AND q.expires_at > %(now)s
        ORDER BY q.priority DESC, q.created_at, q.seq
        LIMIT CASE WHEN %(cap)s = 0 THEN %(limit)s
                   ELSE greatest(0, least(%(limit)s, %(cap)s - l.running)) END
        FOR UPDATE SKIP LOCKED
    ) AS c
), chosen AS (
    SELECT request_id, priority, slot, created_at, seq FROM candidates
    ORDER BY priority DESC, slot, created_at, seq LIMIT %(limit)s
)
UPDATE jobs SET state = '{PROCESSING}', lease_owner = %(worker)s, lease_expires_at = %(lease)s,
    attempts = attempts + 1, started_at = COALESCE(started_at, %(now)s),
    progress_step = 0, progress_total = 0
FROM chosen WHERE jobs.request_id = chosen.request_id
RETURNING {_RETURNING}, chosen.slot AS claim_slot, chosen.seq AS claim_seq
"""
"""Parameters: now, lease, worker, limit, cap (0: none). Rows come back in no order; sort them
with `claim_order`."""


def claim_order(row: dict) -> tuple:
    """The order a batch runs in: priority, then slot (fairness), then age."""
    return (-row["priority"], row["claim_slot"], row["created_at"], row["claim_seq"])
