"""The job record and its state machine.

States: QUEUED -> PROCESSING -> COMPLETED | FAILED. A PROCESSING job whose lease ran out goes
back to QUEUED (its attempt is counted); after `max_attempts` claims it is FAILED instead.
Cancelling (issue 6) fails a job with the error "cancelled". Every store enforces exactly these
transitions; `allowed_transition` is the single statement of them.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Clock = Callable[[], float]
"""Returns the current time as Unix seconds. Stores take one so tests can move time."""


def system_clock() -> float:
    return time.time()


class JobState(str, enum.Enum):
    QUEUED = "QUEUED"
    PROCESSING = "PROCESSING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"

    @property
    def terminal(self) -> bool:
        return self in (JobState.COMPLETED, JobState.FAILED)


_TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    JobState.QUEUED: frozenset({JobState.PROCESSING, JobState.FAILED}),
    JobState.PROCESSING: frozenset({JobState.QUEUED, JobState.COMPLETED, JobState.FAILED}),
    JobState.COMPLETED: frozenset(),
    JobState.FAILED: frozenset(),
}


def allowed_transition(old: JobState, new: JobState) -> bool:
    return new in _TRANSITIONS[old]


@dataclass
class NewJob:
    """What the API hands to `JobStore.enqueue`."""

    request_id: str
    model: str
    api_key_id: str
    params: dict[str, Any]
    """The validated request (contract `RemixRequest.model_dump(mode="json")`), seed filled in."""
    cost: float
    idempotency_key: str | None = None
    request_hash: str | None = None
    """Hash of the canonical body; the same idempotency key with another hash is a conflict."""
    priority: int = 0
    """Higher runs first; equal priority runs oldest first."""
    max_queue_depth: int | None = None
    """Refuse the job (`QueueFull`) when this many jobs already wait; None: no limit. Checked
    inside the enqueue transaction, so concurrent submits never overshoot it."""


@dataclass(frozen=True)
class ExpiredJob:
    """A job the retention sweep deleted: what its blobs are (`JobStore.expire`)."""

    request_id: str
    result: dict[str, Any] | None
    """Its result (the output keys to delete), None when it never finished."""
    ran: bool
    """Whether a worker ever claimed it (one may have left a live preview behind)."""


@dataclass
class Job:
    request_id: str
    model: str
    api_key_id: str
    params: dict[str, Any]
    state: JobState
    cost: float
    created_at: float
    expires_at: float
    attempts: int = 0
    max_attempts: int = 3
    priority: int = 0
    started_at: float | None = None
    finished_at: float | None = None
    lease_owner: str | None = None
    lease_expires_at: float | None = None
    result: dict[str, Any] | None = None
    """Engine outcome on COMPLETED: seed, prompt, resolution, style_type, is_image_safe,
    inference_time, output_key (blob name), content_type, file_size, warnings, engine, ..."""
    error: str | None = None
    progress_step: int = 0
    progress_total: int = 0
    idempotency_key: str | None = None
    request_hash: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def queue_time(self) -> float | None:
        if self.started_at is None:
            return None
        return max(0.0, self.started_at - self.created_at)

    @property
    def total_time(self) -> float | None:
        if self.finished_at is None:
            return None
        return max(0.0, self.finished_at - self.created_at)


@dataclass
class ApiKey:
    """An API key's account. Only a hash of the secret is stored."""

    key_id: str
    """Public, short identifier shown in listings and stored on jobs."""
    key_hash: str
    name: str
    credits: float
    free_credits: float
    created_at: float
    revoked: bool = False
    scopes: tuple[str, ...] | None = None
    """What the key may call: `wire:NAME` and `model:SLUG` entries (`accounts.scope_denial`);
    None: everything."""
