"""The `JobStore` contract: one suite that every store backend passes.

Every test takes the `store` fixture, parametrised over the backends (SQLite, and PostgreSQL on
the session's throwaway server, a new database per test); a new backend joins by adding its name
to `STORE_BACKENDS` and a factory to `_make_store`. Time is a `FakeClock` the tests move by hand.
Backend-specific tests are at the end (PostgreSQL's own in test_postgres_store.py).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from openremix.jobs.model import ApiKey, ExpiredJob, JobState, NewJob
from openremix.jobs.outbox import encode_payload
from openremix.jobs.params import WEBHOOK_KEY
from openremix.jobs.sql import outbox as sql_outbox
from openremix.jobs.sqlite.schema import MIGRATIONS, SCHEMA_VERSION
from openremix.jobs.sqlite.store import SQLiteJobStore
from openremix.jobs.status_body import terminal_status_body
from openremix.jobs.store import (
    IdempotencyConflict,
    InsufficientCredits,
    JobStore,
    QueueFull,
    UnknownApiKey,
)

RETENTION = 3600.0
MAX_ATTEMPTS = 3
LEASE = 30.0
STORE_BACKENDS = ["sqlite", "postgres"]


class FakeClock:
    """A clock that stands still until `advance` is called."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def _make_store(
    backend: str, request: pytest.FixtureRequest, clock: FakeClock, **options: Any
) -> JobStore:
    """A new, empty store of `backend` (fixtures are only asked for by the backend needing them,
    so the SQLite half of the suite runs where PostgreSQL is not installed)."""
    if backend == "sqlite":
        tmp_path: Path = request.getfixturevalue("tmp_path")
        return SQLiteJobStore(
            tmp_path / "jobs.sqlite3",
            clock=clock,
            retention_seconds=RETENTION,
            max_attempts=MAX_ATTEMPTS,
            **options,
        )
    if backend == "postgres":
        url = request.getfixturevalue("postgres_db")  # skips, saying why, without a server
        from openremix.jobs.postgres.store import PostgresJobStore

        return PostgresJobStore(
            url,
            clock=clock,
            retention_seconds=RETENTION,
            max_attempts=MAX_ATTEMPTS,
            **options,
        )
    raise ValueError(f"unknown store backend {backend!r}")


@pytest.fixture(params=STORE_BACKENDS)
def store(request: pytest.FixtureRequest, clock: FakeClock) -> Iterator[JobStore]:
    made = _make_store(request.param, request, clock)
    yield made
    made.close()


CAP = 2


@pytest.fixture(params=STORE_BACKENDS)
def capped_store(request: pytest.FixtureRequest, clock: FakeClock) -> Iterator[JobStore]:
    """A store whose keys may each have at most `CAP` PROCESSING jobs."""
    made = _make_store(request.param, request, clock, max_running_per_key=CAP)
    yield made
    made.close()


def make_key(store: JobStore, credits: float = 10.0, free_credits: float = 0.0) -> ApiKey:
    key, _secret = store.create_api_key("test", credits=credits, free_credits=free_credits)
    return key


def new_job(key: ApiKey, cost: float = 1.0, **fields: Any) -> NewJob:
    return NewJob(
        request_id=str(uuid.uuid4()),
        model="ideogram-3-remix",
        api_key_id=key.key_id,
        params=fields.pop("params", {"prompt": "a cat", "seed": 7}),
        cost=cost,
        **fields,
    )


def balance(store: JobStore, key: ApiKey) -> tuple[float, float]:
    """(free_credits, credits) of the key now."""
    current = store.get_api_key(key.key_id)
    assert current is not None
    return current.free_credits, current.credits


def enqueue(store: JobStore, key: ApiKey, **fields: Any) -> str:
    job, created = store.enqueue(new_job(key, **fields))
    assert created
    return job.request_id


# --- enqueue and get -------------------------------------------------------------------------
def test_enqueued_job_is_readable_with_every_field(store: JobStore, clock: FakeClock) -> None:
    key = make_key(store)
    new = new_job(key, cost=0.5, priority=2, idempotency_key="k1", request_hash="h1")
    job, created = store.enqueue(new)
    assert created
    got = store.get(new.request_id)
    assert got is not None and got == job
    assert got.state is JobState.QUEUED
    assert got.params == {"prompt": "a cat", "seed": 7}
    assert (got.cost, got.priority, got.attempts, got.max_attempts) == (0.5, 2, 0, MAX_ATTEMPTS)
    assert got.created_at == clock.now
    assert got.expires_at == clock.now + RETENTION
    assert got.started_at is None and got.lease_owner is None and got.result is None


def test_unknown_request_id_reads_as_none(store: JobStore) -> None:
    assert store.get("no-such-request") is None


def test_enqueue_for_unknown_api_key_is_refused(store: JobStore) -> None:
    ghost = ApiKey("key_ghost", "x", "ghost", 10.0, 0.0, 0.0)
    with pytest.raises(UnknownApiKey):
        store.enqueue(new_job(ghost))


