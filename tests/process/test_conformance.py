"""RFC 9110/9112 conformance of the worker's HTTP/1.1 server, as raw bytes on a socket.

Every malformed request gets its status and a closed connection within
``header_timeout``, and the backend (a raw socket server that counts the
request heads it reads) sees none of them; hop-by-hop headers are dropped in
both directions.  ``test_hostile.py`` holds the older cases.
"""

from __future__ import annotations

import socket
import threading
import time

import pytest
from support import raw_exchange, request, status_of

pytestmark = pytest.mark.process

HEADER_TIMEOUT = 1.0

CONFIG = f"""
[server]
header_timeout = "{HEADER_TIMEOUT:g}s"
keepalive_timeout = "2s"

[log]
access = "off"

[[routes]]
route = "ANY /api/{{proxy+}}"
integration = {{ type = "http", uri = "BACKEND/{{proxy}}" }}
"""

H = b"Host: gw.test\r\n"

# What the backend answers every request with: each hop-by-hop header there is, two of them named by Connection.
BACKEND_REPLY = (
    b"HTTP/1.1 200 OK\r\n"
    b"Content-Type: text/plain\r\n"
    b"Connection: keep-alive, X-Back-Private, X-Back-Other\r\n"
    b"X-Back-Private: secret\r\n"
    b"X-Back-Other: 1\r\n"
    b"Keep-Alive: timeout=30\r\n"
    b"Proxy-Connection: keep-alive\r\n"
    b"Proxy-Authenticate: Basic realm=backend\r\n"
    b"Trailer: X-Checksum\r\n"
    b"Upgrade: h2c\r\n"
    b"X-Kept: yes\r\n"
    b"Content-Length: 2\r\n"
    b"\r\n"
    b"ok"
)


