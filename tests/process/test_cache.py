"""The response cache against a real backend that counts what reaches it."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from backend import Backend
from support import request, wait_for


def cache_config(backend: Backend) -> str:
    return f"""
[cache]
max_bytes = "4MiB"

[[routes]]
route = "GET /c/{{item}}"
integration = {{ type = "http", uri = "{backend.url}/items/{{item}}" }}
cache = {{ ttl = "300s", key = {{ query = ["page"], headers = ["Accept-Language"] }} }}

[[routes]]
route = "ANY /any/{{proxy+}}"
integration = {{ type = "http", uri = "{backend.url}/{{proxy}}" }}
cache = {{ ttl = "300s" }}

[[routes]]
route = "GET /short/{{proxy+}}"
integration = {{ type = "http", uri = "{backend.url}/{{proxy}}" }}
cache = {{ ttl = "1s" }}

[[routes]]
route = "GET /mine/{{proxy+}}"
integration = {{ type = "http", uri = "{backend.url}/{{proxy}}" }}
cache = {{ per_identity = true }}

[[routes]]
route = "GET /plain/{{proxy+}}"
integration = {{ type = "http", uri = "{backend.url}/{{proxy}}" }}
"""


@pytest.fixture
def backend():
    with Backend() as running:
        yield running


@pytest.fixture
def gateway(start_daemon, backend):
    return start_daemon(cache_config(backend), workers=1)


def x_cache(gateway, path: str, method: str = "GET", headers: dict[str, str] | None = None) -> str:
    return request(gateway.port, method, path, headers).headers.get("x-cache", "-")


def test_hit_after_miss_then_miss_after_the_ttl(gateway, backend):
    first = request(gateway.port, "GET", "/short/x")
    second = request(gateway.port, "GET", "/short/x")
    assert (first.headers["x-cache"], second.headers["x-cache"]) == ("Miss", "Hit")
    assert second.body == first.body and second.headers["age"] == "0"
    assert second.headers["date"] == first.headers["date"]
    assert len(backend.received) == 1
    wait_for(lambda: x_cache(gateway, "/short/x") == "Miss", 5, "the entry to expire")
    assert len(backend.received) == 2


# (path, request headers, X-Cache expected): named query parameters and headers are in
# the key, in any order; everything else is not, except Accept-Encoding, always.
KEY_RULES = [
    ("/c/a?page=1", {}, "Miss"),
    ("/c/a?page=1&other=9", {}, "Hit"),
    ("/c/a?other=1&page=1", {}, "Hit"),
    ("/c/a?page=2", {}, "Miss"),
    ("/c/a?page=2&page=1", {}, "Miss"),
    ("/c/a?page=1&page=2", {}, "Hit"),
    ("/c/b?page=1", {}, "Miss"),
    ("/c/a?page=1", {"Accept-Language": "fr"}, "Miss"),
    ("/c/a?page=1", {"Accept-Language": "fr"}, "Hit"),
    ("/c/a?page=1", {"Accept-Encoding": "gzip"}, "Miss"),
    ("/c/a?page=1", {"Accept-Encoding": "gzip"}, "Hit"),
    ("/c/a?page=1", {"X-Other": "1"}, "Hit"),
]


def test_key_rules(gateway, backend):
    seen = [(path, headers, x_cache(gateway, path, headers=headers)) for path, headers, _ in KEY_RULES]
    assert seen == KEY_RULES
    assert len(backend.received) == sum(1 for *_, result in KEY_RULES if result == "Miss")


# (path, method, X-Cache of the first and the second request, backend requests for both)
WHAT_IS_STORED = [
    ("/any/status/200", "GET", ("Miss", "Hit"), 1),
    ("/any/status/404", "GET", ("Miss", "Miss"), 2),
    ("/any/status/503", "GET", ("Miss", "Miss"), 2),
    ("/any/x", "POST", ("Bypass", "Bypass"), 2),
    ("/any/x", "DELETE", ("Bypass", "Bypass"), 2),
    ("/any/with-headers?h=Cache-Control:no-store", "GET", ("Miss", "Miss"), 2),
    ("/any/with-headers?h=Cache-Control:private,max-age=60", "GET", ("Miss", "Miss"), 2),
    ("/any/with-headers?h=Cache-Control:no-cache", "GET", ("Miss", "Miss"), 2),
    ("/any/with-headers?h=Set-Cookie:session=1", "GET", ("Miss", "Miss"), 2),
    ("/any/with-headers?h=Cache-Control:max-age=0", "GET", ("Miss", "Miss"), 2),
    ("/any/with-headers?h=Cache-Control:public,max-age=60", "GET", ("Miss", "Hit"), 1),
    ("/plain/x", "GET", ("-", "-"), 2),
]


@pytest.mark.parametrize("path, method, results, backend_requests", WHAT_IS_STORED)
def test_what_is_stored(gateway, backend, path, method, results, backend_requests):
    assert (x_cache(gateway, path, method), x_cache(gateway, path, method)) == results
    assert len(backend.received) == backend_requests


def test_head_is_answered_from_the_get_entry(gateway, backend):
    get = request(gateway.port, "GET", "/any/bytes/5000")
    head = request(gateway.port, "HEAD", "/any/bytes/5000")
    assert get.headers["x-cache"] == "Miss" and head.headers["x-cache"] == "Hit"
    assert head.body == b"" and head.headers["content-length"] == "5000"
    assert len(backend.received) == 1


def test_backend_max_age_shortens_the_ttl(gateway, backend):
    path = "/any/with-headers?h=Cache-Control:max-age=1"
    assert [x_cache(gateway, path), x_cache(gateway, path)] == ["Miss", "Hit"]
    wait_for(lambda: x_cache(gateway, path) == "Miss", 5, "max-age=1 to expire the entry")


def test_authenticated_requests_are_not_shared(gateway, backend):
    alice, bob = {"Authorization": "Bearer alice"}, {"x-api-key": "bob-key"}
    # Without per_identity: never from the cache, never into it.
    assert x_cache(gateway, "/any/private", headers=alice) == "Bypass"
    assert x_cache(gateway, "/any/private", headers=alice) == "Bypass"
    assert x_cache(gateway, "/any/private") == "Miss"
    assert x_cache(gateway, "/any/private", headers=alice) == "Bypass"
    # With per_identity: each caller has entries of its own.
    assert [x_cache(gateway, "/mine/x", headers=who) for who in (alice, alice, bob, bob)] == ["Miss", "Hit", "Miss", "Hit"]
    assert x_cache(gateway, "/mine/x") == "Miss"


def concurrent_gets(port: int, path: str, count: int) -> list[str]:
    async def run() -> list[str]:
        connector = aiohttp.TCPConnector(limit=count)
        async with aiohttp.ClientSession(connector=connector) as session:

            async def one() -> str:
                async with session.get(f"http://127.0.0.1:{port}{path}") as reply:
                    await reply.read()
                    assert reply.status == 200
                    return reply.headers["X-Cache"]

            return await asyncio.gather(*(one() for _ in range(count)))

    return asyncio.run(run())


@pytest.mark.parametrize("workers", [1, 2])
def test_concurrent_misses_fetch_once_per_worker(start_daemon, backend, workers):
    gateway = start_daemon(cache_config(backend), workers=workers)
    results = concurrent_gets(gateway.port, "/any/delayed/0.5", 200)
    fetched = [seen for seen in backend.received if seen.raw_path == "/delayed/0.5"]
    assert 1 <= len(fetched) <= workers, len(fetched)
    assert results.count("Miss") == len(fetched) and results.count("Hit") == 200 - len(fetched)


def test_memory_stays_within_max_bytes(gateway, backend):
    """4 MiB of cache; 40 MiB of distinct 60 KB responses go through it."""
    (pid,) = gateway.worker_pids()
    request(gateway.port, "GET", "/any/bytes/30000")
    before = rss_bytes(pid)
    for size in range(60000, 59300, -1):  # a distinct path, so a distinct entry, each
        reply = request(gateway.port, "GET", f"/any/bytes/{size}")
        assert reply.headers["x-cache"] == "Miss" and len(reply.body) == size
    grown = rss_bytes(pid) - before
    assert grown < 4 * 1024**2 + 30 * 1024**2, f"worker RSS grew by {grown / 1024**2:.1f} MiB"
    # The most recent responses are still cached; the oldest were evicted.
    assert x_cache(gateway, "/any/bytes/59301") == "Hit"
    assert x_cache(gateway, "/any/bytes/60000") == "Miss"


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")
