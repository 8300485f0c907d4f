"""API-key account rules shared by every store: secrets, ids, and how balances are rounded."""

from __future__ import annotations

import hashlib
import secrets

MONEY_DIGITS = 9
"""Credit balances are rounded to this many decimals so float noise never shows as debt."""


def money(amount: float) -> float:
    return round(amount, MONEY_DIGITS)


def hash_secret(secret: str) -> str:
    """The stored form of an API key secret: its SHA-256, hex."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def new_secret() -> str:
    """A new API key secret (shown to its owner once)."""
    return "or_" + secrets.token_urlsafe(32)


def new_key_id() -> str:
    """A short public id for a key, shown in listings and stored on jobs."""
    return "key_" + secrets.token_hex(6)
