"""Migration 3: the queue at scale (issue 15): fair batch claims, one wake-up per job, shared
rate limits, key scopes.

- **Fair batch claims** (`postgres.claim`): two partial indexes let a claim walk the keys that
  have QUEUED jobs (a loose index scan) and, per key, count its PROCESSING jobs and take its
  first few QUEUED ones.
- **One wake-up per job**: version 1 sent one NOTIFY on a shared channel per enqueue, which woke
  every idle worker to race for the job (the cost of a job grew with the number of idle
  workers). Now an idle worker registers in `job_waiters` (an UNLOGGED table: registrations are
  worth nothing after a crash) with the channel its process LISTENs on, and the trigger of each
  job made claimable takes *one* registration (SKIP LOCKED, so concurrent enqueues take
  different ones) and notifies that worker only. When every worker is busy there is no
  registration, so no NOTIFY at all (and no commit-time lock of the notification queue).
  Registration and wake-up are ordered by `WAKE_LOCK` (see `openremix_register_waiter`) so that
  no job is enqueued unseen between a worker's last look at the queue and its registration.
  Workers of older versions listen on the old shared channel, which is no longer used; they
  still claim every few seconds on their own, until they are upgraded.
- **Shared rate limits**: one token bucket per API key in `rate_buckets`, so that N API
  replicas allow the limit once, not N times (`postgres.rate_limits`).
- **Key scopes**: `api_keys.scopes`, a JSON list of `wire:NAME` / `model:SLUG` (NULL: all).
"""

from __future__ import annotations

WAKE_LOCK = 0x6F7277616B652121  # advisory lock id: orders waiter registration and wake-ups

QUEUE_AT_SCALE = f"""
CREATE INDEX jobs_key_queue ON jobs (api_key_id, priority DESC, created_at, seq)
    WHERE state = 'QUEUED';
CREATE INDEX jobs_key_running ON jobs (api_key_id) WHERE state = 'PROCESSING';

CREATE UNLOGGED TABLE job_waiters (
    waiter  text PRIMARY KEY,
    channel text NOT NULL,
    since   double precision NOT NULL
);

-- Wake up to `n` registered idle workers, each on its own channel: the newest registrations
-- first, so that one a dead process left behind (it costs the wake-up it takes) sinks to the
-- bottom while live workers keep registering anew.
-- The shared WAKE_LOCK (many enqueues hold it at once) is held until the enqueue commits, so a
-- registration (which takes it exclusively) waits for enqueues already past this point.
CREATE FUNCTION openremix_wake_waiters(n integer) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    w record;
BEGIN
    PERFORM pg_advisory_xact_lock_shared({WAKE_LOCK:d});
    FOR w IN DELETE FROM job_waiters WHERE waiter IN (
                 SELECT waiter FROM job_waiters ORDER BY since DESC LIMIT n
                 FOR UPDATE SKIP LOCKED)
             RETURNING channel, waiter LOOP
        PERFORM pg_notify(w.channel, w.waiter);
    END LOOP;
END
$$;

-- Version 1's trigger function, now waking one worker per claimable job.
CREATE OR REPLACE FUNCTION openremix_notify_jobs() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM openremix_wake_waiters(1);
    RETURN NULL;
END
$$;
DROP TRIGGER jobs_notify_insert ON jobs;
CREATE TRIGGER jobs_notify_insert AFTER INSERT ON jobs
    FOR EACH ROW WHEN (NEW.state = 'QUEUED') EXECUTE FUNCTION openremix_notify_jobs();

-- An idle worker registers; returns true (and stays unregistered) when a job is claimable
-- already. Holding WAKE_LOCK exclusively, every enqueue that ran its wake-up before this
-- registration was visible has committed, so the look at the queue below (a new snapshot)
-- sees its job; every later enqueue sees the registration.
CREATE FUNCTION openremix_register_waiter(p_waiter text, p_channel text, p_now double precision)
    RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock({WAKE_LOCK:d});
    IF EXISTS (SELECT 1 FROM jobs WHERE state = 'QUEUED' AND expires_at > p_now) THEN
        DELETE FROM job_waiters WHERE waiter = p_waiter;
        RETURN true;
    END IF;
    INSERT INTO job_waiters (waiter, channel, since) VALUES (p_waiter, p_channel, p_now)
        ON CONFLICT (waiter) DO UPDATE SET channel = EXCLUDED.channel, since = EXCLUDED.since;
    RETURN false;
END
$$;

CREATE UNLOGGED TABLE rate_buckets (
    key_id     text PRIMARY KEY,
    tokens     double precision NOT NULL,
    updated_at double precision NOT NULL
);

ALTER TABLE api_keys ADD COLUMN scopes json;
"""
"""Migration 3 (see the module docstring)."""
