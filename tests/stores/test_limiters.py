"""The memory limiter: exact for small bursts, leased tokens for large ones, one limit either way."""

from __future__ import annotations

import pytest
from support import forked_results

from gwd.stores.buckets import BucketTable
from gwd.stores.limiters import LEASE_SHARE, MAX_LEASES, MemoryLimiter


def test_a_small_burst_is_checked_in_the_shared_table_every_time():
    table = BucketTable(64)
    one, other = MemoryLimiter(table), MemoryLimiter(table)
    # burst 100 < 2 * LEASE_SHARE: no lease; two limiters (two workers) see each other at once.
    assert one.take(b"k", 1e-9, 100.0) == pytest.approx(99.0)
    assert other.take(b"k", 1e-9, 100.0) == pytest.approx(98.0)
    for _ in range(98):
        assert one.take(b"k", 1e-9, 100.0) >= 0
    assert other.take(b"k", 1e-9, 100.0) < 0


def test_a_large_burst_is_leased_and_holds_as_one_limit_across_processes():
    burst = 1000.0
    lease = int(burst) // LEASE_SHARE
    table = BucketTable(1024)

    def admitted() -> int:
        limiter = MemoryLimiter(table)  # each worker has its own leases
        return sum(limiter.take(b"shared", 0.0, burst) >= 0 for _ in range(500))

    counts = forked_results(4, admitted)
    assert len(counts) == 4
    # Never more than the bucket gives out; at most lease - 1 tokens left unused in each worker.
    assert burst - 4 * (lease - 1) <= sum(counts) <= burst


def test_leased_tokens_are_counted_down_and_given_back_locally():
    table = BucketTable(64)
    limiter = MemoryLimiter(table)
    # burst 1000: a lease of 10 tokens; the shared bucket has 990 left.
    assert limiter.take(b"k", 1e-9, 1000.0) == pytest.approx(999.0)
    assert limiter.take(b"k", 1e-9, 1000.0) == pytest.approx(998.0)
    limiter.give_back(b"k", 1000.0)
    assert limiter.take(b"k", 1e-9, 1000.0) == pytest.approx(998.0)
    # Another worker sees the shared bucket only: 990 left before its own lease.
    assert MemoryLimiter(table).take(b"k", 1e-9, 1000.0) == pytest.approx(989.0)


def test_leases_are_bounded():
    limiter = MemoryLimiter(BucketTable(64 * 1024))
    for i in range(MAX_LEASES + 10):
        limiter.take(b"client-%d" % i, 1.0, 1000.0)
    assert len(limiter._leases) <= MAX_LEASES
