"""Shared token buckets: exact counts across forked processes, refill, bounded memory."""

from __future__ import annotations

import os
import signal
import time

import pytest
from support import forked_results

from gwd.stores.buckets import BucketTable


def test_consumption_is_atomic_across_processes():
    table = BucketTable(1024)
    counts = forked_results(4, lambda: sum(table.take(b"shared", rate=0.0, burst=1000.0)[0] for _ in range(500)))
    assert len(counts) == 4
    # 2,000 attempts on a bucket of 1,000 that never refills: exactly 1,000 pass.
    assert sum(counts) == 1000


def test_refill_burst_and_refusal_takes_nothing():
    table = BucketTable(64)
    take = lambda now: table.take(b"k", rate=2.0, burst=5.0, now=now)  # noqa: E731
    assert [take(100.0)[0] for _ in range(6)] == [1] * 5 + [0]
    # Refused: nothing taken, and the seconds until a token is back.
    assert take(100.0) == (0, 0.5)
    # Refused requests consumed nothing: after 0.5 s exactly one token is back.
    assert take(100.5)[0]
    assert not take(100.5)[0]
    # A long pause refills to the burst, no further.
    assert sum(take(200.0)[0] for _ in range(10)) == 5


def test_keys_are_independent():
    table = BucketTable(64)
    assert table.take(b"a", rate=0.0, burst=1.0)[0]
    assert not table.take(b"a", rate=0.0, burst=1.0)[0]
    assert table.take(b"b", rate=0.0, burst=1.0)[0]


def test_a_flood_of_keys_stays_within_the_table():
    table = BucketTable(4096)
    for i in range(100_000):
        table.take(b"ip-%d" % i, rate=1.0, burst=1.0, now=float(i))
    assert table.occupied() <= table.slots == 4096
    # The most recent keys are still tracked (least recently used ones were evicted).
    assert not table.take(b"ip-99999", rate=0.0, burst=1.0, now=99_999.0)[0]


def test_one_set_holds_eight_keys_and_evicts_the_least_recently_used():
    table = BucketTable(8)  # a single set: every key competes for its eight slots
    assert table.slots == 8
    for i in range(8):
        assert table.take(b"k%d" % i, rate=0.0, burst=2.0, now=float(i))[0]
    for i in range(8):
        # Each key found again in its own slot: one token left, then none.
        assert table.take(b"k%d" % i, rate=0.0, burst=2.0, now=10.0 + i)[0]
        assert not table.take(b"k%d" % i, rate=0.0, burst=2.0, now=10.0 + i)[0]
    # A ninth key takes the slot of k0, the least recently used; k0 comes back full.
    assert table.take(b"new", rate=0.0, burst=2.0, now=20.0)[0]
    assert table.occupied() == 8
    assert table.take(b"k0", rate=0.0, burst=2.0, now=21.0)[0]
    assert not table.take(b"k7", rate=0.0, burst=2.0, now=22.0)[0]


def test_give_back_returns_one_token_to_its_own_key():
    table = BucketTable(8)
    for key in (b"a", b"b"):
        assert table.take(key, rate=0.0, burst=1.0)[0]
    table.give_back(b"b", burst=1.0)
    table.give_back(b"never-taken", burst=1.0)  # not stored: nothing to return, nothing created
    assert not table.take(b"a", rate=0.0, burst=1.0)[0]
    assert table.take(b"b", rate=0.0, burst=1.0)[0]
    assert table.occupied() == 2


def test_a_clock_reading_older_than_the_last_update_neither_refills_nor_drains():
    table = BucketTable(64)
    assert table.take(b"k", rate=10.0, burst=3.0, now=100.0)[0]
    # Another worker updated the bucket at 100.0 after this one read 99.0.
    assert table.take(b"k", rate=10.0, burst=3.0, now=99.0)[1] == 1.0
    # Refill is counted from 100.0, not from the older reading.
    assert table.take(b"k", rate=10.0, burst=3.0, now=100.1)[1] == pytest.approx(1.0)


def test_taking_several_tokens_takes_what_there_is():
    table = BucketTable(64)
    assert table.take(b"k", rate=1.0, burst=25.0, most=10, now=5.0) == (10, 15.0)
    assert table.take(b"k", rate=1.0, burst=25.0, most=10, now=5.0) == (10, 5.0)
    # Fewer whole tokens than asked for: all of them, and the fraction stays.
    assert table.take(b"k", rate=1.0, burst=25.0, most=10, now=5.5) == (5, pytest.approx(0.5))
    assert table.take(b"k", rate=1.0, burst=25.0, most=10, now=5.5) == (0, pytest.approx(0.5))


def _child_holding_the_lock_of(table: BucketTable, key: bytes, hold: float | None) -> int:
    """Fork a process that locks ``key``'s stripe, says so, and holds it ``hold`` seconds (None: until killed)."""
    ready_read, ready_write = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            _, _, stripe = table._lock_set(key)
            os.write(ready_write, b"x")
            time.sleep(hold if hold is not None else 60)
        finally:
            os._exit(0)
    os.close(ready_write)
    assert os.read(ready_read, 1) == b"x"
    os.close(ready_read)
    return pid


def test_a_worker_killed_inside_the_lock_leaves_it_free():
    table = BucketTable(1024)
    pid = _child_holding_the_lock_of(table, b"k", None)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    started = time.monotonic()
    assert table.take(b"k", rate=1.0, burst=5.0)[0] == 1
    assert time.monotonic() - started < 0.5  # the kernel released it with its holder


def test_a_live_holders_lock_is_never_taken_from_it():
    table = BucketTable(1024)
    pid = _child_holding_the_lock_of(table, b"k", 1.5)
    started = time.monotonic()
    table.take(b"k", rate=1.0, burst=5.0)
    waited = time.monotonic() - started
    os.waitpid(pid, 0)
    # The holder kept it for 1.5 s, longer than any timeout after which a lock could be thought abandoned.
    assert waited > 1.2, f"took the lock after {waited:.2f}s, while its holder was alive"
