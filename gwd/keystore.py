"""API keys in SQLite under the state directory, stored as SHA-256 hashes only.

The CLI writes; every worker reads, and notices a change within
``POLL_INTERVAL`` through SQLite's ``data_version`` (which moves when
another connection commits), so a created or revoked key takes effect
without a restart.  WAL mode lets the daemon read while the CLI writes.
A key's value is shown once, when it is created, and never stored.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import sqlite3
import time
from dataclasses import dataclass

DATABASE = "keys.db"
MIN_VALUE_LENGTH = 20

_SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    value_sha256 BLOB NOT NULL UNIQUE,
    plan TEXT,
    created_at REAL NOT NULL,
    revoked_at REAL
)
"""


class KeyStoreError(Exception):
    """A key operation that cannot be done; the message says why."""


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: str
    name: str
    plan: str | None
    created_at: float
    revoked_at: float | None


def hash_value(value: str) -> bytes:
    return hashlib.sha256(value.encode("utf-8", "surrogateescape")).digest()


class KeyStore:
    """The key database of one state directory."""

    def __init__(self, state_dir: str) -> None:
        os.makedirs(state_dir, mode=0o700, exist_ok=True)
        self.path = os.path.join(state_dir, DATABASE)
        self._db = sqlite3.connect(self.path, timeout=5.0, isolation_level=None)
        os.chmod(self.path, 0o600)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    def create(self, name: str, plan: str | None, value: str | None) -> tuple[ApiKey, str]:
        """A new key and its value (generated unless given); the value is not kept."""
        if not name or len(name) > 128:
            raise KeyStoreError("a key name must be 1-128 characters")
        if value is None:
            value = secrets.token_urlsafe(30)
        elif len(value) < MIN_VALUE_LENGTH:
            raise KeyStoreError(f"a key value must be at least {MIN_VALUE_LENGTH} characters")
        key = ApiKey("k" + secrets.token_hex(8), name, plan, time.time(), None)
        try:
            self._db.execute(
                "INSERT INTO api_keys (id, name, value_sha256, plan, created_at) VALUES (?, ?, ?, ?, ?)",
                (key.id, key.name, hash_value(value), key.plan, key.created_at),
            )
        except sqlite3.IntegrityError as exc:
            what = "name" if "name" in str(exc) else "value"
            raise KeyStoreError(f"a key with that {what} exists already") from None
        return key, value

    def revoke(self, name: str) -> ApiKey:
        cursor = self._db.execute(
            "UPDATE api_keys SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL", (time.time(), name)
        )
        if cursor.rowcount == 0:
            self.get(name)  # raises when there is no such key
            raise KeyStoreError(f"key {name!r} is revoked already")
        return self.get(name)

    def get(self, name: str) -> ApiKey:
        row = self._db.execute(
            "SELECT id, name, plan, created_at, revoked_at FROM api_keys WHERE name = ?", (name,)
        ).fetchone()
        if row is None:
            raise KeyStoreError(f"no key named {name!r}")
        return ApiKey(*row)

    def list(self) -> list[ApiKey]:
        rows = self._db.execute("SELECT id, name, plan, created_at, revoked_at FROM api_keys ORDER BY created_at")
        return [ApiKey(*row) for row in rows]

    def active_by_hash(self) -> dict[bytes, ApiKey]:
        """Every key that is not revoked, by the SHA-256 of its value."""
        rows = self._db.execute(
            "SELECT value_sha256, id, name, plan, created_at, revoked_at FROM api_keys WHERE revoked_at IS NULL"
        )
        return {row[0]: ApiKey(*row[1:]) for row in rows}

    def version(self) -> int:
        """Changes when another connection commits (SQLite's data_version)."""
        return self._db.execute("PRAGMA data_version").fetchone()[0]
