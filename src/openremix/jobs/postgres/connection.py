"""Connections of `PostgresJobStore`: a pool that survives server restarts, and the listener.

`Database.run(body)` runs `body(conn)` on a pooled connection, in a transaction or (for single
statements) in autocommit. When the server goes away (restart, failover, a dropped network) the
pool's idle connections are dead; `run` then checks the pool (dead connections are replaced)
and calls `body` again, with backoff, for up to `reconnect_seconds`. A deadlock or
serialization failure (PostgreSQL rolled the transaction back) is retried the same way.

A statement that failed because the connection broke may or may not have committed. Retrying is
still safe for every store method: claims and finishes are guarded by state and lease owner (a
claim whose answer was lost shows up as a job whose lease runs out and is re-queued), and
enqueue is keyed by its request id.

`Listener` holds one dedicated connection (not from the pool) that LISTENs on this process's
own channel in a background thread and wakes the `wait` caller each notification names; it
reconnects by itself too.
"""

from __future__ import annotations

import enum
import itertools
import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import TypeVar

import psycopg
from psycopg import errors
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool, PoolTimeout

from openremix.jobs.postgres.schema import register_json_as_text
from openremix.jobs.store_wait import wait_limit

T = TypeVar("T")
log = logging.getLogger("openremix.jobs.postgres")

CONNECT_TIMEOUT = 5.0
LISTEN_POLL_SECONDS = 0.25
"""How often the listener thread looks up from its socket to see whether it should stop."""
POOL_RECONNECT_SECONDS = 2.0
"""How long the pool keeps re-trying a lost connection in the background before it gives up.

psycopg_pool backs off without bound (1, 2, 4, 8 s...) until this runs out, so with a long
window its next try can come many seconds after the server is back. Kept short, the pool gives
up early and instead connects at once when a call asks for a connection (`run` asks again until
its own `reconnect_seconds` are spent): recovery follows the server, not the backoff schedule."""
GETCONN_SLICE_SECONDS = 1.0
"""`run` waits for a pooled connection this long at a time, so that a pool that gave up is
asked again (and grows on demand) within its deadline."""


def _configure(conn: psycopg.Connection) -> None:
    register_json_as_text(conn)


_REFUSALS = ("does not exist", "authentication failed", "no pg_hba.conf entry",
             "permission denied")
"""Connection errors that waiting does not cure (no such database or role, bad password)."""


def _wait_for_server(url: str, deadline: float) -> None:
    """Connect once, retrying until `deadline` while the server is not up yet (a replica may
    start before its database); raises the server's own error when it refuses us for good
    (bad password, no such database) or never answers."""
    delay = 0.1
    while True:
        try:
            psycopg.connect(url, connect_timeout=int(CONNECT_TIMEOUT)).close()
            return
        except psycopg.OperationalError as exc:
            # A failed connect carries no SQLSTATE; the server's FATAL message says why.
            refused = any(marker in str(exc) for marker in _REFUSALS)
            if refused or time.monotonic() + delay > deadline:
                raise
            if delay == 0.1:
                log.warning("PostgreSQL is not reachable yet (%s); retrying until %.0f s from now",
                            str(exc).strip().splitlines()[0], deadline - time.monotonic())
        time.sleep(delay)
        delay = min(delay * 2, 2.0)


class Database:
    """A connection pool plus `run`, the bounded reconnect-and-retry around each store call."""

    def __init__(self, url: str, *, pool_size: int, reconnect_seconds: float) -> None:
        self.url = url
        self.reconnect_seconds = reconnect_seconds
        _wait_for_server(url, time.monotonic() + reconnect_seconds)
        self.pool = ConnectionPool(
            url,
            min_size=1,
            max_size=max(1, pool_size),
            kwargs={"autocommit": True, "row_factory": dict_row,
                    "connect_timeout": int(CONNECT_TIMEOUT)},
            configure=_configure,
            timeout=reconnect_seconds,
            reconnect_timeout=POOL_RECONNECT_SECONDS,
            name="openremix-jobs",
            open=False,
        )
        self.pool.open(wait=True, timeout=CONNECT_TIMEOUT + reconnect_seconds)

    def run(self, body: Callable[[psycopg.Connection], T], *, transaction: bool = True) -> T:
        """`body(conn)` in a transaction (or autocommit), retried while the server is away
        (for `reconnect_seconds`, or this thread's shorter `wait_limit`)."""
        deadline = time.monotonic() + wait_limit(self.reconnect_seconds)
        delay = 0.02
        while True:
            wait = max(0.05, min(GETCONN_SLICE_SECONDS, deadline - time.monotonic()))
            try:
                with self.pool.connection(timeout=wait) as conn:
                    if not transaction:
                        return body(conn)
                    with conn.transaction():
                        return body(conn)
            except (errors.DeadlockDetected, errors.SerializationFailure):
                if time.monotonic() > deadline:
                    raise
            except (psycopg.OperationalError, PoolTimeout) as exc:
                if not self._lost_connection(exc) or time.monotonic() > deadline:
                    raise
                log.warning("PostgreSQL connection lost (%s); retrying", str(exc).strip())
                self.pool.check()  # replace the other dead idle connections at once
            time.sleep(delay)
            delay = min(delay * 2, 1.0)

    @staticmethod
    def _lost_connection(exc: Exception) -> bool:
        """Whether `exc` means the server or the connection went away (vs. a query's error)."""
        if isinstance(exc, PoolTimeout | errors.AdminShutdown | errors.CannotConnectNow):
            return True
        # A broken connection raises a bare OperationalError without an SQLSTATE.
        return isinstance(exc, psycopg.OperationalError) and getattr(exc, "sqlstate", None) in (
            None,
            "08000", "08003", "08006", "08001", "08004", "57P01", "57P02", "57P03",
        )

    def close(self) -> None:
        self.pool.close()