# --- claiming ----------------------------------------------------------------------------------
def test_jobs_are_claimed_oldest_first(store: JobStore, clock: FakeClock) -> None:
    key = make_key(store)
    ids = []
    for _ in range(3):
        ids.append(enqueue(store, key))
        clock.advance(1)
    ids += [enqueue(store, key) for _ in range(3)]  # same timestamp: submission order
    claimed = [store.claim_next("w", LEASE) for _ in ids]
    assert [job.request_id for job in claimed if job] == ids
    assert store.claim_next("w", LEASE) is None


def test_higher_priority_is_claimed_first(store: JobStore, clock: FakeClock) -> None:
    key = make_key(store)
    low = enqueue(store, key)
    clock.advance(1)
    high = enqueue(store, key, priority=5)
    mid = enqueue(store, key, priority=1)
    order = [store.claim_next("w", LEASE) for _ in range(3)]
    assert [job.request_id for job in order if job] == [high, mid, low]


def test_claim_takes_a_lease_and_counts_the_attempt(store: JobStore, clock: FakeClock) -> None:
    key = make_key(store)
    request_id = enqueue(store, key)
    clock.advance(2)
    job = store.claim_next("worker-1", LEASE)
    assert job is not None and job.request_id == request_id
    assert job.state is JobState.PROCESSING
    assert (job.lease_owner, job.lease_expires_at) == ("worker-1", clock.now + LEASE)
    assert (job.attempts, job.started_at, job.queue_time) == (1, clock.now, 2.0)
    assert store.get(request_id) == job


def test_empty_queue_claims_nothing(store: JobStore) -> None:
    assert store.claim_next("w", LEASE) is None


