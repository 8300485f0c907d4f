"""Webhooks: a request's terminal status body, POSTed to its `webhook_url`, signed, retried.

The store writes one message into its outbox in the same transaction that finishes the job
(`jobs/sqlite_outbox.py`); a `WebhookDispatcher` thread in each API process (`openremix serve`,
`openremix api`) sends what is due. Workers never send anything, so a slow receiver never holds
a worker.

Each POST follows Standard Webhooks (https://www.standardwebhooks.com):
- `webhook-id`: the message id ("msg_..."), the same on every retry (dedupe on it);
- `webhook-timestamp`: Unix seconds of this attempt;
- `webhook-signature`: "v1," + base64(HMAC-SHA256(key, f"{id}.{timestamp}.{body}")), where the
  key is the base64-decoded part of a `whsec_...` secret (any other secret: its UTF-8 bytes).
A 2xx answer delivers the message; anything else (or no answer) is retried after 5 s, 15 s,
45 s, ... (at most 10 min apart) until 1 h after the first attempt. Redirects are not followed.
The URL passes the same SSRF guard as image URLs (`media.addresses`), checked at submit without
DNS and again, resolved and pinned, before every attempt.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import os
import secrets
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from openremix.config import Settings
from openremix.contract.errors import InputImageError, InvalidRequest, UnsafeURL
from openremix.jobs.model import Clock, system_clock
from openremix.jobs.store import JobStore
from openremix.jobs.webhook_payload import EVENTS, WebhookDelivery
from openremix.media.addresses import Resolver, check_host, precheck_host
from openremix.media.fetch import (
    USER_AGENT,
    parse_http_url,
    pinning_client,
    send_pinned,
)

log = logging.getLogger("openremix.webhooks")

SECRET_FILE = "webhook-secret"
SECRET_PREFIX = "whsec_"
MAX_URL_LENGTH = 2048
RETRY_WINDOW_SECONDS = 3600.0
"""No attempt starts later than this after the first one."""
MAX_RETRY_DELAY_SECONDS = 600.0
SIGNATURE_TOLERANCE_SECONDS = 300
_ALL_EVENTS = list(EVENTS.values())


class WebhookVerificationError(Exception):
    """A received webhook's headers or signature do not check out."""


# --- signing -----------------------------------------------------------------------------------
def new_secret() -> str:
    """A fresh `whsec_` secret: 32 random bytes, base64."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode("ascii")


def _signing_key(secret: str) -> bytes:
    if secret.startswith(SECRET_PREFIX):
        encoded = secret[len(SECRET_PREFIX):]
        try:
            return base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
        except binascii.Error as exc:
            raise ValueError("a whsec_ webhook secret must be base64 after the prefix") from exc
    if not secret:
        raise ValueError("the webhook secret is empty")
    return secret.encode("utf-8")


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` value: "v1," + base64 HMAC-SHA256 over "id.timestamp.body"."""
    signed = b"%s.%d.%s" % (msg_id.encode("utf-8"), timestamp, body)
    digest = hmac.new(_signing_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def verify(
    secret: str,
    headers: Mapping[str, str],
    body: bytes | str,
    *,
    tolerance: int = SIGNATURE_TOLERANCE_SECONDS,
    now: float | None = None,
) -> Any:
    """Check a received webhook and return its parsed JSON body; for receivers.

    `headers` are the request's headers (any case), `body` its raw bytes, exactly as received
    (re-serialised JSON would not match). Raises `WebhookVerificationError` when a header is
    missing, the timestamp is more than `tolerance` seconds from `now` (replays), or no
    "v1," signature in the space-separated `webhook-signature` list matches:

        payload = verify(SECRET, request.headers, await request.body())
    """
    lower = {k.lower(): v for k, v in headers.items()}
    msg_id = lower.get("webhook-id")
    stamp = lower.get("webhook-timestamp")
    signatures = lower.get("webhook-signature")
    if not (msg_id and stamp and signatures):
        raise WebhookVerificationError("missing webhook-id, webhook-timestamp or -signature")
    try:
        timestamp = int(stamp)
    except ValueError:
        raise WebhookVerificationError("webhook-timestamp is not an integer") from None
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        raise WebhookVerificationError("webhook-timestamp is too old or too new")
    raw = body.encode("utf-8") if isinstance(body, str) else body
    expected = sign(secret, msg_id, timestamp, raw)
    for candidate in signatures.split():
        if candidate.startswith("v1,") and hmac.compare_digest(candidate, expected):
            return json.loads(raw)
    raise WebhookVerificationError("no matching signature")


def load_secret(settings: Settings) -> tuple[str, Path | None]:
    """The signing secret and the file it is kept in (None when set by the environment).

    Made once per data folder and kept in `webhook-secret` (mode 600), so restarts, and the
    `serve`/`api` processes sharing the folder, sign with the same secret.
    """
    if settings.webhook_secret:
        _signing_key(settings.webhook_secret)  # fail at start, not at the first delivery
        return settings.webhook_secret, None
    path = settings.data_dir / SECRET_FILE
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        draft = path.with_name(f".{SECRET_FILE}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(new_secret() + "\n")
        try:
            os.link(draft, path)  # atomic: a second process starting now keeps the first file
        except FileExistsError:
            pass
        finally:
            draft.unlink()
    return path.read_text().strip(), path


# --- the URL and the events at submit ----------------------------------------------------------
def parse_webhook_fields(
    body: dict[str, Any], *, allow_private: bool
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Split `webhook_url`/`webhook_events` off a submit body: (the rest, {"url", "events"} or
    None). Checks the URL without DNS (syntax, blocked names, forbidden IP literals); raises
    `InvalidRequest` naming the field."""
    rest = dict(body)
    url = rest.pop("webhook_url", None)
    events = _parse_events(rest.pop("webhook_events", None))
    if url is None or url == "":
        if events is not None:
            raise InvalidRequest("webhook_events", "needs a webhook_url")
        return rest, None
    if not isinstance(url, str):
        raise InvalidRequest("webhook_url", "must be a string: an http(s) URL")
    if len(url) > MAX_URL_LENGTH:
        raise InvalidRequest("webhook_url", f"at most {MAX_URL_LENGTH} characters")
    try:
        parsed = parse_http_url(url, field="webhook_url")
        precheck_host(parsed.raw_host.decode("ascii"), allow_private=allow_private,
                      field="webhook_url")
    except InputImageError as exc:
        raise InvalidRequest("webhook_url", exc.rule) from None
    return rest, {"url": url.strip(), "events": events or _ALL_EVENTS}


def _parse_events(value: Any) -> list[str] | None:
    """`webhook_events` as canonical event names; None when not given (null, [] or "")."""
    if isinstance(value, str):  # a multipart form field: JSON or comma-separated
        text = value.strip()
        try:
            value = json.loads(text) if text.startswith("[") else text.split(",")
        except json.JSONDecodeError:
            raise InvalidRequest("webhook_events", "is not a valid JSON list") from None
        value = [v.strip() if isinstance(v, str) else v for v in value if v != ""]
    if value is None or value == []:
        return None
    if not isinstance(value, list):
        raise InvalidRequest("webhook_events", 'must be a list of "completed" and/or "failed"')
    wanted: set[str] = set()
    for item in value:
        if not isinstance(item, str) or item.lower() not in _ALL_EVENTS:
            raise InvalidRequest("webhook_events",
                                 f'each must be "completed" or "failed", got {item!r}')
        wanted.add(item.lower())
    return [event for event in _ALL_EVENTS if event in wanted]


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
        _signing_key(secret)
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
