"""Token buckets in shared memory: one limit, whichever worker a request lands on.

The table is an anonymous shared mapping created before the workers are
forked, so every worker (and every later generation after a reload) sees the
same buckets; no network hop, no extra process.  It is a set-associative
cache: a key hashes to one set of ``WAYS`` slots, each set guarded by one of
``LOCK_STRIPES`` process-shared locks.  Within a set a key takes its own
slot, else an empty one, else the least recently used one, so the table's
memory is fixed however many distinct clients arrive (a flood of new keys
evicts idle buckets, which come back full if their client returns).

Checking and consuming a token is one step under the set's lock, and a
refused request takes nothing, so a client that backs off recovers at the
configured rate.  Time is CLOCK_MONOTONIC, which every process on the host
shares.  Keys are hashed with Python's ``hash()``, which agrees across the
daemon's processes because they are all forked from one supervisor; the
table is the daemon's own and does not outlive it.
"""

from __future__ import annotations

import mmap
import multiprocessing
import struct
import time
from typing import Any

WAYS = 8
LOCK_STRIPES = 64
_SLOT = struct.Struct("<Qdd")  # key hash (0: empty), tokens, last update (monotonic seconds)
LOCK_TIMEOUT = 1.0
"""A critical section takes microseconds: a lock held this long belongs to a worker that died holding it."""


class BucketTable:
    """A fixed number of token buckets shared by every process forked after its creation.

    >>> table = BucketTable(1024)
    >>> table.take(b"client-1", rate=1.0, burst=2.0).allowed
    True
    """

    __slots__ = ("slots", "_sets", "_memory", "_locks")

    def __init__(self, slots: int) -> None:
        self._sets = max(1, slots // WAYS)
        self.slots = self._sets * WAYS
        self._memory = mmap.mmap(-1, self.slots * _SLOT.size)
        # Fork-inherited semaphores: any process may release them, which is what
        # lets a survivor repair a stripe whose holder was killed.
        context = multiprocessing.get_context("fork")
        self._locks = [context.Lock() for _ in range(LOCK_STRIPES)]

    def take(self, key: bytes, rate: float, burst: float, now: float | None = None) -> Decision:
        """Consume one token from ``key``'s bucket if it has one.

        A new bucket starts full (``burst`` tokens) and refills at ``rate``
        tokens per second up to ``burst``.  (One function on purpose: this
        runs for every throttled request.)
        """
        if now is None:
            now = time.monotonic()
        key_hash, set_index = self._locate(key)
        memory = self._memory
        unpack, size = _SLOT.unpack_from, _SLOT.size
        lock = self._lock(set_index)
        try:
            base = set_index * WAYS * size
            offset = victim = base
            victim_updated = float("inf")
            for offset in range(base, base + WAYS * size, size):
                stored_hash, tokens, updated = unpack(memory, offset)
                if stored_hash == key_hash:
                    break
                if stored_hash == 0:
                    updated = float("-inf")
                if updated < victim_updated:
                    victim, victim_updated = offset, updated
            else:
                # Not stored: a new bucket, full, in an empty or the least recently used slot.
                offset, tokens, updated = victim, burst, now
            tokens = min(burst, tokens + max(0.0, now - updated) * rate)
            allowed = tokens >= 1.0
            if allowed:
                tokens -= 1.0
            _SLOT.pack_into(memory, offset, key_hash, tokens, now)
        finally:
            lock.release()
        if allowed:
            return Decision(True, tokens, 0.0)
        return Decision(False, tokens, (1.0 - tokens) / rate if rate > 0 else float("inf"))

    def give_back(self, key: bytes, burst: float) -> None:
        """Return a token taken by :meth:`take` for a request that a later check refused."""
        key_hash, set_index = self._locate(key)
        lock = self._lock(set_index)
        try:
            offset = self._own_slot(set_index, key_hash)
            if offset is not None:
                _, tokens, updated = _SLOT.unpack_from(self._memory, offset)
                _SLOT.pack_into(self._memory, offset, key_hash, min(burst, tokens + 1.0), updated)
        finally:
            lock.release()

    def _locate(self, key: bytes) -> tuple[int, int]:
        # Python's own hash: every worker is forked from one supervisor and so
        # shares its hash secret; it costs a tenth of a cryptographic digest.
        key_hash = (hash(key) & 0xFFFFFFFFFFFFFFFF) or 1
        return key_hash, key_hash % self._sets

    def _lock(self, set_index: int) -> Any:
        """Acquire and return the set's lock; the caller releases it."""
        lock = self._locks[set_index % LOCK_STRIPES]
        if not lock.acquire(False) and not lock.acquire(timeout=LOCK_TIMEOUT):
            # Its holder died inside the critical section: repair the stripe.
            lock.release()
            lock.acquire()
        return lock

    def _own_slot(self, set_index: int, key_hash: int) -> int | None:
        """The offset of the key's slot, or None if its bucket is not stored."""
        base = set_index * WAYS * _SLOT.size
        for offset in range(base, base + WAYS * _SLOT.size, _SLOT.size):
            if _SLOT.unpack_from(self._memory, offset)[0] == key_hash:
                return offset
        return None

    def occupied(self) -> int:
        """How many slots hold a bucket (for tests and diagnostics)."""
        return sum(
            1 for index in range(self.slots) if _SLOT.unpack_from(self._memory, index * _SLOT.size)[0] != 0
        )


class Decision:
    """The outcome of one :meth:`BucketTable.take`."""

    __slots__ = ("allowed", "remaining", "retry_after")

    def __init__(self, allowed: bool, remaining: float, retry_after: float) -> None:
        self.allowed = allowed
        self.remaining = remaining  # tokens left after this request
        self.retry_after = retry_after  # seconds until one token is back (0 when allowed)
