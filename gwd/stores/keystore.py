"""API keys, their usage, and cache flush requests in SQLite under the state directory.

Keys are stored as SHA-256 hashes only; a key's value is shown once, when it
is created.  The CLI writes keys; every worker reads them and notices a
change through SQLite's ``data_version`` (which moves when another
connection commits), so a created or revoked key takes effect without a
restart.  Quota counts are per key and UTC day; a request is counted by one
conditional upsert, atomic across workers (and across daemons sharing the
state directory), and committed before the request goes on, so no count is
lost when the daemon stops, gracefully or not (WAL, synchronous=NORMAL: only
a power loss can cost the last commits).
"""

from __future__ import annotations

import hashlib
import os
import secrets
import sqlite3
import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

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
);
CREATE TABLE IF NOT EXISTS usage (
    key_id TEXT NOT NULL,
    day TEXT NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (key_id, day)
);
CREATE TABLE IF NOT EXISTS cache_flushes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    stage TEXT,
    route TEXT,
    requested_at REAL NOT NULL,
    applied INTEGER NOT NULL DEFAULT 0
);
"""
PERMISSIONS = frozenset({"cache-invalidate"})
"""What a key may be allowed beyond calling routes: cache-invalidate refreshes cached responses."""


class KeyStoreError(Exception):
    """A key operation that cannot be done; the message says why."""


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: str
    name: str
    plan: str | None
    created_at: float
    revoked_at: float | None
    permissions: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class CacheFlush:
    """A ``gwd cache flush`` request: None for stage or route means all of them."""

    id: int
    stage: str | None
    route: str | None


_KEY_COLUMNS = "id, name, plan, created_at, revoked_at, permissions"


def _key(row: tuple) -> ApiKey:
    *fields, permissions = row
    return ApiKey(*fields, frozenset(permissions.split(",")) - {""})


def utc_today(now: float | None = None) -> date:
    return datetime.fromtimestamp(time.time() if now is None else now, timezone.utc).date()


def period_start(period: str, today: date) -> date:
    """The first day of the quota period (day; week from Monday; month) holding ``today``."""
    if period == "week":
        return today - timedelta(days=today.weekday())
    if period == "month":
        return today.replace(day=1)
    return today


def hash_value(value: str) -> bytes:
    return hashlib.sha256(value.encode("utf-8", "surrogateescape")).digest()


class KeyStore:
    """The key database of one state directory."""

    def __init__(self, state_dir: str) -> None:
        os.makedirs(state_dir, mode=0o700, exist_ok=True)
        self.path = os.path.join(state_dir, DATABASE)
        # Created private; an existing file keeps the owner and mode it has.
        os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600))
        self._db = sqlite3.connect(self.path, timeout=5.0, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(api_keys)")}
        if "permissions" not in columns:  # a database from before permissions existed
            self._db.execute("ALTER TABLE api_keys ADD COLUMN permissions TEXT NOT NULL DEFAULT ''")
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(cache_flushes)")}
        if "applied" not in columns:  # a database from before flushes were acknowledged
            self._db.execute("ALTER TABLE cache_flushes ADD COLUMN applied INTEGER NOT NULL DEFAULT 0")

    def close(self) -> None:
        self._db.close()

    def create(
        self, name: str, plan: str | None, value: str | None, permissions: frozenset[str] = frozenset()
    ) -> tuple[ApiKey, str]:
        """A new key and its value (generated unless given); the value is not kept."""
        if not name or len(name) > 128:
            raise KeyStoreError("a key name must be 1-128 characters")
        if permissions - PERMISSIONS:
            raise KeyStoreError(f"unknown permission {sorted(permissions - PERMISSIONS)[0]!r} (known: {', '.join(sorted(PERMISSIONS))})")
        if value is None:
            value = secrets.token_urlsafe(30)
        elif len(value) < MIN_VALUE_LENGTH:
            raise KeyStoreError(f"a key value must be at least {MIN_VALUE_LENGTH} characters")
        key = ApiKey("k" + secrets.token_hex(8), name, plan, time.time(), None, permissions)
        try:
            self._db.execute(
                "INSERT INTO api_keys (id, name, value_sha256, plan, created_at, permissions) VALUES (?, ?, ?, ?, ?, ?)",
                (key.id, key.name, hash_value(value), key.plan, key.created_at, ",".join(sorted(permissions))),
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
        row = self._db.execute(f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise KeyStoreError(f"no key named {name!r}")
        return _key(row)

    def list(self) -> list[ApiKey]:
        rows = self._db.execute(f"SELECT {_KEY_COLUMNS} FROM api_keys ORDER BY created_at")
        return [_key(row) for row in rows]

    def active_by_hash(self) -> dict[bytes, ApiKey]:
        """Every key that is not revoked, by the SHA-256 of its value."""
        rows = self._db.execute(f"SELECT value_sha256, {_KEY_COLUMNS} FROM api_keys WHERE revoked_at IS NULL")
        return {row[0]: _key(row[1:]) for row in rows}

    def request_cache_flush(self, stage: str | None, route: str | None) -> int:
        """Ask every running worker to drop cached responses of ``stage`` and ``route`` (None: all); the request's id."""
        cursor = self._db.execute(
            "INSERT INTO cache_flushes (stage, route, requested_at) VALUES (?, ?, ?)", (stage, route, time.time())
        )
        # Old requests have been seen by every worker long ago.
        self._db.execute("DELETE FROM cache_flushes WHERE requested_at < ?", (time.time() - 3600,))
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    def cache_flush_applied(self, flush_id: int) -> None:
        """A worker dropped what flush ``flush_id`` asked for."""
        self._db.execute("UPDATE cache_flushes SET applied = applied + 1 WHERE id = ?", (flush_id,))

    def cache_flush_workers(self, flush_id: int) -> int:
        """How many workers have applied flush ``flush_id``."""
        row = self._db.execute("SELECT applied FROM cache_flushes WHERE id = ?", (flush_id,)).fetchone()
        return row[0] if row else 0

    def cache_flushes_after(self, last_id: int) -> list[CacheFlush]:
        """Flush requests newer than ``last_id``, oldest first."""
        rows = self._db.execute("SELECT id, stage, route FROM cache_flushes WHERE id > ? ORDER BY id", (last_id,))
        return [CacheFlush(*row) for row in rows]

    def last_cache_flush(self) -> int:
        (last,) = self._db.execute("SELECT COALESCE(MAX(id), 0) FROM cache_flushes").fetchone()
        return last

    def consume_quota(self, key_id: str, period: str, limit: int, now: float | None = None) -> bool:
        """Count one request of ``key_id`` unless its ``period`` (day, week, month) already has ``limit``."""
        today = utc_today(now)
        if period == "day":
            cursor = self._db.execute(
                "INSERT INTO usage (key_id, day, count) VALUES (?, ?, 1)"
                " ON CONFLICT (key_id, day) DO UPDATE SET count = count + 1 WHERE count < ?",
                (key_id, today.isoformat(), limit),
            )
            return cursor.rowcount == 1
        start = period_start(period, today)
        # Summing the period's days and counting today must be one step: take the write lock first.
        self._db.execute("BEGIN IMMEDIATE")
        try:
            (used,) = self._db.execute(
                "SELECT COALESCE(SUM(count), 0) FROM usage WHERE key_id = ? AND day >= ?", (key_id, start.isoformat())
            ).fetchone()
            allowed = used < limit
            if allowed:
                self._db.execute(
                    "INSERT INTO usage (key_id, day, count) VALUES (?, ?, 1)"
                    " ON CONFLICT (key_id, day) DO UPDATE SET count = count + 1",
                    (key_id, today.isoformat()),
                )
        finally:
            self._db.execute("COMMIT")
        return allowed

    def usage(self, name: str | None, first_day: str, last_day: str) -> list[tuple[str, str, int]]:
        """(key name, day, requests) for every counted day in [first_day, last_day], ISO dates."""
        query = (
            "SELECT api_keys.name, usage.day, usage.count FROM usage JOIN api_keys ON api_keys.id = usage.key_id"
            " WHERE usage.day BETWEEN ? AND ?"
        )
        parameters: list[str] = [first_day, last_day]
        if name is not None:
            self.get(name)  # raises when there is no such key
            query += " AND api_keys.name = ?"
            parameters.append(name)
        return list(self._db.execute(query + " ORDER BY api_keys.name, usage.day", parameters))

    def version(self) -> int:
        """Changes when another connection commits (SQLite's data_version)."""
        return self._db.execute("PRAGMA data_version").fetchone()[0]
