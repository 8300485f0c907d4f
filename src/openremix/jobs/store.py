"""The `JobStore` protocol: the system of record and the queue, one interface for every backend.

All methods are synchronous and safe to call from several threads and several processes.
The API calls them through `anyio.to_thread` / `run_in_threadpool`; workers call them directly.
"""

from __future__ import annotations

import errno
import sqlite3
from typing import Any, Protocol

from openremix.jobs.model import ApiKey, ExpiredJob, Job, NewJob
from openremix.jobs.outbox import WebhookDelivery


class StoreError(Exception):
    """Base of store errors."""


class InsufficientCredits(StoreError):
    def __init__(self, balance: float, cost: float) -> None:
        super().__init__(f"Insufficient credits: balance {balance:g}, cost {cost:g}")
        self.balance = balance
        self.cost = cost


class IdempotencyConflict(StoreError):
    """The idempotency key was used before with a different request body."""


class UnknownApiKey(StoreError):
    pass


class QueueFull(StoreError):
    """`NewJob.max_queue_depth` jobs already wait: nothing was enqueued or debited."""

    def __init__(self, depth: int, limit: int) -> None:
        super().__init__(
            f"Server overloaded: {depth} requests are waiting (limit {limit}); retry later"
        )
        self.depth = depth
        self.limit = limit


_UNAVAILABLE_SQLITE = ("locked", "busy", "disk", "full", "readonly", "read-only", "i/o",
                       "unable to open")
_UNAVAILABLE_ERRNOS = frozenset({errno.ENOSPC, errno.EROFS, errno.EDQUOT, errno.EIO})


def database_error_types() -> tuple[type[BaseException], ...]:
    """The exception classes a store's database driver raises (sqlite3's, OS errors, and
    psycopg's where it is installed), for callers that map them to answers."""
    types: list[type[BaseException]] = [sqlite3.Error, OSError]
    try:
        import psycopg
        import psycopg_pool
    except ImportError:
        return tuple(types)
    return (*types, psycopg.Error, psycopg_pool.PoolTimeout)


def store_unavailable(exc: BaseException) -> bool:
    """Whether `exc` says the database cannot serve right now, not that a request or the code
    is wrong: SQLite locked past the store's wait, a full or read-only disk, a PostgreSQL
    server that cannot be reached. Callers answer these with 503 and Retry-After."""
    if isinstance(exc, sqlite3.OperationalError):
        return any(word in str(exc).lower() for word in _UNAVAILABLE_SQLITE)
    if isinstance(exc, OSError):
        return exc.errno in _UNAVAILABLE_ERRNOS
    # psycopg is optional: recognise its connection-level errors by name, without importing it.
    names = {cls.__name__ for cls in type(exc).__mro__}
    return type(exc).__module__.startswith("psycopg") and bool(
        names & {"OperationalError", "PoolTimeout"})