class CountingBackend:
    """A keep-alive HTTP/1.1 backend on a raw socket: it records each request head it reads and answers BACKEND_REPLY."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.heads: list[bytes] = []
        self._stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self._stopped:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        buffer = b""
        with conn:
            conn.settimeout(10)
            while True:
                while b"\r\n\r\n" not in buffer:
                    try:
                        data = conn.recv(65536)
                    except OSError:
                        return
                    if not data:
                        return
                    buffer += data
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                self.heads.append(head)  # requests here carry no body
                conn.sendall(BACKEND_REPLY)

    def header_names(self, head: bytes) -> set[str]:
        return {line.split(b":", 1)[0].decode().lower() for line in head.split(b"\r\n")[1:]}

    def close(self) -> None:
        self._stopped = True
        self.listener.close()


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    from support import Daemon

    backend = CountingBackend()
    directory = tmp_path_factory.mktemp("conformance")
    daemon = Daemon(directory, CONFIG.replace("BACKEND", backend.url), workers=1).start()
    try:
        yield daemon, backend
    finally:
        daemon.stop()
        backend.close()


# (case id, bytes sent, expected status)
MALFORMED = [
    ("no HTTP version", b"GET /api/x\r\n\r\n", 400),
    ("no HTTP version, with headers", b"GET /api/x\r\n" + H + b"\r\n", 400),
    ("no HTTP version, line alone", b"GET /api/x\r\n", 400),
    ("HTTP/2.0 request line", b"GET /api/x HTTP/2.0\r\n" + H + b"\r\n", 505),
    ("unknown method token", b"BREW /api/x HTTP/1.1\r\n" + H + b"\r\n", 501),
    ("unknown method with a body", b"BREW /api/x HTTP/1.1\r\n" + H + b"Content-Length: 3\r\n\r\nabc", 501),
    ("method that is not a token", b"GE(T /api/x HTTP/1.1\r\n" + H + b"\r\n", 400),
    ("TE gzip, chunked", b"POST /api/x HTTP/1.1\r\n" + H + b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501),
    ("TE gzip then chunked, two lines", b"POST /api/x HTTP/1.1\r\n" + H + b"Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 501),
    ("TE chunked, gzip", b"POST /api/x HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n", 400),
    ("TE gzip alone", b"POST /api/x HTTP/1.1\r\n" + H + b"Transfer-Encoding: gzip\r\n\r\nabc", 400),
    ("TE chunked twice", b"POST /api/x HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n", 400),
    ("TE then CL", b"POST /api/x HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n", 400),
    ("CL then TE", b"POST /api/x HTTP/1.1\r\n" + H + b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    ("obs-fold, tab", b"GET /api/x HTTP/1.1\r\n" + H + b"X-A: one\r\n\ttwo\r\n\r\n", 400),
    ("NUL in a value", b"GET /api/x HTTP/1.1\r\n" + H + b"X-A: a\x00b\r\n\r\n", 400),
    ("CR in a value", b"GET /api/x HTTP/1.1\r\n" + H + b"X-A: a\rb\r\n\r\n", 400),
    ("LF in a value", b"GET /api/x HTTP/1.1\r\n" + H + b"X-A: a\nb: c\r\n\r\n", 400),
    ("space before the colon", b"GET /api/x HTTP/1.1\r\n" + H + b"X-A : 1\r\n\r\n", 400),
    ("tab before the colon", b"GET /api/x HTTP/1.1\r\n" + H + b"X-A\t: 1\r\n\r\n", 400),
    ("header line without a colon", b"GET /api/x HTTP/1.1\r\n" + H + b"X-A 1\r\n\r\n", 400),
    ("negative Content-Length", b"POST /api/x HTTP/1.1\r\n" + H + b"Content-Length: -1\r\n\r\n", 400),
    ("Content-Length with a plus", b"POST /api/x HTTP/1.1\r\n" + H + b"Content-Length: +3\r\n\r\nabc", 400),
]


@pytest.mark.parametrize("name,data,status", MALFORMED, ids=[case[0] for case in MALFORMED])
def test_malformed_request_is_answered_closed_and_not_forwarded(gateway, name, data, status):
    daemon, backend = gateway
    before = len(backend.heads)
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", daemon.port), timeout=10) as conn:
        conn.sendall(data)
        received = b""
        while True:
            piece = conn.recv(65536)  # until the gateway closes: a refused request ends its connection
            if not piece:
                break
            received += piece
    elapsed = time.monotonic() - started
    assert status_of(received) == status, received[:200]
    head, _, body = received.partition(b"\r\n\r\n")
    assert b"\r\nConnection: close\r\n" in head + b"\r\n"
    assert body.startswith(b'{"message":"')
    assert elapsed < HEADER_TIMEOUT + 2, f"answered after {elapsed:.1f}s"
    assert len(backend.heads) == before, "a malformed request reached the backend"
    assert request(daemon.port, "GET", "/api/ok").status == 200  # the worker serves on


def test_an_unfinished_request_line_is_cut_off_within_the_header_timeout(gateway):
    daemon, backend = gateway
    before = len(backend.heads)
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", daemon.port), timeout=10) as conn:
        conn.sendall(b"GET /api/x")  # and nothing more
        assert conn.recv(65536) == b""  # closed by the gateway
    elapsed = time.monotonic() - started
    assert HEADER_TIMEOUT - 0.2 < elapsed < HEADER_TIMEOUT + 2, f"closed after {elapsed:.1f}s"
    assert len(backend.heads) == before


def test_a_method_the_parser_knows_is_routed_by_an_any_route(gateway):
    # "501 unless a route takes it": PROPFIND is a registered method, and ANY takes it.
    daemon, backend = gateway
    before = len(backend.heads)
    assert request(daemon.port, "PROPFIND", "/api/files/x").status == 200
    (head,) = backend.heads[before:]
    assert head.startswith(b"PROPFIND /files/x HTTP/1.1\r\n")


def test_hop_by_hop_headers_are_dropped_both_ways(gateway):
    daemon, backend = gateway
    before = len(backend.heads)
    sent = (
        b"GET /api/x HTTP/1.1\r\n" + H
        + b"Connection: keep-alive, X-Client-Private, X-Client-Other\r\n"
        b"X-Client-Private: secret\r\n"
        b"X-Client-Other: 1\r\n"
        b"Keep-Alive: timeout=30\r\n"
        b"Proxy-Connection: keep-alive\r\n"
        b"Proxy-Authorization: Basic c2VjcmV0\r\n"
        b"TE: trailers\r\n"
        b"Trailer: X-Checksum\r\n"
        b"Upgrade: h2c\r\n"
        b"X-Kept: yes\r\n"
        b"\r\n"
    )
    received = raw_exchange(daemon.port, sent)
    assert status_of(received) == 200, received[:200]
    (forwarded,) = backend.heads[before:]
    names = backend.header_names(forwarded)
    hop_by_hop = {"keep-alive", "proxy-connection", "proxy-authorization", "proxy-authenticate", "te", "trailer", "upgrade"}
    assert not names & (hop_by_hop | {"x-client-private", "x-client-other"}), names
    assert "x-kept" in names
    # gwd's own connection management to the backend is all the Connection header it sends, if any.
    assert all(line.lower() in (b"connection: keep-alive", b"connection: close") for line in forwarded.split(b"\r\n") if line.lower().startswith(b"connection:"))
    head = received.partition(b"\r\n\r\n")[0].decode().lower()
    lines = head.split("\r\n")[1:]
    back_names = {line.split(":", 1)[0] for line in lines}
    assert not back_names & (hop_by_hop | {"x-back-private", "x-back-other"}), back_names
    assert "x-kept" in back_names and received.endswith(b"\r\n\r\nok")
    # The client's own connection stays as HTTP/1.1 has it: kept alive, so no Connection header at all is needed.
    assert all(line in ("connection: keep-alive", "connection: close") for line in lines if line.startswith("connection:"))
