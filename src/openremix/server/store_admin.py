"""The operator's work on a job store (`openremix keys | db`), apart from how the CLI shows it.

Each function takes `Settings`, finds the store by `wiring.store_location` (the one rule that
picks a backend) and raises `AdminError` with one sentence for the operator when it cannot do
its work; the CLI prints that sentence and exits 2.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from openremix.config import Settings
from openremix.jobs.accounts import parse_scopes
from openremix.jobs.model import ApiKey
from openremix.jobs.store import UnknownApiKey
from openremix.server.wiring import open_store, store_location

__all__ = ["AdminError", "backup_store", "checked_scopes", "open_store", "require_existing",
           "schema_status", "set_key_scopes", "store_name", "upgrade_schema"]

T = TypeVar("T")


class AdminError(Exception):
    """What an operator's command could not do, in one sentence."""


def store_name(settings: Settings) -> str:
    """Where the keys live, for messages (never a database password)."""
    location = store_location(settings)
    if location.sqlite_path is None:
        return "the PostgreSQL database of OPENREMIX_DATABASE_URL"
    return str(location.sqlite_path)


def require_existing(settings: Settings) -> None:
    """Refuse (before opening anything) a store that does not exist yet: reading keys must not
    leave an empty data folder behind."""
    path = store_location(settings).sqlite_path
    if path is not None and not path.is_file():
        raise AdminError(
            f"no openremix data in {path.parent} (no {path.name}); `openremix serve` keeps its "
            "data where --data-dir, OPENREMIX_DATA_DIR or OPENREMIX_DATABASE_URL say, else in "
            "the per-user default"
        )


def checked_scopes(entries: list[str] | None) -> tuple[str, ...] | None:
    """Scope strings checked and normalised (None: everything); AdminError with the rule."""
    if not entries:
        return None
    try:
        return parse_scopes(entries)
    except ValueError as exc:
        raise AdminError(str(exc)) from None


def set_key_scopes(settings: Settings, key_id: str, scopes: tuple[str, ...] | None) -> ApiKey:
    require_existing(settings)
    store = open_store(settings)
    try:
        return store.set_api_key_scopes(key_id, scopes)
    except UnknownApiKey:
        raise AdminError(f"no key {key_id}") from None
    finally:
        store.close()


def _postgres_call(call: Callable[[str], T], url: str) -> T:
    """Run a PostgreSQL schema command; AdminError with its one line when it cannot."""
    try:
        import psycopg

        from openremix.jobs.postgres.schema import SchemaError
    except ImportError:
        raise AdminError("PostgreSQL needs psycopg: pip install 'openremix[postgres]'") from None
    try:
        return call(url)
    except (SchemaError, psycopg.Error) as exc:
        raise AdminError(str(exc).strip()) from None


def upgrade_schema(settings: Settings) -> str:
    """Create the store's tables or apply pending migrations; what was done, in a line."""
    url = store_location(settings).postgres_url
    if url is None:
        from openremix.jobs.sqlite.schema import SCHEMA_VERSION

        open_store(settings).close()  # the SQLite store upgrades itself when opened
        return f"SQLite job store: schema version {SCHEMA_VERSION} (up to date)"
    from openremix.jobs.postgres.schema import upgrade_database

    before, after = _postgres_call(upgrade_database, url)
    if before == after:
        return f"schema version {after}: already up to date, nothing to do"
    return f"schema upgraded from version {before} to {after}"


def schema_status(settings: Settings) -> tuple[str, bool]:
    """(the store's schema version and pending migrations, whether it is up to date)."""
    url = store_location(settings).postgres_url
    if url is None:
        from openremix.jobs.sqlite.schema import SCHEMA_VERSION

        open_store(settings).close()  # refuses a newer file; upgrades an older one
        return f"SQLite job store: schema version {SCHEMA_VERSION} (upgraded whenever opened)", True
    from openremix.jobs.postgres.schema import database_status

    status = _postgres_call(database_status, url)
    return status.describe(), status.version == status.known


def backup_store(settings: Settings, target: Path, overwrite: bool) -> str:
    """Copy the SQLite store into `target` (SQLite's online backup: safe while servers run);
    what was copied, in a line. PostgreSQL: AdminError with pg_dump's advice."""
    from openremix.jobs.sqlite.backup import backup

    source = store_location(settings).sqlite_path
    if source is None:
        raise AdminError(
            "the job store is PostgreSQL: back it up with its own tools, e.g. pg_dump "
            "--format=custom --file=openremix.dump \"$OPENREMIX_DATABASE_URL\""
        )
    try:
        size = backup(source, target, overwrite=overwrite)
    except (OSError, sqlite3.Error) as exc:
        raise AdminError(f"cannot back up {source}: {exc}") from None
    return f"backed up {source} to {target} ({size} bytes)"
