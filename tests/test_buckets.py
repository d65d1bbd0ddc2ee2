"""Shared token buckets: exact counts across forked processes, refill, bounded memory."""

from __future__ import annotations

import os

from gwd.buckets import BucketTable


def test_consumption_is_atomic_across_processes():
    table = BucketTable(1024)
    read_fd, write_fd = os.pipe()
    children = []
    for _ in range(4):
        pid = os.fork()
        if pid == 0:
            allowed = sum(table.take(b"shared", rate=0.0, burst=1000.0).allowed for _ in range(500))
            os.write(write_fd, b"%d\n" % allowed)
            os._exit(0)
        children.append(pid)
    for pid in children:
        os.waitpid(pid, 0)
    os.close(write_fd)
    counts = [int(line) for line in os.read(read_fd, 4096).split()]
    assert len(counts) == 4
    # 2,000 attempts on a bucket of 1,000 that never refills: exactly 1,000 pass.
    assert sum(counts) == 1000


def test_refill_burst_and_refusal_takes_nothing():
    table = BucketTable(64)
    take = lambda now: table.take(b"k", rate=2.0, burst=5.0, now=now)  # noqa: E731
    assert [take(100.0).allowed for _ in range(6)] == [True] * 5 + [False]
    refused = take(100.0)
    assert not refused.allowed and refused.retry_after == 0.5
    # Refused requests consumed nothing: after 0.5 s exactly one token is back.
    assert take(100.5).allowed
    assert not take(100.5).allowed
    # A long pause refills to the burst, no further.
    assert sum(take(200.0).allowed for _ in range(10)) == 5


def test_keys_are_independent():
    table = BucketTable(64)
    assert table.take(b"a", rate=0.0, burst=1.0).allowed
    assert not table.take(b"a", rate=0.0, burst=1.0).allowed
    assert table.take(b"b", rate=0.0, burst=1.0).allowed


def test_a_flood_of_keys_stays_within_the_table():
    table = BucketTable(4096)
    for i in range(100_000):
        table.take(b"ip-%d" % i, rate=1.0, burst=1.0, now=float(i))
    assert table.occupied() <= table.slots == 4096
    # The most recent keys are still tracked (least recently used ones were evicted).
    assert not table.take(b"ip-99999", rate=0.0, burst=1.0, now=99_999.0).allowed
