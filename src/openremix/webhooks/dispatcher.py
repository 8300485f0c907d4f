"""Sending webhooks: the outbox's due messages, POSTed to their URL, signed, retried.

The store writes one message into its outbox in the same transaction that finishes the job
(`jobs/outbox.py`); a `WebhookDispatcher` thread in each API process (`openremix serve`,
`openremix api`) sends what is due. Workers never send anything, so a slow receiver never holds
a worker. Each POST is signed (`signing`). A 2xx answer delivers the message; anything else (or
no answer) is retried after 5 s, 15 s, 45 s, ... (at most 10 min apart) until 1 h after the
first attempt. Redirects are not followed. The URL passes the same SSRF guard as image URLs
(`media.addresses`), checked at submit without DNS (`request_fields`) and again, resolved and
pinned, before every attempt.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from openremix.contract.errors import InputImageError, UnsafeURL
from openremix.jobs.model import Clock, system_clock
from openremix.jobs.outbox import WebhookDelivery
from openremix.jobs.store import JobStore
from openremix.media.addresses import Resolver, check_host
from openremix.media.fetch import (
    USER_AGENT,
    parse_http_url,
    pinning_client,
    send_pinned,
)
from openremix.webhooks.signing import sign, signing_key

log = logging.getLogger("openremix.webhooks")

RETRY_WINDOW_SECONDS = 3600.0
"""No attempt starts later than this after the first one."""
MAX_RETRY_DELAY_SECONDS = 600.0


def webhook_addresses(
    url: str, *, allow_private: bool, resolver: Resolver | None = None
) -> tuple[httpx.URL, list[str]]:
    """The parsed URL and the checked addresses to send to; raises `UnsafeURL` when any
    address is refused, `InputImageError` when the URL is bad or the host does not resolve."""
    parsed = parse_http_url(url, field="webhook_url")
    ips = check_host(parsed.raw_host.decode("ascii"), allow_private=allow_private,
                     resolver=resolver, field="webhook_url")
    return parsed, ips


# --- retries -----------------------------------------------------------------------------------
def retry_delay(attempts: int, base: float, cap: float = MAX_RETRY_DELAY_SECONDS) -> float:
    """Seconds to wait after the `attempts`-th failed attempt: base, 3 base, 9 base, ... <= cap."""
    return min(base * 3 ** max(attempts - 1, 0), cap)


def next_attempt_at(
    delivery: WebhookDelivery,
    now: float,
    base: float,
    window: float = RETRY_WINDOW_SECONDS,
) -> float | None:
    """When to try `delivery` again after a failed attempt, or None: past the retry window."""
    first = delivery.first_attempt_at if delivery.first_attempt_at is not None else now
    due = now + retry_delay(delivery.attempts, base)
    return due if due <= first + window else None


# --- sending -----------------------------------------------------------------------------------
_MAX_ANSWER_BYTES = 64 * 1024


def _drain(response: httpx.Response, deadline: float) -> None:
    """Read (and drop) a little of the receiver's answer, so the connection ends cleanly
    rather than with a reset; never more than 64 KiB, never past the deadline."""
    read = 0
    try:
        for chunk in response.iter_raw():
            read += len(chunk)
            if read > _MAX_ANSWER_BYTES or time.monotonic() > deadline:
                return
    except httpx.HTTPError:
        pass  # the status line was all that counted


class WebhookDispatcher:
    """Sends due outbox messages; `run_once` for one pass, `start`/`stop` for a thread.

    Safe to run in several processes on one store: each message is leased while it is sent.
    """

    def __init__(
        self,
        store: JobStore,
        secret: str,
        *,
        allow_private: bool,
        timeout: float = 10.0,
        clock: Clock = system_clock,
        retry_base_seconds: float = 5.0,
        retry_window_seconds: float = RETRY_WINDOW_SECONDS,
        poll_interval: float = 0.1,
        concurrency: int = 8,
        resolver: Resolver | None = None,
    ) -> None:
        signing_key(secret)
        self.store = store
        self.secret = secret
        self.allow_private = allow_private
        self.timeout = timeout
        self.clock = clock
        self.retry_base_seconds = retry_base_seconds
        self.retry_window_seconds = retry_window_seconds
        self.poll_interval = poll_interval
        self.concurrency = concurrency
        self.resolver = resolver
        # Longer than one attempt can take (DNS is not bounded by `timeout`, hence the margin).
        self.lease_seconds = max(60.0, 3 * timeout)
        # One verifying TLS context for every POST (certificates are checked against the URL's
        # host name, sent as SNI by `send_pinned`).
        self._tls = httpx.create_ssl_context()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._in_flight = 0
        self._lock = threading.Lock()

    def run_once(self) -> int:
        """Send every message due now, one after another; returns how many were attempted."""
        deliveries = self.store.claim_due_webhooks(self.lease_seconds, self.concurrency)
        for delivery in deliveries:
            self.deliver(delivery)
        return len(deliveries)

    def deliver(self, delivery: WebhookDelivery) -> bool:
        """One attempt at a claimed message; records the outcome. True when delivered."""
        error, permanent = self._post(delivery)
        extra = {"request_id": delivery.request_id}
        if error is None:
            self.store.webhook_delivered(delivery.delivery_id)
            log.info("webhook %s delivered (attempt %d)", delivery.delivery_id,
                     delivery.attempts, extra=extra)
            return True
        now = self.clock()
        retry_at = None if permanent else next_attempt_at(
            delivery, now, self.retry_base_seconds, self.retry_window_seconds
        )
        self.store.webhook_retry(delivery.delivery_id, error, retry_at)
        if retry_at is None:
            log.warning("webhook %s given up after %d attempt(s): %s", delivery.delivery_id,
                        delivery.attempts, error, extra=extra)
        else:
            log.info("webhook %s attempt %d failed (%s); again in %.1f s", delivery.delivery_id,
                     delivery.attempts, error, retry_at - now, extra=extra)
        return False

    def _post(self, delivery: WebhookDelivery) -> tuple[str | None, bool]:
        """Send one POST: (None, _) on 2xx, else (the error, whether retrying is pointless)."""
        try:
            url, ips = webhook_addresses(delivery.url, allow_private=self.allow_private,
                                         resolver=self.resolver)
        except UnsafeURL as exc:
            return exc.message, True
        except InputImageError as exc:  # bad URL or a name that does not resolve (yet)
            return exc.message, False
        body = delivery.payload.encode("utf-8")
        timestamp = int(self.clock())
        headers = {
            "content-type": "application/json",
            "webhook-id": delivery.delivery_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(self.secret, delivery.delivery_id, timestamp, body),
        }
        deadline = time.monotonic() + self.timeout
        try:
            with pinning_client({"User-Agent": USER_AGENT}, self._tls) as client:
                response = send_pinned(client, url, ips, self.timeout, method="POST",
                                       headers=headers, content=body)
                try:
                    _drain(response, deadline)
                finally:
                    response.close()
        except httpx.TimeoutException:
            return f"timed out after {self.timeout:g} s", False
        except httpx.HTTPError as exc:
            return f"{type(exc).__name__}: {exc}", False
        if 200 <= response.status_code < 300:
            return None, False
        if response.is_redirect:
            return f"HTTP {response.status_code} (redirects are not followed)", False
        return f"HTTP {response.status_code}", False

    # --- the background thread ---------------------------------------------------------------
    def start(self) -> WebhookDispatcher:
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="webhooks", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float | None = None) -> None:
        """Stop claiming; waits for sends under way (each at most `timeout` s)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout if timeout is not None else self.timeout + 5)
            self._thread = None

    def _loop(self) -> None:
        with ThreadPoolExecutor(self.concurrency, thread_name_prefix="webhook") as pool:
            while not self._stop.is_set():
                try:
                    free = self.concurrency - self._in_flight
                    if free > 0:
                        for delivery in self.store.claim_due_webhooks(self.lease_seconds, free):
                            with self._lock:
                                self._in_flight += 1
                            pool.submit(self._deliver_counted, delivery)
                except Exception:
                    log.exception("webhook dispatch failed")
                self._stop.wait(self.poll_interval)

    def _deliver_counted(self, delivery: WebhookDelivery) -> None:
        try:
            self.deliver(delivery)
        except Exception:
            log.exception("webhook %s failed", delivery.delivery_id,
                          extra={"request_id": delivery.request_id})
        finally:
            with self._lock:
                self._in_flight -= 1
