"""`Dialect`: the few places where SQLite and PostgreSQL SQL differ, named.

Shared statements are written once, with "?" for parameters and the dialect's attributes
spliced in where the dialects disagree; `Dialect.sql` turns them into the driver's form. Each
backend declares its dialect next to its store (`SQLiteJobStore.dialect`,
`PostgresJobStore.dialect`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Protocol


class Row(Protocol):
    """A result row read by column name (`sqlite3.Row`, or psycopg's `dict_row`)."""

    def __getitem__(self, key: str, /) -> Any: ...


class Cursor(Protocol):
    rowcount: int

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


class Connection(Protocol):
    """What the shared core needs of a connection: `sqlite3.Connection` and
    `psycopg.Connection` both have it."""

    def execute(self, sql: str, params: Any = ..., /) -> Any: ...


@dataclass(frozen=True)
class Dialect:
    name: str
    placeholder: str
    """How the driver marks a parameter: "?" (sqlite3) or "%s" (psycopg)."""
    insert_order: str
    """A column that grows with every insert, the last tie-break of "oldest first": SQLite's
    `rowid`, PostgreSQL's identity column `seq`."""
    lock_rows: str
    """Appended to a SELECT whose rows the transaction then changes: " FOR UPDATE" where rows
    are locked one by one (PostgreSQL); "" where the write transaction already holds the whole
    database (SQLite's `BEGIN IMMEDIATE`)."""
    skip_locked: str
    """Appended to the SELECT that picks rows to lease: " FOR UPDATE SKIP LOCKED", so that
    concurrent claimers pass over each other's rows, or "" (SQLite: claimers never overlap)."""
    json_key_absent: str
    """A predicate over `{column}` (JSON text) and `{key}`: true only when the JSON object
    certainly has no top-level `key` (or has it as null)."""

    def sql(self, text: str) -> str:
        """`text` (parameters written "?") in this driver's parameter style."""
        return _translate(text, self.placeholder)

    def key_absent(self, column: str, key: str) -> str:
        return self.json_key_absent.format(column=column, key=key)


@functools.lru_cache(maxsize=256)
def _translate(text: str, placeholder: str) -> str:
    if placeholder == "?":
        return text
    # psycopg reads "%" as the start of a parameter: a literal one is written "%%"
    return text.replace("%", "%%").replace("?", placeholder)
