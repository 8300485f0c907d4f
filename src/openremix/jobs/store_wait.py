"""How long one store call may wait for its database, set per calling thread.

The stores ride out a busy or absent database on their own: SQLite's lock is retried for
`sqlite.schema.LOCKED_RETRY_SECONDS` (after SQLite's own `BUSY_TIMEOUT_SECONDS`), a lost
PostgreSQL server for `reconnect_seconds`. That is right for a worker, whom nobody waits on. A
client of the API is better served by a quick 503 with Retry-After than by a request that hangs
for half a minute, so the API calls its store through `WaitLimitedStore`: each call waits at
most `OPENREMIX_STORE_WAIT_SECONDS`, while the workers on the same store keep their long retries.
The limit is per thread because one store object serves both in `openremix serve`.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

_limit = threading.local()


def wait_limit(own: float) -> float:
    """The seconds a store call of this thread may wait: the store's `own` wait, or less inside
    `waiting_at_most`."""
    seconds: float | None = getattr(_limit, "seconds", None)
    return own if seconds is None else min(own, seconds)


@contextmanager
def waiting_at_most(seconds: float) -> Iterator[None]:
    """Store calls made by this thread inside the block wait at most `seconds`."""
    outer = getattr(_limit, "seconds", None)
    _limit.seconds = seconds if outer is None else min(outer, seconds)
    try:
        yield
    finally:
        _limit.seconds = outer


class WaitLimitedStore:
    """A `JobStore` (any attribute of `store`) whose every call waits at most `seconds` for the
    database; an optional part the store lacks (`take_rate_token`, ...) is missing here too."""

    def __init__(self, store: Any, seconds: float) -> None:
        self._store = store
        self.wait_seconds = seconds

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._store, name)
        if not callable(attribute):
            return attribute
        return self._limited(attribute)

    def _limited(self, method: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(method)
        def call(*args: Any, **kwargs: Any) -> Any:
            with waiting_at_most(self.wait_seconds):
                return method(*args, **kwargs)

        return call
