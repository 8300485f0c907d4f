"""What the routes share: settings, the store, output storage, the image checker, the limiter."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from fastapi import Request

from openremix.api.access import RateLimiter
from openremix.api.responses import Urls
from openremix.config import Settings
from openremix.jobs.store import JobStore
from openremix.media.images import ImageLoader
from openremix.media.storage import BlobStorage


@dataclass
class AppState:
    settings: Settings
    store: JobStore
    storage: BlobStorage
    loader: ImageLoader
    limiter: RateLimiter
    on_enqueue: Callable[[], None] = field(default=lambda: None)
    """Called after a job is enqueued (wakes an in-process worker at once)."""
    readiness: Callable[[], str | None] = field(default=lambda: None)
    """None when the workers this process runs are ready, else the reason they are not."""
    load_error: Callable[[], str | None] = field(default=lambda: None)
    """Why no worker of this process can ever run a job (its model failed to load), or None.
    Submits are then refused (503) instead of queueing jobs nobody will take."""
    draining_since: float | None = None
    """When this process began to shut down (monotonic), else None. From then on, open event
    streams end (clients resume on another replica with Last-Event-ID) and sync calls still
    waiting after `DRAIN_WAIT_SECONDS` answer 503 with their poll URL, instead of holding the
    shutdown until the server cuts them off."""

    def begin_drain(self) -> None:
        if self.draining_since is None:
            self.draining_since = time.monotonic()

    def drained(self, grace: float = 0.0) -> bool:
        """Whether shutting down began more than `grace` seconds ago."""
        since = self.draining_since
        return since is not None and time.monotonic() - since >= grace

    def urls(self, request: Request) -> Urls:
        """Absolute URLs from `OPENREMIX_PUBLIC_URL`, else from the request's scheme and host."""
        if self.settings.public_url:
            return Urls(self.settings.public_url)
        return Urls(str(request.base_url))


def app_state(request: Request) -> AppState:
    return request.app.state.openremix  # type: ignore[no-any-return]
