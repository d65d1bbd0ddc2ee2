"""Hostile input, as raw bytes on a socket: every case gets its status, the backend sees nothing (or one clean
request), no response repeats the request's bytes, and the worker serves the next request."""

from __future__ import annotations

import socket
import time

import pytest
from backend import Backend
from support import raw_exchange, request, status_of

pytestmark = pytest.mark.process

CONFIG = """
[server]
header_timeout = "1s"
keepalive_timeout = "2s"
body_timeout = "1s"
max_body = "1MiB"

[log]
access = "off"

[[routes]]
route = "ANY /api/{proxy+}"
integration = { type = "http", uri = "BACKEND/{proxy}" }

[[routes]]
route = "GET /admin"
integration = { type = "http", uri = "BACKEND/admin" }
allow = ["10.0.0.0/8"]
"""

H = b"Host: gw.test\r\n"
SECRET = b"Sekr1t-Token-Value"


def chunked(size: int) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for piece in [b"x" * 65536] * (size // 65536)) + b"0\r\n\r\n"


# (case id, bytes sent, expected status, requests the backend records)
CASES = [
    ("CL and TE together", b"POST /api/x HTTP/1.1\r\n" + H + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, 0),
    ("two different Content-Lengths", b"POST /api/x HTTP/1.1\r\n" + H + b"Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", 400, 0),
    ("two equal Content-Lengths", b"POST /api/x HTTP/1.1\r\n" + H + b"Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello", 400, 0),
    ("Content-Length with a sign", b"POST /api/x HTTP/1.1\r\n" + H + b"Content-Length: +5\r\n\r\nhello", 400, 0),
    ("Content-Length in hex", b"POST /api/x HTTP/1.1\r\n" + H + b"Content-Length: 0x5\r\n\r\nhello", 400, 0),
    ("Content-Length list", b"POST /api/x HTTP/1.1\r\n" + H + b"Content-Length: 5, 5\r\n\r\nhello", 400, 0),
    ("negative Content-Length", b"POST /api/x HTTP/1.1\r\n" + H + b"Content-Length: -1\r\n\r\n", 400, 0),
    ("TE not ending in chunked", b"POST /api/x HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n", 400, 0),
    ("TE xchunked", b"POST /api/x HTTP/1.1\r\n" + H + b"Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", 400, 0),
    ("space before the colon", b"POST /api/x HTTP/1.1\r\n" + H + b"Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n", 400, 0),
    ("TE in HTTP/1.0", b"POST /api/x HTTP/1.0\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, 0),
    ("bare LF line ends", b"GET /api/x HTTP/1.1\n" + b"Host: gw.test\n\n", 400, 0),
    ("obs-fold continuation", b"GET /api/x HTTP/1.1\r\n" + H + b"X-A: one\r\n two\r\n\r\n", 400, 0),
    ("NUL in a header value", b"GET /api/x HTTP/1.1\r\n" + H + b"X-A: a\x00b\r\n\r\n", 400, 0),
    ("CR in a header value", b"GET /api/x HTTP/1.1\r\n" + H + b"X-A: a\rb\r\n\r\n", 400, 0),
    ("space in a header name", b"GET /api/x HTTP/1.1\r\n" + H + b"X Bad: 1\r\n\r\n", 400, 0),
    ("bad chunk size", b"POST /api/x HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n", 400, 0),
    ("chunk size overflow", b"POST /api/x HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFFFFFF\r\nx\r\n0\r\n\r\n", 400, 0),
    ("duplicate Host", b"GET /api/x HTTP/1.1\r\n" + H + b"Host: evil.test\r\n\r\n", 400, 0),
    ("no Host in HTTP/1.1", b"GET /api/x HTTP/1.1\r\nX-A: 1\r\n\r\n", 400, 0),
    ("NUL in the method", b"G\x00T /api/x HTTP/1.1\r\n" + H + b"X-Token: " + SECRET + b"\r\n\r\n", 400, 0),
    ("space in the target", b"GET /api/a b HTTP/1.1\r\n" + H + b"\r\n", 400, 0),
    ("encoded dot-dot", b"GET /api/%2e%2e/admin HTTP/1.1\r\n" + H + b"\r\n", 400, 0),
    ("dot-dot", b"GET /api/../admin HTTP/1.1\r\n" + H + b"\r\n", 400, 0),
    ("encoded slash dot-dot", b"GET /api/x%2F..%2Fadmin HTTP/1.1\r\n" + H + b"\r\n", 400, 0),
    ("double slash", b"GET //admin HTTP/1.1\r\n" + H + b"\r\n", 400, 0),
    ("request line over 8 KiB", b"GET /api/" + b"a" * 9000 + b" HTTP/1.1\r\n" + H + b"\r\n", 414, 0),
    ("one header over 10 KiB", b"GET /api/x HTTP/1.1\r\n" + H + b"X-Big: " + b"b" * 11000 + b"\r\n\r\n", 431, 0),
    ("101 headers", b"GET /api/x HTTP/1.1\r\n" + H + b"".join(b"X-%d: 1\r\n" % n for n in range(101)) + b"\r\n", 431, 0),
    ("headers over 10 KiB in all", b"GET /api/x HTTP/1.1\r\n" + H + b"".join(b"X-%d: %s\r\n" % (n, b"v" * 400) for n in range(30)) + b"\r\n", 431, 0),
    ("declared body over the limit", b"POST /api/x HTTP/1.1\r\n" + H + b"Content-Length: 2097152\r\n\r\n" + b"x" * 65536, 413, 0),
    ("chunked body over the limit", b"POST /api/x HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n" + chunked(2 * 1024 * 1024), 413, 0),
    ("Expect with a body over the limit", b"POST /api/x HTTP/1.1\r\n" + H + b"Expect: 100-continue\r\nContent-Length: 2097152\r\n\r\n", 413, 0),
    (
        "GET with Upgrade and a smuggled body",
        b"GET /api/x HTTP/1.1\r\n" + H + b"Upgrade: websocket\r\nConnection: Upgrade\r\nContent-Length: 37\r\n\r\n"
        b"GET /admin HTTP/1.1\r\nHost: gw.test\r\n\r\n",
        None,  # see test_upgrade_with_a_body_smuggles_nothing
        None,
    ),
]


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    from support import Daemon

    with Backend() as backend:
        directory = tmp_path_factory.mktemp("hostile")
        daemon = Daemon(directory, CONFIG.replace("BACKEND", backend.url), workers=1).start()
        try:
            yield daemon, backend
        finally:
            daemon.stop()


@pytest.mark.parametrize("name,data,status,reaching", [c for c in CASES if c[2] is not None], ids=[c[0] for c in CASES if c[2] is not None])
def test_hostile_request(gateway, name, data, status, reaching):
    daemon, backend = gateway
    before = len(backend.received)
    response = raw_exchange(daemon.port, data)
    assert status_of(response) == status, response[:200]
    head, _, body = response.partition(b"\r\n\r\n")
    assert body.startswith(b'{"message":"'), body[:100]
    assert SECRET not in response and b"/admin" not in body and b"\x00" not in body
    assert len(backend.received) - before == reaching
    assert request(daemon.port, "GET", "/api/ok").status == 200  # the worker serves on


def test_upgrade_with_a_body_smuggles_nothing(gateway):
    daemon, backend = gateway
    before = len(backend.received)
    response = raw_exchange(daemon.port, CASES[-1][1], responses=2, wait=3)
    # One answer, from the backend, for the outer request; the bytes in its body are never a request.
    assert response.count(b"HTTP/1.1 ") == 1
    assert status_of(response) in (200, 400)
    assert all(received.raw_path != "/admin" for received in backend.received[before:])
    assert len(backend.received) - before <= 1
    assert request(daemon.port, "GET", "/api/ok").status == 200


def test_connection_header_cannot_strip_what_gwd_adds(gateway):
    daemon, backend = gateway
    before = len(backend.received)
    data = (
        b"GET /api/x HTTP/1.1\r\n" + H + b"X-Secret: 1\r\n"
        b"Connection: keep-alive, X-Secret, X-Forwarded-For, X-Request-Id, Via\r\n\r\n"
    )
    response = raw_exchange(daemon.port, data)
    assert status_of(response) == 200
    (seen,) = backend.received[before:]
    assert seen.header("X-Secret") is None  # hop-by-hop by the client's own Connection header
    assert seen.header("X-Forwarded-For") == "127.0.0.1"  # but gwd's own headers are still sent
    assert seen.header("X-Request-Id") and seen.header("Via") == "1.1 gwd"


def test_pipelined_requests_are_each_routed_and_authorized(gateway):
    daemon, backend = gateway
    before = len(backend.received)
    data = (
        b"POST /api/x HTTP/1.1\r\n" + H + b"Content-Length: 5\r\n\r\nhello"
        b"GET /admin HTTP/1.1\r\n" + H + b"Connection: close\r\n\r\n"
    )
    response = raw_exchange(daemon.port, data, responses=2)
    statuses = [int(part.split(b" ", 2)[1]) for part in response.split(b"HTTP/1.1 ")[1:] for part in [b"HTTP/1.1 " + part]]
    assert statuses == [200, 403]  # the second request met the resource policy like any other
    assert [received.raw_path for received in backend.received[before:]] == ["/x"]


def test_slowloris_head_is_cut_off(gateway):
    daemon, backend = gateway
    with socket.create_connection(("127.0.0.1", daemon.port), timeout=10) as conn:
        conn.sendall(b"GET /api/x HTTP/1.1\r\n" + H)
        started = time.monotonic()
        closed = False
        while time.monotonic() - started < 8:
            try:
                conn.sendall(b"X")  # one byte of a header name at a time, never finishing the head
                time.sleep(0.2)
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
        assert closed, "the connection was still open after 8 s"
        assert time.monotonic() - started < 4  # header_timeout = 1s, plus scheduling slack
    assert request(daemon.port, "GET", "/api/ok").status == 200


def test_a_stalled_body_gets_408(gateway):
    daemon, backend = gateway
    before = len(backend.received)
    started = time.monotonic()
    response = raw_exchange(daemon.port, b"POST /api/x HTTP/1.1\r\n" + H + b"Content-Length: 10\r\n\r\nhello", wait=8)
    assert status_of(response) == 408
    assert time.monotonic() - started < 5  # body_timeout = 1s
    assert len(backend.received) == before  # the backend never got a whole request
    assert request(daemon.port, "GET", "/api/ok").status == 200
