"""API-key account rules shared by every store: secrets, ids, how balances are rounded, and the
credit rule (which bucket a job's cost comes from).

The rule is stated once, here, as pure functions. The SQLite store calls them (and registers
`money` as the SQL function `openremix_money`, so its refunds round the same way); the
PostgreSQL store runs the same rule as PL/pgSQL (`postgres/credit_rule.py`), formatted from the
constants of this module. tests/test_credit_rule.py runs one table of cases through both.
"""

from __future__ import annotations

import hashlib
import math
import re
import secrets
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Context, Decimal

MONEY_DIGITS = 9
"""Credit balances are rounded to this many decimals so float noise never shows as debt.

Changing it needs a new PostgreSQL migration step that re-creates the credit functions
(`postgres.credit_rule.credit_rule_sql()`), or databases made before keep the old rounding."""
SIGNIFICANT_DIGITS = 15
"""Digits of an amount that rounding looks at: PostgreSQL's float -> numeric conversion keeps
15 significant digits (DBL_DIG), so `money` does too, and both stores agree to the last bit."""

_QUANTUM = Decimal(1).scaleb(-MONEY_DIGITS)
_EXACT = Context(prec=1000)  # wide enough for any double at MONEY_DIGITS decimals


def money(amount: float) -> float:
    """`amount` rounded as PostgreSQL's `round(amount::numeric, MONEY_DIGITS)::float8` does:
    to SIGNIFICANT_DIGITS significant digits, then to MONEY_DIGITS decimals, ties away from
    zero. Never returns -0.0. Infinities and NaN pass through."""
    if not math.isfinite(amount):
        return amount
    digits = f"{amount:.{SIGNIFICANT_DIGITS}g}"
    # `+ 0.0` turns -0.0 (what a tiny negative amount rounds to) into 0.0, as numeric has no -0
    if "e" not in digits and len(digits.partition(".")[2]) <= MONEY_DIGITS:
        return float(digits) + 0.0  # nothing to round (the usual case; a fast path)
    rounded = Decimal(digits).quantize(_QUANTUM, rounding=ROUND_HALF_UP, context=_EXACT)
    return float(rounded) + 0.0


@dataclass(frozen=True)
class Debit:
    """The credit rule's answer for one cost against a key's two buckets."""

    balance: float
    """What the key has: free + paid credits, rounded."""
    sufficient: bool
    """Whether the balance covers the cost; when not, nothing is taken."""
    from_free: float
    """Taken from the free credits (they go first; never below zero by this debit)."""
    from_paid: float
    """Taken from the paid credits: the rest of the cost."""
    free_left: float
    paid_left: float
    """The buckets after the debit (unchanged when not sufficient)."""


def split_debit(free: float, paid: float, cost: float) -> Debit:
    """Debit `cost` from a key holding `free` and `paid` credits: free credits first (only
    what is above zero), the rest from paid credits; every amount rounded with `money`."""
    balance = money(free + paid)
    sufficient = balance >= cost
    if not sufficient:
        return Debit(balance, False, 0.0, 0.0, free, paid)
    from_free = money(min(max(free, 0.0), cost))
    from_paid = money(cost - from_free)
    return Debit(balance, True, from_free, from_paid, money(free - from_free),
                 money(paid - from_paid))


def partial_refund(debit_free: float, debit_paid: float, fraction: float) -> tuple[float, float]:
    """What to give back, as (to free, to paid), when a `fraction` of a job's debit bought
    nothing (the blocked images of a job that completes with the others): paid credits first,
    since the debit took them last, then free ones; each amount rounded with `money`."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be from 0 to 1, got {fraction}")
    amount = money((debit_free + debit_paid) * fraction)
    to_paid = money(min(debit_paid, amount))
    return money(amount - to_paid), to_paid


def hash_secret(secret: str) -> str:
    """The stored form of an API key secret: its SHA-256, hex."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def new_secret() -> str:
    """A new API key secret (shown to its owner once)."""
    return "or_" + secrets.token_urlsafe(32)


def new_key_id() -> str:
    """A short public id for a key, shown in listings and stored on jobs."""
    return "key_" + secrets.token_hex(6)


# --- scopes ------------------------------------------------------------------------------------
SCOPE_KINDS = ("wire", "model")
"""A scope is `wire:NAME` (a wire shape: segmind, ideogram, openai) or `model:SLUG` (a model's
slug, e.g. ideogram-3-remix). A key with scopes may call what every kind it names allows: with
`wire:` scopes only those wires, with `model:` scopes only those models, with both, both."""


class ScopeDenied(Exception):
    """The key's scopes do not allow this call (answered 403)."""


WIRES = ("segmind", "ideogram", "openai")
"""The wire shapes a `wire:` scope may name: Segmind's `/v1|v2/{slug}`, Ideogram's
`/v1/ideogram-v3/remix`..., OpenAI's `/v1/images/edits`."""
_SLUG = re.compile(r"[a-z0-9][a-z0-9._-]*")


def parse_scopes(entries: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """Check and normalise scope strings (lower case, no duplicates); raises ValueError naming
    the bad one and the rule."""
    scopes: list[str] = []
    for entry in entries:
        kind, sep, name = entry.strip().lower().partition(":")
        if not sep or kind not in SCOPE_KINDS or not _SLUG.fullmatch(name):
            raise ValueError(
                f"scope {entry!r}: must be wire:NAME or model:SLUG (e.g. wire:segmind, "
                f"model:ideogram-3-remix)"
            )
        if kind == "wire" and name not in WIRES:
            raise ValueError(f"scope {entry!r}: the wire must be one of {', '.join(WIRES)}")
        if f"{kind}:{name}" not in scopes:
            scopes.append(f"{kind}:{name}")
    return tuple(scopes)


def scope_denial(scopes: tuple[str, ...] | None, *, wire: str, model: str) -> str | None:
    """Why a key with `scopes` may not call `model` on `wire` (a sentence), or None if it may.
    None or empty scopes allow everything."""
    if not scopes:
        return None
    for kind, asked in (("wire", wire), ("model", model)):
        allowed = [s.partition(":")[2] for s in scopes if s.startswith(f"{kind}:")]
        if allowed and asked.lower() not in allowed:
            return (f"This API key may not use {kind} {asked!r}: its scopes allow "
                    f"{', '.join(allowed)}")
    return None
