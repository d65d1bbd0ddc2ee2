"""Token buckets in shared memory: one limit, whichever worker a request lands on.

The table is an anonymous shared mapping created before the workers are
forked, so every worker (and every later generation after a reload) sees the
same buckets; no network hop, no extra process.  It is a set-associative
cache: a key hashes to one set of ``WAYS`` slots, each set guarded by one of
``LOCK_STRIPES`` locks: byte-range locks (``fcntl``) on one memfd, which
the kernel releases when their holder dies, so a worker killed inside the
critical section never leaves a stripe locked and no live holder's lock is
ever taken from it.  Within a set a key takes its own
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

import array
import fcntl
import mmap
import os
import time

WAYS = 8
LOCK_STRIPES = 64


class BucketTable:
    """A fixed number of token buckets shared by every process forked after its creation.

    >>> table = BucketTable(1024)
    >>> table.take(b"client-1", rate=1.0, burst=2.0)
    (1, 1.0)
    """

    __slots__ = ("slots", "_sets", "_memory", "_hashes", "_tokens", "_updated", "_lock_fd")

    def __init__(self, slots: int) -> None:
        self._sets = max(1, slots // WAYS)
        self.slots = self._sets * WAYS
        # Three arrays side by side: key hash (0: empty), tokens, last update
        # (monotonic seconds).  A set's eight hashes are one slice, searched
        # in C by ``list.index`` rather than slot by slot in Python.
        self._memory = mmap.mmap(-1, self.slots * 8 * 3)
        view = memoryview(self._memory)
        size = self.slots * 8
        self._hashes = view[:size].cast("Q")
        self._tokens = view[size : 2 * size].cast("d")
        self._updated = view[2 * size :].cast("d")
        # Forked workers inherit the descriptor; a stripe is one byte of it.
        self._lock_fd = os.memfd_create("gwd-bucket-locks", os.MFD_CLOEXEC)

    def take(self, key: bytes, rate: float, burst: float, most: int = 1, now: float | None = None) -> tuple[int, float]:
        """Consume up to ``most`` whole tokens from ``key``'s bucket, if it has one.

        Returns how many were taken and, when that is at least one, the
        tokens left; when none were (the bucket has less than one), 0 and
        the seconds until it has one.  A new bucket starts full (``burst``
        tokens) and refills at ``rate`` tokens per second up to ``burst``.
        (One function on purpose: this runs for throttled requests.)
        """
        if now is None:
            now = time.monotonic()
        key_hash, first, stripe = self._lock_set(key)
        try:
            slot = self._find(first, key_hash)
            if slot >= 0:
                tokens = self._tokens[slot]
                elapsed = now - self._updated[slot]
                if elapsed > 0.0:
                    tokens += elapsed * rate
                    if tokens > burst:
                        tokens = burst
                else:
                    # Another worker updated it after this one read the clock.
                    now = self._updated[slot]
            else:
                # A new bucket, full, in an empty slot or the least recently used one.
                slot = self._victim(first)
                self._hashes[slot] = key_hash
                tokens = burst
            if tokens >= most:
                taken = most
            else:
                taken = int(tokens)
            tokens -= taken
            self._tokens[slot] = tokens
            self._updated[slot] = now
        finally:
            fcntl.lockf(self._lock_fd, fcntl.LOCK_UN, 1, stripe)
        if taken:
            return taken, tokens
        return 0, (1.0 - tokens) / rate if rate > 0 else float("inf")

    def give_back(self, key: bytes, burst: float) -> None:
        """Return a token taken by :meth:`take` for a request that a later check refused."""
        key_hash, first, stripe = self._lock_set(key)
        try:
            slot = self._find(first, key_hash)
            if slot >= 0:
                self._tokens[slot] = min(burst, self._tokens[slot] + 1.0)
        finally:
            fcntl.lockf(self._lock_fd, fcntl.LOCK_UN, 1, stripe)

    def _lock_set(self, key: bytes) -> tuple[int, int, int]:
        """The key's hash, the first slot of its set, and that set's stripe, locked (the caller unlocks it)."""
        # Python's own hash: every worker is forked from one supervisor and so
        # shares its hash secret; it costs a tenth of a cryptographic digest.
        key_hash = (hash(key) & 0xFFFFFFFFFFFFFFFF) or 1
        first = key_hash % self._sets * WAYS
        stripe = first % LOCK_STRIPES
        fcntl.lockf(self._lock_fd, fcntl.LOCK_EX, 1, stripe)  # held for microseconds by a live holder
        return key_hash, first, stripe

    def _find(self, first: int, key_hash: int) -> int:
        """The slot holding ``key_hash`` in the set starting at ``first``, or -1."""
        hashes = self._hashes
        if hashes[first] == key_hash:
            return first  # where a set's first key lives: the usual case
        ways = hashes[first : first + WAYS].tolist()
        return first + ways.index(key_hash) if key_hash in ways else -1

    def _victim(self, first: int) -> int:
        """The slot a new bucket takes in the set starting at ``first``: an empty one, else the least recently used."""
        ways = self._hashes[first : first + WAYS].tolist()
        if 0 in ways:
            return first + ways.index(0)
        updated = self._updated[first : first + WAYS].tolist()
        return first + updated.index(min(updated))

    def occupied(self) -> int:
        """How many slots hold a bucket: the ``gwd_throttle_buckets`` gauge, read at each scrape.

        A copy of the hash column counted in C: under a millisecond for the
        default 65,536 slots, no lock (a slot changing meanwhile moves the count by one).
        """
        hashes = array.array("Q")
        hashes.frombytes(self._hashes.cast("B"))
        return self.slots - hashes.count(0)

