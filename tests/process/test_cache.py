"""The response cache against a real backend that counts what reaches it."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from backend import Backend
from support import ROOT, concurrent_gets, request, scrape, wait_for, x_cache


def cache_config(backend: Backend, state_dir: Path) -> str:
    return f"""
[server]
state_dir = "{state_dir}"

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

[[routes]]
route = "GET /allow/{{proxy+}}"
integration = {{ type = "http", uri = "{backend.url}/{{proxy}}" }}
cache = {{ invalidation = "allow" }}

[[routes]]
route = "GET /keyed"
integration = {{ type = "mock", body = "key accepted" }}
api_key_required = true

[[routes]]
route = "GET /ignore/{{proxy+}}"
integration = {{ type = "http", uri = "{backend.url}/{{proxy}}" }}
cache = {{ invalidation = "ignore" }}
"""


@pytest.fixture
def backend():
    with Backend() as running:
        yield running


@pytest.fixture
def gateway(start_daemon, backend, tmp_path):
    return start_daemon(cache_config(backend, tmp_path / "state"), workers=1)


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


@pytest.mark.parametrize("workers", [1, 2])
def test_concurrent_misses_fetch_once_per_worker(start_daemon, backend, workers, tmp_path):
    gateway = start_daemon(cache_config(backend, tmp_path / "state"), workers=workers)
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


def gwd(daemon, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gwd", *args, "-c", str(daemon.config_path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=30,
    )


def test_invalidation_modes(gateway, backend):
    refresh = {"Cache-Control": "max-age=0"}
    created = gwd(gateway, "keys", "create", "--name", "ops", "--permission", "cache-invalidate")
    assert created.returncode == 0, created.stderr
    ops = {**refresh, "x-api-key": created.stdout.splitlines()[-1]}
    plain_key = gwd(gateway, "keys", "create", "--name", "app").stdout.splitlines()[-1]
    wait_for(lambda: request(gateway.port, "GET", "/keyed", ops).status == 200, 5, "the new keys to take effect")
    for prefix in ("/allow", "/ignore", "/any"):
        assert x_cache(gateway, f"{prefix}/x") == "Miss"
    # allow: anyone refreshes; the refreshed entry then serves everyone.
    assert x_cache(gateway, "/allow/x", headers=refresh) == "Miss"
    assert x_cache(gateway, "/allow/x") == "Hit"
    # ignore: a refresh is served like any request.
    assert x_cache(gateway, "/ignore/x", headers=refresh) == "Hit"
    assert x_cache(gateway, "/ignore/x", headers={"Cache-Control": "no-cache"}) == "Hit"
    # require_key (the default): only a key with the cache-invalidate permission refreshes.
    def refreshes_seen() -> int:
        return sum(1 for seen in backend.received if seen.raw_path == "/x")

    before = refreshes_seen()
    assert x_cache(gateway, "/any/x", headers=refresh) == "Hit"
    assert x_cache(gateway, "/any/x", headers={**refresh, "x-api-key": plain_key}) == "Bypass"
    assert refreshes_seen() == before + 1  # the bypass went to the backend; nothing was refreshed
    assert x_cache(gateway, "/any/x", headers=ops) == "Miss"
    assert refreshes_seen() == before + 2
    assert x_cache(gateway, "/any/x") == "Hit"


def test_flush_empties_the_named_route_on_all_workers(start_daemon, backend, tmp_path):
    daemon = start_daemon(cache_config(backend, tmp_path / "state"), workers=2)
    assert len(daemon.worker_pids()) == 2
    # Fresh connections until each worker has fetched (missed) both entries once: then both hold both.
    for path in ("/any/a", "/c/b?page=1"):
        fetched = []

        def both_workers_fetched(path: str = path, fetched: list = fetched) -> bool:
            fetched.extend(result for _ in range(10) if (result := x_cache(daemon, path)) == "Miss")
            return len(fetched) >= 2

        wait_for(both_workers_fetched, 20, f"each worker to cache {path}")
        assert len(fetched) == 2, fetched
    assert [x_cache(daemon, "/any/a") for _ in range(10)] == ["Hit"] * 10

    refused = gwd(daemon, "cache", "flush", "--route", "GET /nope")
    assert refused.returncode == 2 and "no route" in refused.stderr
    flushed = gwd(daemon, "cache", "flush", "--route", "ANY /any/{proxy+}")
    assert flushed.returncode == 0, flushed.stderr
    assert flushed.stdout.strip() == "cache flushed (stage all, route ANY /any/{proxy+}) by 2 workers"
    misses = []

    def both_workers_refetched() -> bool:
        misses.extend(result for _ in range(20) if (result := x_cache(daemon, "/any/a")) == "Miss")
        return len(misses) >= 2

    wait_for(both_workers_refetched, 20, "each worker to drop its entry and fetch it again")
    assert len(misses) == 2  # one per worker, not more
    # The other route's entries were not touched, on either worker.
    assert [x_cache(daemon, "/c/b?page=1") for _ in range(10)] == ["Hit"] * 10


def test_flush_with_no_daemon_running_or_nothing_cached_says_so(backend, tmp_path):
    config = tmp_path / "gwd.toml"
    config.write_text(cache_config(backend, tmp_path / "state"))
    stopped = subprocess.run([sys.executable, "-m", "gwd", "cache", "flush", "-c", str(config)], capture_output=True, text=True, cwd=ROOT, timeout=30)
    assert stopped.returncode == 1, stopped
    assert "no running daemon applied the flush" in stopped.stderr and str(tmp_path / "state") in stopped.stderr
    config.write_text(f'[server]\nstate_dir = "{tmp_path / "state"}"\n[[routes]]\nroute = "GET /a"\nintegration = {{ type = "mock" }}\n')
    uncached = subprocess.run([sys.executable, "-m", "gwd", "cache", "flush", "-c", str(config)], capture_output=True, text=True, cwd=ROOT, timeout=30)
    assert uncached.returncode == 2 and "nothing to flush" in uncached.stderr, uncached


class Connection:
    """One keep-alive client connection, read response by response (HTTP/1.1, Content-Length bodies)."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self._buffer = b""

    def send(self, *requests: tuple[str, str]) -> None:
        """(method, path) requests, in one write: pipelined."""
        self.sock.sendall(b"".join(b"%s %s HTTP/1.1\r\nHost: gwd\r\n\r\n" % (m.encode(), p.encode()) for m, p in requests))

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def response(self, head_only: bool = False) -> tuple[dict[str, str], bytes]:
        """The next response's headers (lower-case names) and body."""
        while b"\r\n\r\n" not in self._buffer:
            self._receive()
        head, self._buffer = self._buffer.split(b"\r\n\r\n", 1)
        lines = [line.decode().split(": ", 1) for line in head.split(b"\r\n")[1:]]
        headers = {name.lower(): value for name, value in lines}
        length = 0 if head_only else int(headers["content-length"])
        while len(self._buffer) < length:
            self._receive()
        body, self._buffer = self._buffer[:length], self._buffer[length:]
        return headers, body

    def closed_by_peer(self) -> bool:
        return self.sock.recv(1) == b""

    def _receive(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("the gateway closed the connection")
        self._buffer += data

    def close(self) -> None:
        self.sock.close()


def warmed_connection(daemon, path: str) -> Connection:
    """A connection whose request loop has answered ``path`` twice (a miss, then a hit), so it waits idle."""
    connection = Connection(daemon.port)
    for expected in ("Miss", "Hit"):
        connection.send(("GET", path))
        assert connection.response()[0]["x-cache"] == expected
    return connection


def test_pipelined_requests_keep_their_order_around_hits(gateway, backend):
    # Hits are answered as they arrive, unless something before them on the connection is still to be answered.
    connection = warmed_connection(gateway, "/any/a")
    try:
        connection.send(("GET", "/any/a"), ("GET", "/plain/delayed/0.3"), ("GET", "/any/a"), ("HEAD", "/any/a"))
        replies = [connection.response(), connection.response(), connection.response(), connection.response(head_only=True)]
        assert [headers.get("x-cache") for headers, _ in replies] == ["Hit", None, "Hit", "Hit"]
        assert replies[1][1] == b'{"delayed": true}'
        assert replies[3][0]["content-length"] == str(len(replies[0][1])) and replies[3][1] == b""
        ids = [headers["x-request-id"] for headers, _ in replies]
        assert ids == sorted(ids), "request ids follow the order the requests came in"
        # A hit that arrives while a request is under way waits for it.
        connection.send(("GET", "/plain/delayed/0.5"))
        wait_for(lambda: sum(r.raw_path == "/delayed/0.5" for r in backend.received) == 1, 5, "the backend to get it")
        connection.send(("GET", "/any/a"))
        first, second = connection.response(), connection.response()
        assert first[1] == b'{"delayed": true}' and second[0]["x-cache"] == "Hit"
    finally:
        connection.close()
    # Every request has its access-log line and its count, however it was answered.
    answered = {headers["x-request-id"]: headers for headers, _ in replies + [first, second]}
    wait_for(lambda: answered.keys() <= {line["requestId"] for line in gateway.access_lines()}, 5, "the access log")
    logged = {line["requestId"]: line for line in gateway.access_lines()}
    assert [logged[i]["routeKey"] for i in ids] == ["ANY /any/{proxy+}", "GET /plain/{proxy+}", "ANY /any/{proxy+}", "ANY /any/{proxy+}"]
    assert [logged[i]["httpMethod"] for i in ids] == ["GET", "GET", "GET", "HEAD"]
    hits = 'gwd_cache_requests_total{api="default",result="hit",route="ANY /any/{proxy+}",stage="$default"}'
    wait_for(lambda: f"{hits} 5.0" in scrape(gateway), 5, "five hits counted: one warming, four here")


def test_hits_answered_as_parsed_are_keyed_and_logged_as_the_chain_does(gateway, backend):
    # The first request goes through the route's chain (a miss); the same request on the now idle
    # connection is answered as it is parsed, from what the parser gave (no aiohttp request object).
    head = b" HTTP/1.1\r\nHost: gwd\r\nUser-Agent: probe/1\r\nAccept-Language: de\r\n\r\n"
    targets = [b"/c/caf%C3%A9?page=2&x=1", b"/c/caf%C3%A9?x=9&page=2", b"/c/caf%C3%A9?page=3", b"http://gwd/c/caf%C3%A9?page=2"]
    connection = Connection(gateway.port)
    try:
        replies = []
        for target in targets:
            connection.send_raw(b"GET " + target + head)
            replies.append(connection.response()[0])
    finally:
        connection.close()
    # The named query parameter is in the key, others are not; an absolute-form target is the same resource.
    assert [headers["x-cache"] for headers in replies] == ["Miss", "Hit", "Miss", "Hit"]
    ids = [headers["x-request-id"] for headers in replies]
    wait_for(lambda: set(ids) <= {line["requestId"] for line in gateway.access_lines()}, 5, "the access log")
    logged = {line["requestId"]: line for line in gateway.access_lines()}
    chain = logged[ids[0]]
    assert (chain["ip"], chain["path"], chain["userAgent"], chain["protocol"]) == ("127.0.0.1", "/c/café", "probe/1", "HTTP/1.1")
    fields = ("ip", "path", "userAgent", "protocol", "httpMethod", "routeKey", "stage", "status", "responseLength")
    for hit in (ids[1], ids[3]):
        assert {name: logged[hit][name] for name in fields} == {name: chain[name] for name in fields}


def test_hits_keep_an_idle_connection_open_until_its_keepalive_timeout(start_daemon, backend, tmp_path):
    config = cache_config(backend, tmp_path / "state").replace("[server]\n", '[server]\nkeepalive_timeout = "1s"\n')
    daemon = start_daemon(config, workers=1)
    connection = warmed_connection(daemon, "/any/a")
    try:
        # Two seconds of hits, a quarter second apart: each one starts the idle timeout again.
        busy_until = time.monotonic() + 2
        while True:
            connection.send(("GET", "/any/a"))
            assert connection.response()[0]["x-cache"] == "Hit"
            answered = time.monotonic()
            if answered > busy_until:
                break
            time.sleep(0.25)  # the client's pace, not a wait for the gateway
        assert connection.closed_by_peer()
        idle = time.monotonic() - answered
        assert 0.9 <= idle <= 4, idle
    finally:
        connection.close()