class Wake(enum.Enum):
    """Why `Listener.wait` returned before its timeout."""

    ADDRESSED = "addressed"
    """A notification named this waiter: the enqueue that sent it took its registration."""
    RECONNECTED = "reconnected"
    """The listening session (re)connected or closed: notifications may have been missed."""


class Listener:
    """LISTEN on this process's own channel in a background thread; wake the waiter a
    notification names.

    Each thread that waits is a *waiter* (`waiter_id()`: the channel plus a number). The store
    registers it in `job_waiters`; an enqueue takes one registration and notifies its channel
    with the waiter's id as the payload, so only that thread wakes. A notification that arrives
    while its thread is busy is kept, and that thread's next `wait` returns at once. Every
    (re)connection of the listening session wakes every waiter (notifications may have been
    missed while it was away).
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.channel = f"openremix_w_{uuid.uuid4().hex[:16]}"
        self._cond = threading.Condition()
        self._generation = 0
        self._addressed: set[str] = set()
        self._local = threading.local()
        self._next_waiter = itertools.count(1)
        self._listening = threading.Event()
        self._closed = False
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def waiter_id(self) -> str:
        """This thread's waiter id (stable for the thread's life)."""
        waiter = getattr(self._local, "waiter", None)
        if waiter is None:
            waiter = self._local.waiter = f"{self.channel}:{next(self._next_waiter)}"
            self._local.generation = self._generation
        return waiter

    def ready(self, timeout: float) -> bool:
        """Start listening (once) and wait up to `timeout` until LISTEN is in place."""
        if self._closed:
            return False
        self._start()
        return self._listening.wait(max(0.0, timeout))

    def take(self, waiter: str) -> Wake | None:
        """A wake-up for `waiter` that arrived since it last looked (consumed), or None."""
        with self._cond:
            return self._consume(waiter)

    def wait(self, waiter: str, timeout: float) -> Wake | None:
        """Block until `waiter` is woken (why) or `timeout` seconds pass (None)."""
        with self._cond:
            self._cond.wait_for(lambda: self._pending(waiter), max(0.0, timeout))
            return self._consume(waiter)

    def _pending(self, waiter: str) -> bool:
        return (self._closed or waiter in self._addressed
                or self._generation != getattr(self._local, "generation", self._generation))

    def _consume(self, waiter: str) -> Wake | None:
        if self._closed:
            return None
        if self._generation != getattr(self._local, "generation", self._generation):
            self._local.generation = self._generation
            self._addressed.discard(waiter)
            return Wake.RECONNECTED
        if waiter in self._addressed:
            self._addressed.discard(waiter)
            return Wake.ADDRESSED
        return None

    def _start(self) -> None:
        with self._start_lock:
            if self._thread is None and not self._closed:
                self._thread = threading.Thread(
                    target=self._listen_forever, name="openremix-pg-listener", daemon=True
                )
                self._thread.start()

    def _wake(self, waiter: str | None) -> None:
        """Wake `waiter`, or (None) every waiter."""
        with self._cond:
            if waiter is None:
                self._generation += 1
            else:
                self._addressed.add(waiter)
            self._cond.notify_all()

    def _listen_forever(self) -> None:
        delay = 0.05
        first = True
        while not self._closed:
            try:
                with psycopg.connect(self.url, autocommit=True,
                                     connect_timeout=int(CONNECT_TIMEOUT)) as conn:
                    conn.execute(f"LISTEN {self.channel}")
                    if not first:  # notifications sent while we were away are lost
                        self._wake(None)
                    first = False
                    self._listening.set()
                    delay = 0.05
                    while not self._closed:
                        for notice in conn.notifies(timeout=LISTEN_POLL_SECONDS):
                            self._wake(notice.payload or None)
            except psycopg.Error as exc:
                self._listening.clear()
                if self._closed:
                    return
                log.warning("PostgreSQL listener lost its connection (%s); reconnecting",
                            str(exc).strip())
                time.sleep(delay)
                delay = min(delay * 2, 2.0)

    def close(self) -> None:
        self._closed = True
        self._wake(None)
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(LISTEN_POLL_SECONDS * 4)
