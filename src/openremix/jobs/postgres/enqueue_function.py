"""Migration 2's `openremix_enqueue`: version 1's enqueue on the shared credit rule, plus the
queue limit.

`OPENREMIX_MAX_QUEUE_DEPTH` is checked inside the enqueue, so that concurrent submits cannot all
read "room for one more" and all insert. With a limit, the function takes `QUEUE_LOCK` (an
advisory lock held until its transaction commits) before it counts the QUEUED jobs: enqueues
with a limit run one at a time from the count to the commit, and each one's count (a new
snapshot per statement, READ COMMITTED) sees every job inserted before it. Without a limit
(NULL, the default) no lock is taken and enqueues run side by side as before.

The lock is taken after the key's row lock and the idempotency check, so an idempotent replay
returns its job even while the queue is full, and no lock is ever waited for in the other order.
The version-1 function is dropped, not overloaded: callers that pass 11 arguments (processes
not yet upgraded) get this one with no limit instead of an ambiguous call.
"""

from __future__ import annotations

QUEUE_LOCK = 0x6F72717565756521  # advisory lock id: enqueues that check the queue's depth

ENQUEUE_FUNCTION = f"""
DROP FUNCTION openremix_enqueue(text, text, text, json, double precision, double precision,
                                double precision, integer, integer, text, text);

CREATE FUNCTION openremix_enqueue(
    p_request_id text, p_model text, p_api_key_id text, p_params json,
    p_cost double precision, p_now double precision, p_expires_at double precision,
    p_max_attempts integer, p_priority integer, p_idempotency_key text, p_request_hash text,
    p_max_queue_depth integer DEFAULT NULL,
    OUT outcome text, OUT balance double precision, OUT debit_free double precision,
    OUT debit_paid double precision, OUT prior_id text, OUT queued bigint
) LANGUAGE plpgsql AS $$
DECLARE
    key record;
    prior record;
    debit record;
BEGIN
    SELECT free_credits, credits INTO key FROM api_keys WHERE key_id = p_api_key_id
        FOR UPDATE;
    IF p_idempotency_key IS NOT NULL THEN
        SELECT request_id, request_hash, expires_at INTO prior FROM jobs
            WHERE api_key_id = p_api_key_id AND idempotency_key = p_idempotency_key;
        IF prior.request_id IS NOT NULL THEN
            IF prior.expires_at > p_now THEN
                outcome := CASE WHEN prior.request_hash IS NOT DISTINCT FROM p_request_hash
                                THEN 'existing' ELSE 'conflict' END;
                prior_id := prior.request_id;
                RETURN;
            END IF;
            -- expired, not yet swept: the idempotency key is free again
            UPDATE jobs SET idempotency_key = NULL WHERE request_id = prior.request_id;
        END IF;
    END IF;
    IF key IS NULL THEN
        outcome := 'unknown_key';
        RETURN;
    END IF;
    IF p_max_queue_depth IS NOT NULL THEN
        PERFORM pg_advisory_xact_lock({QUEUE_LOCK:d});
        SELECT count(*) INTO queued FROM jobs WHERE state = 'QUEUED' AND expires_at > p_now;
        IF queued >= p_max_queue_depth THEN
            outcome := 'queue_full';
            RETURN;
        END IF;
    END IF;
    SELECT * INTO debit FROM openremix_split_debit(key.free_credits, key.credits, p_cost);
    balance := debit.balance;
    IF NOT debit.sufficient THEN
        outcome := 'insufficient';
        RETURN;
    END IF;
    debit_free := debit.from_free;
    debit_paid := debit.from_paid;
    UPDATE api_keys SET free_credits = debit.free_left, credits = debit.paid_left
        WHERE key_id = p_api_key_id;
    INSERT INTO jobs (request_id, model, api_key_id, params, state, cost, created_at,
                      expires_at, max_attempts, priority, idempotency_key, request_hash, extra)
        VALUES (p_request_id, p_model, p_api_key_id, p_params, 'QUEUED', p_cost, p_now,
                p_expires_at, p_max_attempts, p_priority, p_idempotency_key, p_request_hash,
                json_build_object('debit_free', debit_free, 'debit_paid', debit_paid));
    outcome := 'created';
END
$$;
"""
"""Migration 2: `openremix_enqueue` with `p_max_queue_depth` (outcome 'queue_full', with the
count in `queued`)."""
