"""The credit rule of `jobs.accounts` as PostgreSQL functions, built from that module's constants.

`openremix_money(amount)` is `accounts.money` (whose `SIGNIFICANT_DIGITS` are those that
PostgreSQL's float8 -> numeric conversion keeps); `openremix_split_debit(free, paid, cost)` is
`accounts.split_debit`, line for line (same outputs, same order of operations), and
`openremix_enqueue` calls it. tests/test_credit_rule.py runs one table of cases through the
Python functions and these, and asserts the same answers.
"""

from __future__ import annotations

from openremix.jobs.accounts import MONEY_DIGITS


def credit_rule_sql() -> str:
    """`CREATE OR REPLACE` of `openremix_money` and `openremix_split_debit`."""
    return f"""
CREATE OR REPLACE FUNCTION openremix_money(amount double precision) RETURNS double precision
    LANGUAGE sql IMMUTABLE
    AS $$ SELECT round(amount::numeric, {MONEY_DIGITS:d})::double precision $$;

CREATE OR REPLACE FUNCTION openremix_split_debit(
    p_free double precision, p_paid double precision, p_cost double precision,
    OUT balance double precision, OUT sufficient boolean,
    OUT from_free double precision, OUT from_paid double precision,
    OUT free_left double precision, OUT paid_left double precision
) LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    balance := openremix_money(p_free + p_paid);
    sufficient := balance >= p_cost;
    IF NOT sufficient THEN
        from_free := 0; from_paid := 0; free_left := p_free; paid_left := p_paid;
        RETURN;
    END IF;
    from_free := openremix_money(least(greatest(p_free, 0), p_cost));
    from_paid := openremix_money(p_cost - from_free);
    free_left := openremix_money(p_free - from_free);
    paid_left := openremix_money(p_paid - from_paid);
END
$$;
"""
