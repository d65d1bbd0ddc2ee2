"""The per-worker cache store: least recently used out first, bytes counted, expiry on look-up."""

from __future__ import annotations

from gwd.stores.cachestore import ENTRY_OVERHEAD, CachedResponse, MemoryStore


def entry(body: bytes, expires_at: float = 100.0) -> CachedResponse:
    return CachedResponse(200, b"Content-Type: text/plain\r\n", body, 0.0, expires_at)


def test_least_recently_used_entries_are_evicted_first():
    store = MemoryStore(1024 * 1024)
    size = 100_000  # each entry is about a tenth of the store
    for name in ("a", "b", "c", "d", "e", "f", "g", "h", "i", "j"):
        assert store.put(name, entry(b"x" * size))
    assert store.get("a", 0.0) is not None  # a is now the most recently used
    assert store.put("k", entry(b"x" * size))
    assert store.get("b", 0.0) is None and store.get("a", 0.0) is not None
    assert store.evictions == 1
    assert store.stored_bytes <= store.max_bytes


def test_bytes_are_counted_and_given_back():
    store = MemoryStore(1024 * 1024)
    store.put("key", entry(b"12345"))
    assert store.stored_bytes == len("key") + len(b"Content-Type: text/plain\r\n") + 5 + ENTRY_OVERHEAD
    store.put("key", entry(b"1"))  # replacing an entry replaces its bytes
    assert store.stored_bytes == len("key") + len(b"Content-Type: text/plain\r\n") + 1 + ENTRY_OVERHEAD
    assert store.delete_prefix("k") == 1
    assert store.stored_bytes == 0 and len(store) == 0


def test_an_entry_too_large_for_its_share_is_not_stored():
    store = MemoryStore(1024 * 1024)
    assert not store.put("big", entry(b"x" * (1024 * 1024 // 8)))
    assert len(store) == 0


def test_expired_entries_are_dropped_when_looked_up():
    store = MemoryStore(1024 * 1024)
    store.put("k", entry(b"body", expires_at=10.0))
    assert store.get("k", 9.9) is not None
    assert store.get("k", 10.0) is None
    assert len(store) == 0 and store.stored_bytes == 0
