"""Where cached responses live: a bounded, least-recently-used store in each worker, or Redis.

aiocache's in-memory backend keeps every entry until its TTL (with a timer
per entry) and has no size bound, and every look-up through its API is a
chain of coroutines; a cache hit here is one dict look-up.  The store
counts each entry's bytes (body, header lines, key, and a fixed allowance
for the objects around them) and evicts the least recently used entries
until a new one fits in ``max_bytes``.  Expired entries are dropped when
looked up, or evicted like any other.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from typing import Any

import aiocache
import redis.exceptions
from aiocache.serializers import MsgPackSerializer

from gwd.stores.outage import TIMEOUT, RedisOutage

log = logging.getLogger("gwd.cache")

ENTRY_OVERHEAD = 512
"""Bytes counted for each entry on top of its key, header lines and body (the Python objects holding them)."""
LARGEST_SHARE = 8
"""A response larger than max_bytes / LARGEST_SHARE is not stored (it would evict too much)."""


class CachedResponse:
    """A response as the cache keeps it: what a hit sends again."""

    __slots__ = ("status", "header_lines", "body", "stored_at", "expires_at", "size")

    def __init__(self, status: int, header_lines: bytes, body: bytes, stored_at: float, expires_at: float) -> None:
        self.status = status
        self.header_lines = header_lines  # the backend's, hop-by-hop ones dropped, Date included
        self.body = body
        self.stored_at = stored_at  # monotonic seconds, for Age
        self.expires_at = expires_at
        self.size = 0


class MemoryStore:
    """At most ``max_bytes`` of cached responses in this worker."""

    __slots__ = ("max_bytes", "_entries", "_bytes", "evictions")

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[str, CachedResponse] = OrderedDict()
        self._bytes = 0
        self.evictions = 0  # entries dropped to make room, kept for the metrics endpoint

    @property
    def stored_bytes(self) -> int:
        return self._bytes

    def get(self, key: str, now: float) -> CachedResponse | None:
        """The fresh entry under ``key``, marked as the most recently used; None if absent or expired."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry.expires_at <= now:
            self._remove(key)
            return None
        self._entries.move_to_end(key)
        return entry

    def put(self, key: str, entry: CachedResponse) -> bool:
        """Store ``entry``, evicting the least recently used ones to make room; False if it is too large."""
        entry.size = len(key) + len(entry.header_lines) + len(entry.body) + ENTRY_OVERHEAD
        if entry.size > self.max_bytes // LARGEST_SHARE:
            return False
        if key in self._entries:
            self._remove(key)
        while self._bytes + entry.size > self.max_bytes:
            _, oldest = self._entries.popitem(last=False)
            self._bytes -= oldest.size
            self.evictions += 1
        self._entries[key] = entry
        self._bytes += entry.size
        return True

    def delete(self, key: str) -> None:
        if key in self._entries:
            self._remove(key)

    def delete_prefix(self, prefix: str) -> int:
        """Drop every entry whose key starts with ``prefix``; how many."""
        doomed = [key for key in self._entries if key.startswith(prefix)]
        for key in doomed:
            self._remove(key)
        return len(doomed)

    def __len__(self) -> int:
        return len(self._entries)

    def _remove(self, key: str) -> None:
        self._bytes -= self._entries.pop(key).size


class CacheUnavailable(Exception):
    """The shared store cannot be reached: the request goes on without the cache."""


class RedisStore:
    """Cached responses in Redis, shared by every worker of every daemon using it (through aiocache).

    Entries are msgpack lists (status, header lines, body, Unix time stored)
    under ``gwd:cache:KEY`` with Redis expiring them.  A fetch takes a short
    lock, ``gwd:cache:KEY-lock`` (SET NX with a lease), so that one process
    in all the daemons goes to the backend while the others poll for the
    entry.  While Redis is down (see :mod:`gwd.stores.outage`) every call
    raises :class:`CacheUnavailable` and the request goes on without the cache.
    """

    POLL_INTERVAL = 0.025

    __slots__ = ("_url", "_cache", "_outage")

    def __init__(self, url: str) -> None:
        self._url = url
        self._cache = aiocache.Cache.from_url(url)
        # encoding=None: values are binary (bodies are bytes), not UTF-8 text.
        self._cache.serializer = MsgPackSerializer(encoding=None, use_list=True)
        self._cache.namespace = "gwd:cache"
        self._cache.timeout = TIMEOUT
        self._outage = RedisOutage(log, f"the response cache at {url}", "requests bypass it")

    async def get(self, key: str, now: float) -> CachedResponse | None:
        try:
            stored = await self._call(self._cache.get, key)
            if stored is None:
                return None
            status, header_lines, body, stored_epoch, expires_epoch = stored
        except (ValueError, TypeError) as exc:
            # Not an entry this version wrote: a miss, and the fetch replaces it.
            log.warning("unreadable cache entry %r: %s", key, exc)
            return None
        # Into this process's monotonic clock, which Age and expiry use.
        return CachedResponse(status, header_lines, body, now - (time.time() - stored_epoch), now + expires_epoch - time.time())

    async def put(self, key: str, entry: CachedResponse) -> None:
        ttl = entry.expires_at - time.monotonic()
        if ttl > 0:
            stored_epoch = time.time() - (time.monotonic() - entry.stored_at)
            value = [entry.status, entry.header_lines, entry.body, stored_epoch, time.time() + ttl]
            await self._call(self._cache.set, key, value, ttl=float(ttl))

    async def delete(self, key: str) -> None:
        await self._call(self._cache.delete, key)

    async def lock(self, key: str, lease: float) -> bool:
        """Take the fetch lock of ``key`` for ``lease`` seconds; False when someone holds it."""
        try:
            await self._call(self._cache.add, key + "-lock", 1, ttl=float(lease))
        except ValueError:
            return False
        return True

    async def unlock(self, key: str) -> None:
        await self._call(self._cache.delete, key + "-lock")

    async def wait_for(self, key: str, lease: float) -> CachedResponse | None:
        """The entry another process is fetching, once stored; None if its lock goes without one."""
        deadline = time.monotonic() + lease
        while time.monotonic() < deadline:
            await asyncio.sleep(self.POLL_INTERVAL)
            # The lock first: the fetcher stores before it unlocks, so once the lock
            # is seen gone, the entry (if it was storable) is there to be read.
            locked = await self._call(self._cache.exists, key + "-lock")
            entry = await self.get(key, time.monotonic())
            if entry is not None:
                return entry
            if not locked:
                return None
        return None

    async def close(self) -> None:
        await self._cache.close()

    async def _call(self, method: Any, *args: Any, **kwargs: Any) -> Any:
        if self._outage.ongoing():
            raise CacheUnavailable(self._url)
        try:
            result = await method(*args, **kwargs)
        except (redis.exceptions.RedisError, OSError, asyncio.TimeoutError) as exc:
            self._outage.failed(exc)
            raise CacheUnavailable(self._url) from None
        self._outage.answered()
        return result
