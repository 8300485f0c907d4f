"""One credit rule: `accounts.split_debit` / `accounts.money` in Python (the SQLite store) and
`openremix_split_debit` / `openremix_money` in PL/pgSQL (the PostgreSQL store) give the same
answers on the same table of cases, to the last bit."""

from __future__ import annotations

import math
from dataclasses import astuple

import pytest

from openremix.jobs.accounts import Debit, money, partial_refund, split_debit
from openremix.jobs.sqlite.schema import connect
from tests.support.pg_server import PSYCOPG_HINT

# (case, free credits, paid credits, cost, expected (sufficient, from free, from paid))
DEBITS: list[tuple[str, float, float, float, tuple[bool, float, float]]] = [
    ("free credits go first", 2.0, 10.0, 1.0, (True, 1.0, 0.0)),
    ("the rest comes from paid credits", 0.5, 10.0, 1.0, (True, 0.5, 0.5)),
    ("paid credits only", 0.0, 3.0, 1.25, (True, 0.0, 1.25)),
    ("exact balance is enough", 0.25, 0.75, 1.0, (True, 0.25, 0.75)),
    ("short by a tiny amount", 0.5, 0.5, 1.0000000001, (False, 0.0, 0.0)),
    ("short by less than the rounding is enough", 0.5, 0.4999999999, 1.0, (True, 0.5, 0.5)),
    ("float noise: 0.1 + 0.2 pays 0.3", 0.1, 0.2, 0.3, (True, 0.1, 0.2)),
    ("a cost of 0.1 + 0.2 is more than 0.3", 0.0, 0.3, 0.1 + 0.2, (False, 0.0, 0.0)),
    ("noise in the balance never shows as debt", 0.0, 0.1 + 0.2, 0.3, (True, 0.0, 0.3)),
    ("negative free credits are not spent", -2.0, 5.0, 1.0, (True, 0.0, 1.0)),
    ("negative free credits lower the balance", -2.0, 2.5, 1.0, (False, 0.0, 0.0)),
    ("zero cost", 0.0, 0.0, 0.0, (True, 0.0, 0.0)),
    ("zero cost on a debt", -1.0, 0.0, 0.0, (False, 0.0, 0.0)),
    ("nine-decimal costs", 0.0123456789, 1.0, 0.0123456789, (True, 0.012345679, 0.0)),
    ("a rounding tie goes away from zero", 0.0, 1.0, 0.0000000005, (True, 0.0, 0.000000001)),
    ("a large balance", 0.0, 1e9, 0.08, (True, 0.0, 0.08)),
    ("past 15 significant digits", 0.0, 9999999.987654322, 0.000000001, (True, 0.0, 1e-9)),
    ("a large free balance", 123456.1234567891, 0.0, 0.3333333333, (True, 0.333333333, 0.0)),
]
AMOUNTS = [0.0, -0.0, 1.0, 0.1 + 0.2, -1e-12, 5e-10, -5e-10, 1.0000000005, 2.675, 0.5886350035,
           0.28789404949999997, 9999999.987654322, -795545683779.9036, 1e300, 5e-324]
"""Amounts for `money`: float noise, ties, tiny and huge values, and values the old
`round(x, 9)` of the SQLite store rounded differently from PostgreSQL."""


def same(a: float, b: float) -> bool:
    """Equal to the bit, sign of zero included."""
    return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)


def same_debit(a: Debit, b: Debit) -> bool:
    return a.sufficient == b.sufficient and all(
        same(x, y) for x, y in zip(astuple(a), astuple(b), strict=True) if not isinstance(x, bool)
    )


@pytest.mark.parametrize(("case", "free", "paid", "cost", "expected"), DEBITS,
                         ids=[row[0] for row in DEBITS])
def test_the_credit_rule(case: str, free: float, paid: float, cost: float,
                         expected: tuple[bool, float, float]) -> None:
    debit = split_debit(free, paid, cost)
    assert (debit.sufficient, debit.from_free, debit.from_paid) == expected
    assert debit.balance == money(free + paid)
    if debit.sufficient:
        assert debit.free_left == money(free - debit.from_free)
        assert debit.paid_left == money(paid - debit.from_paid)
        assert money(debit.from_free + debit.from_paid) == money(cost)
    else:
        assert (debit.free_left, debit.paid_left) == (free, paid)  # nothing taken


def test_money_never_returns_negative_zero() -> None:
    assert all(math.copysign(1.0, money(x)) == 1.0 for x in (-0.0, -1e-12, -4e-10))


def test_sqlite_statements_round_with_the_same_money(tmp_path) -> None:
    conn = connect(tmp_path / "money.sqlite3")
    try:
        for amount in AMOUNTS:
            (rounded,) = conn.execute("SELECT openremix_money(?)", (amount,)).fetchone()
            assert same(rounded, money(amount)), amount
    finally:
        conn.close()


def test_python_and_plpgsql_give_the_same_answers(postgres_db: str) -> None:
    psycopg = pytest.importorskip("psycopg", reason=PSYCOPG_HINT)
    from openremix.jobs.postgres.schema import upgrade_database

    upgrade_database(postgres_db)
    mismatches = []
    with psycopg.connect(postgres_db) as conn:
        for amount in AMOUNTS:
            (rounded,) = conn.execute("SELECT openremix_money(%s)", (amount,)).fetchone()
            if not same(rounded, money(amount)):
                mismatches.append(f"money({amount!r}): PL/pgSQL {rounded!r}, Python "
                                  f"{money(amount)!r}")
        for case, free, paid, cost, _ in DEBITS:
            row = conn.execute(
                "SELECT balance, sufficient, from_free, from_paid, free_left, paid_left"
                " FROM openremix_split_debit(%s, %s, %s)",
                (free, paid, cost),
            ).fetchone()
            if not same_debit(Debit(*row), split_debit(free, paid, cost)):
                mismatches.append(f"{case}: PL/pgSQL {Debit(*row)}, Python "
                                  f"{split_debit(free, paid, cost)}")
    assert mismatches == []


@pytest.mark.parametrize(
    ("free", "paid", "fraction", "expected"),
    [(1.0, 2.0, 1 / 3, (0.0, 1.0)), (1.0, 0.5, 0.5, (0.25, 0.5)), (0.0, 0.3, 1.0, (0.0, 0.3)),
     (0.2, 0.0, 0.5, (0.1, 0.0)), (1.0, 2.0, 0.0, (0.0, 0.0))],
)
def test_a_partial_refund_returns_paid_credits_first(
    free: float, paid: float, fraction: float, expected: tuple[float, float]
) -> None:
    assert partial_refund(free, paid, fraction) == expected


def test_a_partial_refund_is_a_fraction_of_the_debit() -> None:
    with pytest.raises(ValueError, match="fraction"):
        partial_refund(1.0, 1.0, 1.5)
