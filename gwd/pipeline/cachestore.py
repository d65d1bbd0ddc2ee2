"""Where cached responses live: a bounded, least-recently-used store in each worker.

aiocache's in-memory backend keeps every entry until its TTL (with a timer
per entry) and has no size bound, and every look-up through its API is a
chain of coroutines; a cache hit here is one dict look-up.  The store
counts each entry's bytes (body, header lines, key, and a fixed allowance
for the objects around them) and evicts the least recently used entries
until a new one fits in ``max_bytes``.  Expired entries are dropped when
looked up, or evicted like any other.
"""

from __future__ import annotations

from collections import OrderedDict

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
