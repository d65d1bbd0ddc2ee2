"""Throttling through the real daemon: one limit across workers, per-client buckets, 429s."""

from __future__ import annotations

import http.client
import threading
import time

import pytest
from support import Hammer, request

CONFIG = """
[server]
trusted_proxies = ["127.0.0.1/32"]

[[routes]]
route = "GET /limited"
integration = { type = "mock", body = '{"ok": true}' }
throttle = { rate = 100, burst = 100 }

[[routes]]
route = "GET /per-client"
integration = { type = "mock", body = '{"ok": true}' }
client_throttle = { rate = 50, burst = 50, key = "header:X-Client" }

[[routes]]
route = "GET /tiny"
integration = { type = "mock", body = '{"ok": true}' }
client_throttle = { rate = 2, burst = 2 }

[[routes]]
route = "GET /leased"
integration = { type = "mock", body = '{"ok": true}' }
throttle = { rate = 200, burst = 1000 }

[[routes]]
route = "GET /free"
integration = { type = "mock", body = '{"ok": true}' }
"""


def assert_one_limit(daemon, path: str, rate: float, burst: float, seconds: float) -> None:
    """Hammer ``path`` well above its limit: accepted = burst + rate x the time requests kept arriving, within 5%."""
    hammer = Hammer(daemon.port, path, seconds=seconds, threads=6).run().join()
    accepted = hammer.statuses.get(200, 0)
    assert set(hammer.statuses) <= {200, 429}, hammer.statuses
    assert hammer.offered_per_second >= 1000, f"only {hammer.offered_per_second:.0f} req/s offered"
    expected = burst + rate * hammer.elapsed
    assert abs(accepted - expected) <= 0.05 * expected, (accepted, expected, hammer.statuses)


def test_one_limit_across_two_workers(start_daemon):
    daemon = start_daemon(CONFIG, workers=2)
    assert len(daemon.worker_pids()) == 2
    assert_one_limit(daemon, "/limited", rate=100, burst=100, seconds=10)


def test_a_leased_limit_is_still_one_limit_across_two_workers(start_daemon):
    """burst 1000: workers take tokens ten at a time (see MemoryLimiter); the total still holds."""
    assert_one_limit(start_daemon(CONFIG, workers=2), "/leased", rate=200, burst=1000, seconds=6)


def test_per_client_buckets_are_independent(start_daemon):
    daemon = start_daemon(CONFIG, workers=2)
    one = Hammer(daemon.port, "/per-client", seconds=4, threads=3, headers={"X-Client": "alpha"}).run()
    two = Hammer(daemon.port, "/per-client", seconds=4, threads=3, headers={"X-Client": "beta"}).run()
    one.join()
    two.join()
    for hammer in (one, two):
        expected = 50 + 50 * hammer.elapsed
        accepted = hammer.statuses.get(200, 0)
        assert hammer.statuses.get(429, 0) > 0
        assert abs(accepted - expected) <= 0.1 * expected, (accepted, expected)


def test_429_shape_and_ratelimit_headers(start_daemon):
    daemon = start_daemon(CONFIG, workers=1)
    ok = daemon.get("/tiny")
    assert ok.status == 200
    assert ok.headers["ratelimit-policy"] == '"client";q=2;w=1'
    assert ok.headers["ratelimit"].startswith('"client";r=1;t=')
    daemon.get("/tiny")
    refused = daemon.get("/tiny")
    assert refused.status == 429
    assert refused.body == b'{"message":"Too Many Requests"}'
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.headers["ratelimit"].startswith('"client";r=0;')
    assert "ratelimit" not in daemon.get("/free").headers


@pytest.mark.parametrize("forwarded", ["203.0.113.5", "198.51.100.7, 127.0.0.1"])
def test_trusted_forwarded_for_names_the_client(start_daemon, forwarded):
    daemon = start_daemon(CONFIG, workers=1)
    statuses = [daemon.get("/tiny", headers={"X-Forwarded-For": forwarded}).status for _ in range(3)]
    assert statuses == [200, 200, 429]
    # Another forwarded client has its own bucket.
    assert daemon.get("/tiny", headers={"X-Forwarded-For": "192.0.2.99"}).status == 200


def test_refused_requests_take_nothing_so_a_client_recovers_at_the_rate(start_daemon):
    daemon = start_daemon(CONFIG, workers=2)
    headers = {"X-Forwarded-For": "192.0.2.1"}
    assert [daemon.get("/tiny", headers=headers).status for _ in range(2)] == [200, 200]
    emptied = time.monotonic()
    # Keep asking while refused: if refusals took tokens, no token would ever come back.
    refusals = 0
    while (status := request(daemon.port, "GET", "/tiny", headers=headers).status) == 429:
        refusals += 1
        assert time.monotonic() - emptied < 3, "no token came back while refused"
    recovered_after = time.monotonic() - emptied
    assert status == 200 and refusals > 0
    # rate = 2/s: the first token is back 0.5 s after the bucket was emptied.
    assert 0.3 <= recovered_after <= 1.5, recovered_after


def test_a_hundred_thousand_clients_stay_within_the_table(start_daemon):
    config = """
[server]
trusted_proxies = ["127.0.0.1/32"]

[throttle]
table_size = 4096

[[routes]]
route = "GET /tiny"
integration = { type = "mock", body = '{"ok": true}' }
client_throttle = { rate = 0.001, burst = 1 }
"""
    daemon = start_daemon(config, workers=2)
    workers = daemon.worker_pids()
    first = {"X-Forwarded-For": "10.0.0.1"}
    assert daemon.get("/tiny", headers=first).status == 200
    assert daemon.get("/tiny", headers=first).status == 429
    rss_before = sum(_rss(pid) for pid in workers)
    counts: dict[int, int] = {}
    lock = threading.Lock()

    def flood(offset: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", daemon.port, timeout=10)
        for i in range(offset, 100_000, 4):
            conn.request("GET", "/tiny", headers={"X-Forwarded-For": f"10.{1 + i // 65536}.{i // 256 % 256}.{i % 256}"})
            response = conn.getresponse()
            response.read()
            with lock:
                counts[response.status] = counts.get(response.status, 0) + 1
        conn.close()

    threads = [threading.Thread(target=flood, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    # Every one of the 100,000 clients was new: each got its first request through.
    assert counts == {200: 100_000}
    growth_mib = (sum(_rss(pid) for pid in workers) - rss_before) / 1024 / 1024
    assert growth_mib < 20, f"workers grew {growth_mib:.1f} MiB"
    # At 0.001 tokens/s the first client's bucket has not refilled: it answers 200
    # only because the flood evicted it (a returning client starts full).
    assert daemon.get("/tiny", headers=first).status == 200


def _rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))
