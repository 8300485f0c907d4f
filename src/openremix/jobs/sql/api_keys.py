"""The API-key methods of `JobStore`, written once for both backends (`SQLApiKeys`)."""

from __future__ import annotations

from openremix.jobs.accounts import hash_secret, money, new_key_id, new_secret, parse_scopes
from openremix.jobs.model import ApiKey
from openremix.jobs.sql.base import Access, SQLBase
from openremix.jobs.sql.dialect import Connection
from openremix.jobs.sql.rows import (
    API_KEY_COLUMNS,
    INSERT_API_KEY,
    api_key_values,
    row_to_api_key,
    scopes_json,
)
from openremix.jobs.store import UnknownApiKey


class SQLApiKeys(SQLBase):
    """Keys and their credits. Balances are rounded with `accounts.money` (SQL:
    `openremix_money`, the same rule in both databases)."""

    def create_api_key(
        self,
        name: str,
        credits: float,
        free_credits: float = 0.0,
        secret: str | None = None,
        scopes: tuple[str, ...] | None = None,
    ) -> tuple[ApiKey, str]:
        """Create a key; returns the record and the secret (generated as "or_..." when None).

        `scopes` (checked with `accounts.parse_scopes`; None: everything) limit what it may
        call. Creating a `secret` that already exists returns the existing record unchanged.
        """
        if secret is None:
            secret = new_secret()
        elif not secret:
            raise ValueError("an API key secret must not be empty")
        key = ApiKey(
            key_id=new_key_id(),
            key_hash=hash_secret(secret),
            name=name,
            credits=money(credits),
            free_credits=money(free_credits),
            created_at=self._clock(),
            scopes=None if scopes is None else parse_scopes(scopes),
        )

        def body(conn: Connection) -> ApiKey:
            row = conn.execute(
                self._sql(f"{INSERT_API_KEY} ON CONFLICT (key_hash) DO NOTHING"
                          f" RETURNING {API_KEY_COLUMNS}"),
                api_key_values(key),
            ).fetchone()
            if row is None:  # that secret exists
                row = conn.execute(
                    self._sql(f"SELECT {API_KEY_COLUMNS} FROM api_keys WHERE key_hash = ?"),
                    (key.key_hash,),
                ).fetchone()
            return row_to_api_key(row)

        return self._run(body, Access.WRITE), secret

    def find_api_key(self, secret: str) -> ApiKey | None:
        """The key whose secret this is (revoked keys included), or None."""
        row = self._row(
            f"SELECT {API_KEY_COLUMNS} FROM api_keys WHERE key_hash = ?", (hash_secret(secret),)
        )
        return None if row is None else row_to_api_key(row)

    def get_api_key(self, key_id: str) -> ApiKey | None:
        """The key with this public id, or None."""
        row = self._row(f"SELECT {API_KEY_COLUMNS} FROM api_keys WHERE key_id = ?", (key_id,))
        return None if row is None else row_to_api_key(row)

    def list_api_keys(self) -> list[ApiKey]:
        """Every key, oldest first."""
        rows = self._rows(
            Access.READ, f"SELECT {API_KEY_COLUMNS} FROM api_keys ORDER BY created_at, key_id"
        )
        return [row_to_api_key(row) for row in rows]

    def revoke_api_key(self, key_id: str) -> bool:
        """Mark the key revoked; False when there is no such key."""
        return self._count("UPDATE api_keys SET revoked = TRUE WHERE key_id = ?", (key_id,)) == 1

    def add_credits(self, key_id: str, amount: float) -> ApiKey:
        """Add (or with a negative amount, remove) paid credits; `UnknownApiKey` if none."""
        rows = self._rows(
            Access.WRITE,
            f"UPDATE api_keys SET credits = openremix_money(credits + ?) WHERE key_id = ?"
            f" RETURNING {API_KEY_COLUMNS}",
            (amount, key_id),
        )
        if not rows:
            raise UnknownApiKey(key_id)
        return row_to_api_key(rows[0])

    def set_api_key_scopes(self, key_id: str, scopes: tuple[str, ...] | None) -> ApiKey:
        """Replace a key's scopes (None: everything); `UnknownApiKey` if there is no such key."""
        stored = None if scopes is None else scopes_json(parse_scopes(scopes))
        rows = self._rows(
            Access.WRITE,
            f"UPDATE api_keys SET scopes = ? WHERE key_id = ? RETURNING {API_KEY_COLUMNS}",
            (stored, key_id),
        )
        if not rows:
            raise UnknownApiKey(key_id)
        return row_to_api_key(rows[0])
