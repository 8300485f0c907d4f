"""Signing webhooks per Standard Webhooks (https://www.standardwebhooks.com), and the secret.

- `webhook-id`: the message id ("msg_..."), the same on every retry (dedupe on it);
- `webhook-timestamp`: Unix seconds of this attempt;
- `webhook-signature`: "v1," + base64(HMAC-SHA256(key, f"{id}.{timestamp}.{body}")), where the
  key is the base64-decoded part of a `whsec_...` secret (any other secret: its UTF-8 bytes).

Receivers check a delivery with `verify` (`from openremix.webhooks import verify`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import secrets
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from openremix.config import Settings

SECRET_FILE = "webhook-secret"
SECRET_PREFIX = "whsec_"
SIGNATURE_TOLERANCE_SECONDS = 300


class WebhookVerificationError(Exception):
    """A received webhook's headers or signature do not check out."""


def new_secret() -> str:
    """A fresh `whsec_` secret: 32 random bytes, base64."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode("ascii")


def signing_key(secret: str) -> bytes:
    """The HMAC key of a secret; ValueError when the secret cannot be one."""
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
    digest = hmac.new(signing_key(secret), signed, hashlib.sha256).digest()
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
        signing_key(settings.webhook_secret)  # fail at start, not at the first delivery
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