class JobStore(Protocol):
    # --- jobs -------------------------------------------------------------------------------
    def enqueue(self, new: NewJob) -> tuple[Job, bool]:
        """Insert a QUEUED job and debit `new.cost` from its key, in one transaction.

        Debits `free_credits` first, then `credits`. Raises `InsufficientCredits` when the two
        together are short. With an `idempotency_key` already used by the same key within the
        retention: returns `(existing_job, False)` when `request_hash` matches, raises
        `IdempotencyConflict` otherwise (nothing debited). Raises `QueueFull` when
        `new.max_queue_depth` unexpired jobs are QUEUED (an idempotent replay still returns its
        job); the count and the insert are one transaction, serialised with other enqueues.
        Returns `(job, True)` when inserted.
        """
        ...

    def get(self, request_id: str) -> Job | None:
        """The job, or None when unknown or expired."""
        ...

    def claim_next(self, worker_id: str, lease_seconds: float) -> Job | None:
        """`claim_batch` with a limit of one: the next job, or None."""
        ...

    def claim_batch(self, worker_id: str, lease_seconds: float, limit: int) -> list[Job]:
        """Atomically take up to `limit` QUEUED jobs for `worker_id`, in one round trip.

        Each becomes PROCESSING with `lease_owner`, `lease_expires_at = now + lease_seconds`,
        `attempts += 1` and `started_at` (first claim only). Two callers never get the same job.

        The order is fair across API keys: higher priority first; within a priority, the job
        whose key has the fewest jobs ahead of it, counting the key's PROCESSING jobs and its
        QUEUED jobs before this one (its *slot*); then the oldest. So a key with 1,000 queued
        jobs takes turns with a key that queues one, instead of running all of its jobs first.
        With the store's `max_running_per_key` (> 0), a key never has more PROCESSING jobs than
        that: its other jobs wait while others' run. Returned in that order.
        """
        ...

    def heartbeat(self, request_id: str, worker_id: str, lease_seconds: float) -> bool:
        """Renew the lease; False if the job is no longer this worker's (lost lease, cancelled)."""
        ...

    def set_progress(self, request_id: str, worker_id: str, step: int, total: int) -> bool:
        """Record step progress; False when the job is no longer this worker's."""
        ...

    def complete(
        self,
        request_id: str,
        worker_id: str,
        result: dict[str, Any],
        refund_fraction: float = 0.0,
    ) -> bool:
        """PROCESSING -> COMPLETED with `result`, only if `worker_id` still holds the lease.
        `refund_fraction` (0..1) of the job's debit goes back to its key in the same
        transaction (images that were blocked); the job's `cost` becomes what was charged."""
        ...

    def complete_many(self, worker_id: str, results: dict[str, dict[str, Any]]) -> set[str]:
        """`complete` for several jobs at once (`results`: request_id -> result): one round trip
        for the jobs that have no webhook. Returns the ids that became COMPLETED; each job is
        guarded on its own (the others still complete when one's lease was lost)."""
        ...

    def fail(
        self,
        request_id: str,
        worker_id: str | None,
        error: str,
        result: dict[str, Any] | None = None,
    ) -> bool:
        """-> FAILED with `error` and refund the job's cost to its key.

        With `worker_id`, only if that worker holds the lease. With None, any non-terminal job
        (used by cancel and deadlines). False when nothing changed.
        """
        ...

    def requeue_expired_leases(self) -> int:
        """PROCESSING jobs whose lease ended go back to QUEUED; those that used all their
        attempts are FAILED ("worker lost N times") and refunded. Returns how many changed."""
        ...

    def expire(self) -> list[ExpiredJob]:
        """Delete jobs whose `expires_at` has passed; return them, so that the caller can
        delete their blobs (outputs, and a preview a killed worker left)."""
        ...

    def queue_depth(self) -> int:
        """QUEUED jobs now."""
        ...

    def check_writable(self) -> None:
        """Return when the store can take a write now; else raise the database's error (SQLite
        locked by another process, PostgreSQL away). Takes and gives back what a write takes
        (SQLite's write lock; a PostgreSQL transaction) and changes nothing: `/readyz` asks it,
        because a read can succeed while no job can be claimed or submitted."""
        ...

    def oldest_queued_age(self) -> float:
        """Seconds the oldest QUEUED job has waited (0 when none waits)."""
        ...

    def queue_position(self, request_id: str) -> int | None:
        """0-based count of QUEUED jobs that run before this one (in `claim_batch`'s order);
        None when not QUEUED."""
        ...

    # --- webhook outbox -----------------------------------------------------------------------
    # A job whose params carry a webhook (`params.WEBHOOK_KEY`) gets one message when it
    # becomes COMPLETED or FAILED (if that event is wanted), written in the same transaction as
    # the state change (`complete`, `fail`, `requeue_expired_leases`), its payload the job's
    # terminal status body. Messages finished longer ago than the retention are deleted by
    # `expire`.
    def claim_due_webhooks(self, lease_seconds: float, limit: int) -> list[WebhookDelivery]:
        """Take up to `limit` messages that are due (`next_attempt_at` passed, not leased), set
        `lease_until = now + lease_seconds`, `attempts += 1` and `first_attempt_at` (first claim
        only). Two callers never hold the same message at once."""
        ...

    def webhook_delivered(self, delivery_id: str) -> bool:
        """Mark a message delivered (never due again). False when unknown or already done."""
        ...

    def webhook_retry(self, delivery_id: str, error: str, next_attempt_at: float | None) -> bool:
        """Record a failed attempt's `error` and release the lease; the message is due again at
        `next_attempt_at`, or never when None (given up, `last_error` kept)."""
        ...

    def get_webhook_deliveries(self, request_id: str) -> list[WebhookDelivery]:
        """The messages of one request (inspection and tests)."""
        ...

    # --- API keys and credits ----------------------------------------------------------------
    def create_api_key(
        self,
        name: str,
        credits: float,
        free_credits: float = 0.0,
        secret: str | None = None,
        scopes: tuple[str, ...] | None = None,
    ) -> tuple[ApiKey, str]:
        """Create a key; returns the record and the secret (shown once). A given `secret` is
        used as is (for keys from configuration); creating an existing secret returns it.
        `scopes` limit the wires and models it may call (`accounts.scope_denial`)."""
        ...

    def set_api_key_scopes(self, key_id: str, scopes: tuple[str, ...] | None) -> ApiKey:
        """Replace a key's scopes (None: everything). Raises `UnknownApiKey`."""
        ...

    def find_api_key(self, secret: str) -> ApiKey | None:
        """The key for this secret (revoked keys included: the caller checks `revoked`)."""
        ...

    def get_api_key(self, key_id: str) -> ApiKey | None:
        """The key record by its public id."""
        ...

    def list_api_keys(self) -> list[ApiKey]: ...

    def revoke_api_key(self, key_id: str) -> bool: ...

    def add_credits(self, key_id: str, amount: float) -> ApiKey:
        """Add (or with a negative amount, remove) paid credits."""
        ...

    def close(self) -> None: ...


class WaitsForWork(Protocol):
    """An optional part of `JobStore`: stores that can push "work arrived" implement it.

    `PostgresJobStore` does (LISTEN/NOTIFY, one idle worker woken per job made claimable);
    `SQLiteJobStore` does not (the processes of one
    machine share no channel; its workers poll with backoff, and `openremix serve` wakes its
    in-process workers directly). Callers test for it: `getattr(store, "wait_for_work", None)`.
    """

    def wait_for_work(self, timeout: float) -> bool:
        """Block until a job may have become claimable (enqueued or re-queued anywhere) or
        `timeout` seconds pass; True when woken. A wake-up is a hint, not a reservation: the
        caller then claims as usual and may find nothing (another worker was faster). A
        notification that arrived since this thread's previous call returns at once."""
        ...


class SharesRateLimits(Protocol):
    """An optional part of `JobStore`: stores shared by several API processes that keep the
    rate-limit buckets (`jobs.rate_limit`), so that the processes enforce one limit together.

    `PostgresJobStore` does; `SQLiteJobStore` does not (one machine: each API process keeps its
    own buckets). Callers test for it: `getattr(store, "take_rate_token", None)`.
    """

    def take_rate_token(self, key_id: str, per_minute: int) -> float:
        """Take a token of `key_id`'s bucket; 0.0 when taken, else the seconds until one is
        there (nothing taken)."""
        ...