def test_two_claims_never_return_the_same_job(store: JobStore) -> None:
    key = make_key(store, credits=1000)
    ids = {enqueue(store, key) for _ in range(200)}
    claims: dict[str, list[str]] = {}

    def claim_all(worker_id: str) -> None:
        mine = claims.setdefault(worker_id, [])
        while (job := store.claim_next(worker_id, LEASE)) is not None:
            mine.append(job.request_id)

    threads = [threading.Thread(target=claim_all, args=(f"w{i}",)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    everything = [request_id for mine in claims.values() for request_id in mine]
    assert len(everything) == len(set(everything)) == 200
    assert set(everything) == ids
    for worker_id, mine in claims.items():
        for request_id in mine:
            job = store.get(request_id)
            assert job is not None and job.lease_owner == worker_id


def test_a_batch_claim_takes_several_jobs_in_claim_order(store: JobStore, clock: FakeClock) -> None:
    key = make_key(store)
    ids = []
    for _ in range(5):
        ids.append(enqueue(store, key))
        clock.advance(1)
    batch = store.claim_batch("w", LEASE, 3)
    assert [job.request_id for job in batch] == ids[:3]
    assert all(job.state is JobState.PROCESSING and job.lease_owner == "w" and job.attempts == 1
               and job.lease_expires_at == clock.now + LEASE for job in batch)
    assert [job.request_id for job in store.claim_batch("w2", LEASE, 10)] == ids[3:]
    assert store.claim_batch("w", LEASE, 10) == []


def test_concurrent_batch_claims_never_share_a_job(store: JobStore) -> None:
    key = make_key(store, credits=1000)
    ids = {enqueue(store, key) for _ in range(200)}
    claims: dict[str, list[str]] = {}

    def claim_all(worker_id: str) -> None:
        mine = claims.setdefault(worker_id, [])
        while batch := store.claim_batch(worker_id, LEASE, 7):
            mine += [job.request_id for job in batch]

    threads = [threading.Thread(target=claim_all, args=(f"w{i}",)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    everything = [request_id for mine in claims.values() for request_id in mine]
    assert len(everything) == len(set(everything)) == 200
    assert set(everything) == ids


def test_a_key_with_a_thousand_queued_jobs_does_not_starve_another_keys_job(
    store: JobStore, clock: FakeClock
) -> None:
    busy, other = make_key(store, credits=2000), make_key(store)
    for _ in range(1000):
        enqueue(store, busy)
    first = store.claim_batch("w", LEASE, 4)  # the busy key's oldest jobs: nobody else waits
    assert {job.api_key_id for job in first} == {busy.key_id}
    clock.advance(1)
    single = enqueue(store, other)
    # behind 996 older jobs, yet the busy key has 4 running and this key none: it goes first
    assert store.queue_position(single) == 0  # what its status says: next
    second = store.claim_batch("w", LEASE, 4)
    assert second[0].request_id == single
    assert [job.api_key_id for job in second[1:]] == [busy.key_id] * 3


def test_keys_take_turns_within_a_priority_but_priority_comes_first(
    store: JobStore, clock: FakeClock
) -> None:
    a, b = make_key(store), make_key(store)
    a_jobs = [enqueue(store, a) for _ in range(3)]
    clock.advance(1)
    b_jobs = [enqueue(store, b) for _ in range(3)]
    urgent = enqueue(store, b, priority=5)
    order = [job.request_id for job in store.claim_batch("w", LEASE, 10)]
    # urgent first (priority); then by slot, the older job first on a tie: a1 (slot 1); a2, b1
    # (slot 2: the urgent job was b's first); a3, b2 (3); b3 (4)
    assert order == [urgent, a_jobs[0], a_jobs[1], b_jobs[0], a_jobs[2], b_jobs[1], b_jobs[2]]


def test_a_key_never_runs_more_than_the_cap(capped_store: JobStore) -> None:
    store = capped_store
    busy, other = make_key(store, credits=100), make_key(store)
    busy_jobs = [enqueue(store, busy) for _ in range(5)]
    other_job = enqueue(store, other)
    batch = store.claim_batch("w", LEASE, 10)
    assert sorted(job.request_id for job in batch) == sorted([*busy_jobs[:CAP], other_job])
    assert store.claim_batch("w", LEASE, 10) == []  # the busy key is at its cap
    assert store.complete(busy_jobs[0], "w", {})
    assert [job.request_id for job in store.claim_batch("w", LEASE, 10)] == [busy_jobs[CAP]]


def test_concurrent_claims_never_overshoot_the_cap(capped_store: JobStore) -> None:
    store = capped_store
    key = make_key(store, credits=100)
    for _ in range(20):
        enqueue(store, key)
    barrier = threading.Barrier(6)
    claimed: list[int] = []

    def claim() -> None:
        barrier.wait(10)
        claimed.append(len(store.claim_batch("w", LEASE, 3)))

    threads = [threading.Thread(target=claim) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(claimed) == CAP


def test_complete_many_finishes_only_the_jobs_this_worker_holds(store: JobStore) -> None:
    key = make_key(store)
    mine = [enqueue(store, key) for _ in range(3)]
    theirs = enqueue(store, key)
    store.claim_batch("me", LEASE, 3)
    store.claim_batch("them", LEASE, 1)
    hooked_id = enqueue(store, key, params=hooked())
    store.claim_batch("me", LEASE, 1)
    results = {request_id: {"output_key": request_id} for request_id in [*mine, hooked_id]}
    done = store.complete_many("me", {**results, theirs: {"output_key": "stolen"}})
    assert done == set(results)
    for request_id in results:
        job = store.get(request_id)
        assert job is not None and job.state is JobState.COMPLETED
        assert job.result == {"output_key": request_id}
    assert store.get(theirs).state is JobState.PROCESSING  # type: ignore[union-attr]
    assert len(store.get_webhook_deliveries(hooked_id)) == 1  # the webhook job kept its message
    assert store.complete_many("me", {}) == set()


# --- leases, progress, finishing -----------------------------------------------------------------
def test_heartbeat_extends_the_lease_only_for_its_owner(store: JobStore, clock: FakeClock) -> None:
    key = make_key(store)
    request_id = enqueue(store, key)
    store.claim_next("owner", LEASE)
    clock.advance(20)
    assert store.heartbeat(request_id, "owner", LEASE)
    job = store.get(request_id)
    assert job is not None and job.lease_expires_at == clock.now + LEASE
    assert not store.heartbeat(request_id, "intruder", LEASE)
    assert not store.heartbeat("no-such-request", "owner", LEASE)
    assert store.complete(request_id, "owner", {"seed": 1})
    assert not store.heartbeat(request_id, "owner", LEASE)


def test_progress_is_recorded_only_for_the_owner(store: JobStore) -> None:
    key = make_key(store)
    request_id = enqueue(store, key)
    assert not store.set_progress(request_id, "owner", 1, 10)  # not claimed yet
    store.claim_next("owner", LEASE)
    assert store.set_progress(request_id, "owner", 3, 10)
    assert not store.set_progress(request_id, "intruder", 9, 10)
    job = store.get(request_id)
    assert job is not None and (job.progress_step, job.progress_total) == (3, 10)


def test_only_the_lease_owner_completes(store: JobStore, clock: FakeClock) -> None:
    key = make_key(store)
    request_id = enqueue(store, key)
    assert not store.complete(request_id, "owner", {"seed": 1})  # still QUEUED
    store.claim_next("owner", LEASE)
    assert not store.complete(request_id, "intruder", {"seed": 2})
    clock.advance(5)
    assert store.complete(request_id, "owner", {"seed": 1})
    job = store.get(request_id)
    assert job is not None and job.state is JobState.COMPLETED
    assert (job.result, job.error, job.finished_at) == ({"seed": 1}, None, clock.now)
    assert job.total_time == 5.0


def test_terminal_states_are_final(store: JobStore) -> None:
    key = make_key(store)
    done = enqueue(store, key)
    store.claim_next("w", LEASE)
    assert store.complete(done, "w", {"seed": 1})
    assert not store.complete(done, "w", {"seed": 2})
    assert not store.fail(done, "w", "late failure")
    assert not store.fail(done, None, "cancelled")

    failed = enqueue(store, key)
    assert store.fail(failed, None, "cancelled")
    assert store.claim_next("w", LEASE) is None  # a FAILED job is never claimed
    assert not store.complete(failed, "w", {"seed": 1})
    assert not store.fail(failed, None, "again")
    job = store.get(failed)
    assert job is not None and (job.state, job.error) == (JobState.FAILED, "cancelled")
    done_job = store.get(done)
    assert done_job is not None and done_job.result == {"seed": 1}


def test_fail_by_a_worker_needs_its_lease(store: JobStore) -> None:
    key = make_key(store)
    request_id = enqueue(store, key)
    store.claim_next("owner", LEASE)
    assert not store.fail(request_id, "intruder", "boom")
    assert store.fail(request_id, "owner", "boom", {"warnings": ["x"]})
    job = store.get(request_id)
    assert job is not None and job.state is JobState.FAILED
    assert (job.error, job.result) == ("boom", {"warnings": ["x"]})


# --- credits -----------------------------------------------------------------------------------
def test_enqueue_debits_free_credits_first(store: JobStore) -> None:
    key = make_key(store, credits=5.0, free_credits=1.0)
    enqueue(store, key, cost=0.4)
    assert balance(store, key) == (0.6, 5.0)
    enqueue(store, key, cost=1.5)
    assert balance(store, key) == (0.0, 4.1)


def test_fail_refunds_each_bucket_exactly_once(store: JobStore) -> None:
    key = make_key(store, credits=5.0, free_credits=1.0)
    mixed = enqueue(store, key, cost=1.5)  # 1.0 free + 0.5 paid
    assert balance(store, key) == (0.0, 4.5)
    store.claim_next("w", LEASE)
    assert store.fail(mixed, "w", "engine error")
    assert balance(store, key) == (1.0, 5.0)
    assert not store.fail(mixed, None, "again")
    assert balance(store, key) == (1.0, 5.0)

    queued = enqueue(store, key, cost=0.3)  # all from free credits
    store.add_credits(key.key_id, 1.0)
    assert store.fail(queued, None, "cancelled")
    assert balance(store, key) == (1.0, 6.0)


def test_completed_job_keeps_its_debit(store: JobStore) -> None:
    key = make_key(store, credits=2.0)
    request_id = enqueue(store, key, cost=1.0)
    store.claim_next("w", LEASE)
    store.complete(request_id, "w", {})
    assert balance(store, key) == (0.0, 1.0)


def test_completing_with_a_refund_fraction_gives_back_paid_credits_first(
    store: JobStore,
) -> None:
    key = make_key(store, credits=5.0, free_credits=1.0)
    request_id = enqueue(store, key, cost=3.0)  # 1.0 free + 2.0 paid: three images
    store.claim_next("w", LEASE)
    assert not store.complete(request_id, "intruder", {}, 1 / 3)
    assert balance(store, key) == (0.0, 3.0)  # nothing given back to another worker's job
    assert store.complete(request_id, "w", {"images": 3}, 1 / 3)  # one image was blocked
    job = store.get(request_id)
    assert job is not None and job.state is JobState.COMPLETED
    assert job.cost == 2.0 and job.result == {"images": 3}
    assert balance(store, key) == (0.0, 4.0)
    assert not store.fail(request_id, None, "late cancel")  # a COMPLETED job keeps the rest
    assert balance(store, key) == (0.0, 4.0)


def test_a_refund_larger_than_the_paid_part_returns_free_credits_too(store: JobStore) -> None:
    key = make_key(store, credits=5.0, free_credits=1.0)
    request_id = enqueue(store, key, cost=1.5)  # 1.0 free + 0.5 paid
    store.claim_next("w", LEASE)
    assert store.complete(request_id, "w", {}, 0.5)
    assert balance(store, key) == (0.25, 5.0)


def test_insufficient_credits_changes_nothing(store: JobStore) -> None:
    key = make_key(store, credits=0.5, free_credits=0.25)
    new = new_job(key, cost=1.0)
    with pytest.raises(InsufficientCredits) as raised:
        store.enqueue(new)
    assert (raised.value.balance, raised.value.cost) == (0.75, 1.0)
    assert str(raised.value) == "Insufficient credits: balance 0.75, cost 1"
    assert balance(store, key) == (0.25, 0.5)
    assert store.get(new.request_id) is None
    assert store.queue_depth() == 0


def test_exact_balance_is_enough(store: JobStore) -> None:
    key = make_key(store, credits=0.2, free_credits=0.1)
    enqueue(store, key, cost=0.3)
    assert balance(store, key) == (0.0, 0.0)


# --- idempotency -------------------------------------------------------------------------------
def test_same_idempotency_key_and_body_returns_the_same_job(store: JobStore) -> None:
    key = make_key(store, credits=10.0)
    first, created = store.enqueue(new_job(key, idempotency_key="abc", request_hash="h"))
    assert created
    again, created_again = store.enqueue(new_job(key, idempotency_key="abc", request_hash="h"))
    assert not created_again
    assert again.request_id == first.request_id
    assert balance(store, key) == (0.0, 9.0)
    assert store.queue_depth() == 1


def test_same_idempotency_key_with_another_body_conflicts(store: JobStore) -> None:
    key = make_key(store, credits=10.0)
    store.enqueue(new_job(key, idempotency_key="abc", request_hash="h1"))
    other = new_job(key, idempotency_key="abc", request_hash="h2")
    with pytest.raises(IdempotencyConflict):
        store.enqueue(other)
    assert balance(store, key) == (0.0, 9.0)
    assert store.get(other.request_id) is None


def test_idempotency_keys_are_per_api_key_and_end_with_retention(
    store: JobStore, clock: FakeClock
) -> None:
    alice, bob = make_key(store), make_key(store)
    a, _ = store.enqueue(new_job(alice, idempotency_key="abc", request_hash="h"))
    b, created = store.enqueue(new_job(bob, idempotency_key="abc", request_hash="other"))
    assert created and b.request_id != a.request_id
    clock.advance(RETENTION + 1)
    later, created = store.enqueue(new_job(alice, idempotency_key="abc", request_hash="new"))
    assert created and later.request_id != a.request_id


# --- the queue limit ---------------------------------------------------------------------------
def test_a_full_queue_refuses_the_job_and_charges_nothing(store: JobStore) -> None:
    key = make_key(store, credits=10.0)
    for _ in range(2):
        enqueue(store, key, max_queue_depth=2)
    refused = new_job(key, max_queue_depth=2)
    with pytest.raises(QueueFull) as raised:
        store.enqueue(refused)
    assert (raised.value.depth, raised.value.limit) == (2, 2)
    assert str(raised.value) == "Server overloaded: 2 requests are waiting (limit 2); retry later"
    assert store.get(refused.request_id) is None
    assert balance(store, key) == (0.0, 8.0)
    assert store.claim_next("w", LEASE) is not None  # a claimed job no longer waits
    enqueue(store, key, max_queue_depth=2)
    enqueue(store, key)  # no limit given: none applies
    assert store.queue_depth() == 3


def test_expired_jobs_do_not_count_against_the_queue_limit(
    store: JobStore, clock: FakeClock
) -> None:
    key = make_key(store, credits=10.0)
    enqueue(store, key, max_queue_depth=1)
    clock.advance(RETENTION + 1)
    enqueue(store, key, max_queue_depth=1)


def test_an_idempotent_replay_returns_its_job_while_the_queue_is_full(store: JobStore) -> None:
    key = make_key(store, credits=10.0)
    first, _ = store.enqueue(new_job(key, idempotency_key="abc", request_hash="h",
                                     max_queue_depth=1))
    again, created = store.enqueue(new_job(key, idempotency_key="abc", request_hash="h",
                                           max_queue_depth=1))
    assert not created and again.request_id == first.request_id
    with pytest.raises(QueueFull):
        store.enqueue(new_job(key, idempotency_key="other", request_hash="h", max_queue_depth=1))
    assert balance(store, key) == (0.0, 9.0)


def test_concurrent_enqueues_never_overshoot_the_queue_limit(store: JobStore) -> None:
    keys = [make_key(store, credits=100.0) for _ in range(4)]  # several keys: no row lock helps
    outcomes: list[str] = []
    start = threading.Barrier(16)

    def submit(key: ApiKey) -> None:
        start.wait()
        for _ in range(5):
            try:
                store.enqueue(new_job(key, max_queue_depth=10))
                outcomes.append("queued")
            except QueueFull:
                outcomes.append("full")

    threads = [threading.Thread(target=submit, args=(keys[i % 4],)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert (outcomes.count("queued"), outcomes.count("full")) == (10, 70)
    assert store.queue_depth() == 10
    assert sum(balance(store, key)[1] for key in keys) == 400.0 - 10


# --- lost workers ------------------------------------------------------------------------------
def test_expired_lease_is_requeued_and_claimable(store: JobStore, clock: FakeClock) -> None:
    key = make_key(store)
    request_id = enqueue(store, key)
    first = store.claim_next("lost", LEASE)
    store.set_progress(request_id, "lost", 4, 10)
    clock.advance(LEASE - 1)
    assert store.requeue_expired_leases() == 0
    clock.advance(2)
    assert store.requeue_expired_leases() == 1
    job = store.get(request_id)
    assert job is not None and job.state is JobState.QUEUED
    assert (job.lease_owner, job.lease_expires_at, job.progress_step) == (None, None, 0)
    assert store.queue_position(request_id) == 0

    second = store.claim_next("rescuer", LEASE)
    assert second is not None and second.request_id == request_id
    assert second.attempts == 2
    assert first is not None and second.started_at == first.started_at
    assert not store.complete(request_id, "lost", {"seed": 1})
    assert store.complete(request_id, "rescuer", {"seed": 2})


def test_heartbeat_keeps_a_job_from_being_requeued(store: JobStore, clock: FakeClock) -> None:
    key = make_key(store)
    request_id = enqueue(store, key)
    store.claim_next("w", LEASE)
    for _ in range(3):
        clock.advance(LEASE - 1)
        assert store.heartbeat(request_id, "w", LEASE)
        assert store.requeue_expired_leases() == 0


def test_job_lost_max_attempts_times_fails_and_is_refunded(
    store: JobStore, clock: FakeClock
) -> None:
    key = make_key(store, credits=3.0, free_credits=0.5)
    request_id = enqueue(store, key, cost=1.0)
    for attempt in range(1, MAX_ATTEMPTS + 1):
        job = store.claim_next(f"lost-{attempt}", LEASE)
        assert job is not None and job.attempts == attempt
        clock.advance(LEASE + 1)
        assert store.requeue_expired_leases() == 1
    job = store.get(request_id)
    assert job is not None and job.state is JobState.FAILED
    assert job.error == f"worker lost while processing ({MAX_ATTEMPTS} attempts); giving up"
    assert job.finished_at == clock.now
    assert balance(store, key) == (0.5, 3.0)
    assert store.claim_next("w", LEASE) is None
    assert not store.fail(request_id, None, "cancelled")
    assert balance(store, key) == (0.5, 3.0)


# --- retention ---------------------------------------------------------------------------------
def test_expired_jobs_vanish_and_expire_returns_their_results(
    store: JobStore, clock: FakeClock
) -> None:
    key = make_key(store)
    done = enqueue(store, key)
    store.claim_next("w", LEASE)
    store.complete(done, "w", {"output_key": "abc.jpg"})
    never_ran = enqueue(store, key)
    clock.advance(RETENTION - 1)
    keeper = enqueue(store, key)
    assert store.expire() == []
    clock.advance(2)
    assert store.get(done) is None  # before the sweep
    assert store.get(never_ran) is None
    assert store.queue_position(never_ran) is None
    assert store.queue_depth() == 1
    claimed = store.claim_next("w", LEASE)
    assert claimed is not None and claimed.request_id == keeper
    expired = sorted(store.expire(), key=lambda job: job.request_id != done)
    assert expired == [ExpiredJob(done, {"output_key": "abc.jpg"}, ran=True),
                       ExpiredJob(never_ran, None, ran=False)]
    assert store.expire() == []
    assert store.get(keeper) is not None


def test_a_job_that_expires_unfinished_is_refunded(store: JobStore, clock: FakeClock) -> None:
    key = make_key(store, credits=3.0)
    done = enqueue(store, key)
    store.claim_next("w", LEASE)
    store.complete(done, "w", {"output_key": "abc.jpg"})
    enqueue(store, key)  # never ran
    assert balance(store, key) == (0.0, 1.0)
    clock.advance(RETENTION + 1)
    store.expire()
    assert balance(store, key) == (0.0, 2.0)  # the completed job stays paid for


# --- queue inspection --------------------------------------------------------------------------
def test_queue_position_counts_the_jobs_that_run_first(store: JobStore, clock: FakeClock) -> None:
    key = make_key(store)
    a = enqueue(store, key)
    clock.advance(1)
    b = enqueue(store, key)
    c = enqueue(store, key)
    assert [store.queue_position(x) for x in (a, b, c)] == [0, 1, 2]
    urgent = enqueue(store, key, priority=1)
    assert [store.queue_position(x) for x in (urgent, a, b, c)] == [0, 1, 2, 3]
    assert store.queue_depth() == 4
    store.claim_next("w", LEASE)
    assert store.queue_position(urgent) is None  # PROCESSING
    assert [store.queue_position(x) for x in (a, b, c)] == [0, 1, 2]
    assert store.queue_position("no-such-request") is None
    assert store.queue_depth() == 3


# --- API keys ----------------------------------------------------------------------------------
def test_created_key_is_found_by_its_secret_only(store: JobStore, clock: FakeClock) -> None:
    key, secret = store.create_api_key("alice", credits=5.0, free_credits=1.0)
    assert secret.startswith("or_") and len(secret) > 40
    assert key.key_id.startswith("key_")
    assert key.key_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert (key.name, key.credits, key.free_credits) == ("alice", 5.0, 1.0)
    assert (key.created_at, key.revoked) == (clock.now, False)
    assert store.find_api_key(secret) == key
    assert store.find_api_key(secret + "x") is None
    assert store.get_api_key(key.key_id) == key
    assert store.get_api_key("key_nope") is None


def test_creating_a_configured_secret_twice_keeps_one_key(store: JobStore) -> None:
    first, secret = store.create_api_key("from-env", credits=100.0, secret="dev-secret")
    assert secret == "dev-secret"
    store.add_credits(first.key_id, -40.0)
    again, secret_again = store.create_api_key("from-env", credits=100.0, secret="dev-secret")
    assert (again.key_id, again.credits, secret_again) == (first.key_id, 60.0, "dev-secret")
    assert len(store.list_api_keys()) == 1


def test_keys_are_listed_and_revoked(store: JobStore, clock: FakeClock) -> None:
    alice = make_key(store)
    clock.advance(1)
    bob, bob_secret = store.create_api_key("bob", credits=1.0)
    assert [k.key_id for k in store.list_api_keys()] == [alice.key_id, bob.key_id]
    assert store.revoke_api_key(bob.key_id)
    assert not store.revoke_api_key("key_nope")
    found = store.find_api_key(bob_secret)
    assert found is not None and found.revoked
    assert [k.revoked for k in store.list_api_keys()] == [False, True]


def test_key_scopes_are_kept_normalised_and_replaced(store: JobStore) -> None:
    key, secret = store.create_api_key("scoped", credits=1.0,
                                       scopes=("Wire:Segmind", "model:ideogram-3-remix"))
    assert key.scopes == ("wire:segmind", "model:ideogram-3-remix")
    assert store.find_api_key(secret) == key
    assert make_key(store).scopes is None
    assert store.set_api_key_scopes(key.key_id, ("wire:openai",)).scopes == ("wire:openai",)
    assert store.set_api_key_scopes(key.key_id, None).scopes is None
    with pytest.raises(ValueError, match="wire:NAME or model:SLUG"):
        store.set_api_key_scopes(key.key_id, ("everything",))
    with pytest.raises(UnknownApiKey):
        store.set_api_key_scopes("key_nope", ("wire:segmind",))


def test_add_credits_adds_and_removes_paid_credits(store: JobStore) -> None:
    key = make_key(store, credits=1.0, free_credits=2.0)
    assert store.add_credits(key.key_id, 0.1).credits == 1.1
    assert store.add_credits(key.key_id, -0.3).credits == 0.8
    assert balance(store, key) == (2.0, 0.8)
    with pytest.raises(UnknownApiKey):
        store.add_credits("key_nope", 1.0)


# --- webhook outbox -------------------------------------------------------------------------------
HOOK_URL = "https://hooks.example.com/remix"


def hooked(events: list[str] | None = None) -> dict[str, Any]:
    """Job params that ask for a webhook."""
    return {"prompt": "a cat", "seed": 7, WEBHOOK_KEY: {
        "url": HOOK_URL, "events": events or ["completed", "failed"],
        "base_url": "http://127.0.0.1:8000"}}


def test_completing_a_job_queues_one_webhook_with_its_status_body(
        store: JobStore, clock: FakeClock) -> None:
    key = make_key(store)
    request_id = enqueue(store, key, params=hooked())
    store.claim_next("w", LEASE)
    assert store.get_webhook_deliveries(request_id) == []
    clock.advance(2)
    assert store.complete(request_id, "w", {"inference_time": 1.5})
    job = store.get(request_id)
    assert job is not None
    [delivery] = store.get_webhook_deliveries(request_id)
    assert delivery.delivery_id.startswith("msg_") and len(delivery.delivery_id) > 20
    assert (delivery.url, delivery.event, delivery.attempts) == (HOOK_URL, "completed", 0)
    assert delivery.created_at == delivery.next_attempt_at == clock.now
    assert json.loads(delivery.payload) == terminal_status_body(job)
    assert delivery.payload == encode_payload(terminal_status_body(job))


def test_jobs_without_a_webhook_or_the_event_queue_nothing(store: JobStore) -> None:
    key = make_key(store)
    plain = enqueue(store, key)
    only_failed = enqueue(store, key, params=hooked(["failed"]))
    for request_id in (plain, only_failed):
        claimed = store.claim_next("w", LEASE)
        assert claimed is not None
        assert store.complete(claimed.request_id, "w", {"inference_time": 1.0})
        assert store.get_webhook_deliveries(request_id) == []


def test_cancel_and_lost_workers_queue_a_failed_webhook(store: JobStore, clock: FakeClock) -> None:
    key = make_key(store)
    cancelled = enqueue(store, key, params=hooked(["failed"]))
    assert store.fail(cancelled, None, "cancelled")
    [delivery] = store.get_webhook_deliveries(cancelled)
    assert delivery.event == "failed"
    assert json.loads(delivery.payload)["error"] == "cancelled"
    lost = enqueue(store, key, params=hooked())
    for _ in range(MAX_ATTEMPTS):
        assert store.claim_next("w", LEASE) is not None
        clock.advance(LEASE + 1)
        store.requeue_expired_leases()
    [delivery] = store.get_webhook_deliveries(lost)
    body = json.loads(delivery.payload)
    assert body["status"] == "FAILED" and "worker lost" in body["error"]
    assert body["metrics"]["total_time"] == round(MAX_ATTEMPTS * (LEASE + 1), 4)


def test_a_refused_finish_queues_nothing(store: JobStore) -> None:
    key = make_key(store)
    request_id = enqueue(store, key, params=hooked())
    store.claim_next("w", LEASE)
    assert not store.complete(request_id, "intruder", {})
    assert store.complete(request_id, "w", {})
    assert not store.fail(request_id, None, "too late")
    assert len(store.get_webhook_deliveries(request_id)) == 1


def test_a_claimed_webhook_is_leased_to_one_dispatcher(store: JobStore, clock: FakeClock) -> None:
    key = make_key(store)
    request_id = enqueue(store, key, params=hooked())
    assert store.claim_due_webhooks(60, 10) == []
    store.fail(request_id, None, "cancelled")
    [first] = store.claim_due_webhooks(60, 10)
    assert (first.attempts, first.first_attempt_at, first.lease_until) == (
        1, clock.now, clock.now + 60)
    assert store.claim_due_webhooks(60, 10) == []
    clock.advance(61)  # the dispatcher died mid-send: the message is taken again
    [again] = store.claim_due_webhooks(60, 10)
    assert again.delivery_id == first.delivery_id
    assert again.attempts == 2 and again.first_attempt_at == first.first_attempt_at


def test_claims_respect_the_limit_and_never_overlap(store: JobStore) -> None:
    key = make_key(store, credits=100)
    for _ in range(5):
        store.fail(enqueue(store, key, params=hooked()), None, "cancelled")
    batches = [store.claim_due_webhooks(60, 2) for _ in range(4)]
    assert [len(b) for b in batches] == [2, 2, 1, 0]
    ids = [d.delivery_id for batch in batches for d in batch]
    assert len(set(ids)) == 5


def test_a_failed_attempt_is_due_again_at_its_retry_time(store: JobStore, clock: FakeClock) -> None:
    key = make_key(store)
    request_id = enqueue(store, key, params=hooked())
    store.fail(request_id, None, "cancelled")
    [delivery] = store.claim_due_webhooks(60, 10)
    assert store.webhook_retry(delivery.delivery_id, "HTTP 500", clock.now + 5)
    assert store.claim_due_webhooks(60, 10) == []
    clock.advance(5)
    [retried] = store.claim_due_webhooks(60, 10)
    assert retried.attempts == 2 and retried.last_error == "HTTP 500"
    assert store.webhook_delivered(retried.delivery_id)
    [done] = store.get_webhook_deliveries(request_id)
    assert (done.delivered_at, done.next_attempt_at, done.last_error) == (clock.now, None, None)
    assert not done.pending
    clock.advance(3600)
    assert store.claim_due_webhooks(60, 10) == []
    assert not store.webhook_retry(done.delivery_id, "late", clock.now)


def test_a_given_up_webhook_keeps_its_last_error(store: JobStore, clock: FakeClock) -> None:
    key = make_key(store)
    request_id = enqueue(store, key, params=hooked())
    store.fail(request_id, None, "cancelled")
    [delivery] = store.claim_due_webhooks(60, 10)
    assert store.webhook_retry(delivery.delivery_id, "HTTP 503", None)
    clock.advance(86400)
    assert store.claim_due_webhooks(60, 10) == []
    [kept] = store.get_webhook_deliveries(request_id)
    assert (kept.last_error, kept.delivered_at, kept.attempts) == ("HTTP 503", None, 1)


def test_finished_webhooks_are_deleted_after_the_retention(
        store: JobStore, clock: FakeClock) -> None:
    key = make_key(store)
    done = enqueue(store, key, params=hooked())
    store.fail(done, None, "cancelled")
    [delivery] = store.claim_due_webhooks(60, 10)
    store.webhook_delivered(delivery.delivery_id)
    clock.advance(RETENTION - 10)
    waiting = enqueue(store, key, params=hooked())
    store.fail(waiting, None, "cancelled")  # created late, never sent: still due
    clock.advance(20)
    store.expire()
    assert store.get_webhook_deliveries(done) == []
    assert len(store.get_webhook_deliveries(waiting)) == 1
    clock.advance(86400)
    store.expire()
    assert store.get_webhook_deliveries(waiting) == []


# --- SQLite specifics ----------------------------------------------------------------------------
def test_sqlite_store_reopens_its_file(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "data" / "jobs.sqlite3"
    first = SQLiteJobStore(path, clock=clock)
    key = make_key(first)
    request_id = enqueue(first, key)
    first.close()
    with pytest.raises(RuntimeError):
        first.get(request_id)
    second = SQLiteJobStore(path, clock=clock)
    assert second.get(request_id) is not None
    second.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_sqlite_store_refuses_a_newer_schema(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite3"
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(RuntimeError, match="newer"):
        SQLiteJobStore(path)


def test_sqlite_store_needs_a_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        SQLiteJobStore(":memory:")


def test_the_webhook_row_is_written_in_the_finishing_transaction(
        tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> None:
    store = SQLiteJobStore(tmp_path / "jobs.sqlite3", clock=clock)
    key = make_key(store)
    request_id = enqueue(store, key, params=hooked())
    store.claim_next("w", LEASE)

    def broken(*args: Any) -> None:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(sql_outbox, "record_webhook", broken)
    with pytest.raises(sqlite3.OperationalError):
        store.complete(request_id, "w", {"inference_time": 1.0})
    job = store.get(request_id)
    assert job is not None and job.state is JobState.PROCESSING  # rolled back together
    monkeypatch.undo()
    assert store.complete(request_id, "w", {"inference_time": 1.0})
    assert len(store.get_webhook_deliveries(request_id)) == 1
    store.close()


def test_a_version_1_database_gains_the_outbox(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as conn:
        conn.executescript(MIGRATIONS[0])
        conn.execute("PRAGMA user_version = 1")
        conn.execute("INSERT INTO api_keys VALUES ('key_old', 'h', 'old', 5, 0, 0, 0)")
        conn.execute(
            "INSERT INTO jobs (request_id, model, api_key_id, params, state, cost, created_at,"
            " expires_at, extra) VALUES ('r-old', 'ideogram-3-remix', 'key_old', ?, 'QUEUED',"
            " 1, ?, ?, '{}')",
            (json.dumps(hooked()), clock.now, clock.now + RETENTION),
        )
    store = SQLiteJobStore(path, clock=clock)
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    old = store.get("r-old")
    assert old is not None and old.state is JobState.QUEUED
    assert store.fail("r-old", None, "cancelled")
    [delivery] = store.get_webhook_deliveries("r-old")
    assert delivery.event == "failed"
    store.close()


def test_oldest_queued_age_reports_the_longest_wait(store: JobStore, clock: FakeClock) -> None:
    assert store.oldest_queued_age() == 0.0
    key = make_key(store)
    first = enqueue(store, key)
    clock.advance(5)
    enqueue(store, key)
    clock.advance(2)
    assert store.oldest_queued_age() == 7.0
    claimed = store.claim_next("w", LEASE)
    assert claimed is not None and claimed.request_id == first
    assert store.oldest_queued_age() == 2.0
