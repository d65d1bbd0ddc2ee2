"""The HTTP integration against real backend servers: what arrives, what comes back, what fails."""

from __future__ import annotations

import hashlib
import http.client
import os
import socket
import threading

import orjson
import pytest
from backend import Backend, pattern
from support import free_port, request, scrape, wait_for


def proxy_config(backend: Backend, extra: str = "", **server: str) -> str:
    server_lines = "".join(f"{k} = {v}\n" for k, v in server.items())
    return f"""
[server]
{server_lines}

[[stages]]
name = "$default"
variables = {{ backend = "{backend.url}" }}

[[stages]]
name = "prod"
variables = {{ backend = "{backend.url}" }}

[[routes]]
route = "ANY /api/{{proxy+}}"
integration = {{ type = "http", uri = "{backend.url}/{{proxy}}" }}

[[routes]]
route = "GET /users/{{id}}/posts"
integration = {{ type = "http", uri = "${{stageVariables.backend}}/v2/users/{{id}}/posts?source=gw" }}

[[routes]]
route = "POST /as-put/{{id}}"
integration = {{ type = "http", uri = "{backend.url}/items/{{id}}", method = "PUT" }}

[[routes]]
route = "GET /keep-host/{{proxy+}}"
integration = {{ type = "http", uri = "{backend.url}/{{proxy}}", preserve_host = true }}

[[routes]]
route = "GET /slow/{{seconds}}"
integration = {{ type = "http", uri = "{backend.url}/slow/{{seconds}}", timeout = "500ms" }}

[[routes]]
route = "GET /patient/{{seconds}}"
integration = {{ type = "http", uri = "{backend.url}/slow/{{seconds}}", timeout = "30s" }}
{extra}
"""


@pytest.fixture
def backend():
    with Backend() as running:
        yield running


@pytest.fixture
def gateway(start_daemon, backend):
    return start_daemon(proxy_config(backend), workers=1)


def raw_request(port: int, text: bytes, read_timeout: float = 10) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=read_timeout) as sock:
        sock.sendall(text)
        chunks = []
        while data := sock.recv(65536):
            chunks.append(data)
        return b"".join(chunks)


def test_request_arrives_as_sent_minus_hop_by_hop_plus_forwarding_headers(gateway, backend):
    body = b'{"order": 1}'
    reply = raw_request(
        gateway.port,
        b"POST /api/items/42?b=2&a=1&a=3 HTTP/1.1\r\n"
        b"Host: gw.example:8443\r\n"
        b"X-Custom: Value With  Spaces\r\n"
        b"X-Multi: one\r\n"
        b"X-Multi: two\r\n"
        b"Cookie: c=1\r\n"
        b"Connection: close, X-Drop-Me\r\n"
        b"X-Drop-Me: must not pass\r\n"
        b"Keep-Alive: timeout=5\r\n"
        b"TE: trailers\r\n"
        b"Proxy-Authorization: Basic c2VjcmV0\r\n"
        b"X-Forwarded-For: 10.9.9.9\r\n"
        b"Content-Type: application/json\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body,
    )
    assert reply.startswith(b"HTTP/1.1 200")
    (seen,) = backend.received
    assert seen.method == "POST"
    assert seen.raw_path == "/items/42?b=2&a=1&a=3"
    assert seen.body == body
    assert seen.header("X-Custom") == "Value With  Spaces"
    assert [v for k, v in seen.headers if k == "X-Multi"] == ["one", "two"]
    assert seen.header("Cookie") == "c=1"
    assert seen.header("Content-Type") == "application/json"
    for dropped in ("x-drop-me", "keep-alive", "te", "proxy-authorization"):
        assert dropped not in seen.header_names(), dropped
    assert seen.header("Host") == f"127.0.0.1:{backend.port}"
    # The client is not a trusted proxy: its X-Forwarded-For is replaced, not extended.
    assert seen.header("X-Forwarded-For") == "127.0.0.1"
    assert seen.header("X-Forwarded-Proto") == "http"
    assert seen.header("X-Forwarded-Host") == "gw.example:8443"
    assert seen.header("Via") == "1.1 gwd"
    request_id = [line for line in reply.split(b"\r\n") if line.lower().startswith(b"x-request-id:")][0]
    assert seen.header("X-Request-Id") == request_id.split(b": ", 1)[1].decode()


def test_trusted_proxy_forwarded_for_is_extended(start_daemon, backend):
    daemon = start_daemon(proxy_config(backend, trusted_proxies='["127.0.0.0/8"]'), workers=1)
    daemon.get("/api/x", headers={"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https"})
    (seen,) = backend.received
    assert seen.header("X-Forwarded-For") == "203.0.113.7, 127.0.0.1"
    assert seen.header("X-Forwarded-Proto") == "https"


def test_path_parameters_stage_variables_method_override_and_host(gateway, backend):
    assert gateway.get("/users/7/posts?page=2").status == 200
    assert gateway.get("/prod/users/a%20b/posts").status == 200
    assert request(gateway.port, "POST", "/as-put/9").status == 200
    assert gateway.get("/keep-host/x", headers={"Host": "public.example"}).status == 200
    assert gateway.get("/api/deep/er/path").status == 200
    # An encoded slash would change the path's shape on the way to the backend: refused.
    assert gateway.get("/api/deep/er/path%2F..%2Fslash").status == 400
    first, second, third, fourth, fifth = backend.received
    assert first.raw_path == "/v2/users/7/posts?source=gw&page=2"
    assert second.raw_path == "/v2/users/a%20b/posts?source=gw"
    assert (third.method, third.raw_path) == ("PUT", "/items/9")
    assert fourth.header("Host") == "public.example"
    assert fifth.raw_path == "/deep/er/path"


def test_binary_bodies_byte_for_byte(gateway, backend):
    payload = os.urandom(3 * 1024 * 1024) + bytes(range(256))
    conn = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=30)
    conn.request("POST", "/api/mirror", body=payload, headers={"Content-Type": "application/octet-stream"})
    response = conn.getresponse()
    assert response.status == 200
    assert response.read() == payload
    conn.close()


def test_chunked_request_and_response(gateway, backend):
    pieces = [os.urandom(n) for n in (1, 1000, 70000, 5)]
    conn = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=30)
    conn.request("POST", "/api/upload-digest", body=iter(pieces), encode_chunked=True)
    digest = orjson.loads(conn.getresponse().read())

    assert digest == {"length": sum(map(len, pieces)), "sha256": hashlib.sha256(b"".join(pieces)).hexdigest()}
    assert backend.received[0].header("Transfer-Encoding") == "chunked"
    conn.request("GET", "/api/chunked/300001")
    response = conn.getresponse()
    assert response.getheader("Transfer-Encoding") == "chunked"
    assert response.read() == pattern(300001)
    conn.close()


def test_head_204_304_redirects_and_encodings_pass_through(gateway, backend):
    head = request(gateway.port, "HEAD", "/api/bytes/123456")
    assert (head.status, head.body, head.headers["content-length"]) == (200, b"", "123456")
    assert backend.received[-1].method == "HEAD"
    no_content = request(gateway.port, "GET", "/api/status/204")
    assert (no_content.status, no_content.body) == (204, b"")
    assert "content-length" not in no_content.headers
    assert request(gateway.port, "GET", "/api/status/304").status == 304
    redirect = request(gateway.port, "GET", "/api/status/302")
    assert redirect.status == 302 and redirect.headers["location"] == "http://127.0.0.1:1/elsewhere"
    gzip = request(gateway.port, "GET", "/api/gzip", headers={"Accept-Encoding": "gzip"})
    assert gzip.headers["content-encoding"] == "gzip" and gzip.body == b"\x1f\x8b not really gzip"
    hop = request(gateway.port, "GET", "/api/hop-by-hop")
    assert "x-internal" not in hop.headers and "keep-alive" not in hop.headers
    assert hop.headers["x-kept"] == "1"
    assert request(gateway.port, "GET", "/api/status/503").status == 503
    assert request(gateway.port, "GET", "/api/status/418").body == b"status body"


def test_keep_alive_to_the_backend_is_reused(gateway, backend):
    for _ in range(20):
        assert gateway.get("/api/x").status == 200
    # One worker, one request at a time: one pooled connection carries them all.
    assert len(backend.received) == 20
    assert len({seen.peer for seen in backend.received}) == 1


def test_connections_beyond_upstream_keepalive_serve_the_burst_then_close(start_daemon, backend):
    # Eight requests at once, three times over, through a pool that keeps two
    # idle: the later bursts ride the first one's connections instead of each
    # closing six and opening six; a second after the last burst the idle pool
    # is back to two.
    daemon = start_daemon(proxy_config(backend, upstream_keepalive="2"), workers=1)

    def burst() -> set[tuple[str, int]]:
        statuses: list[int] = []
        threads = [
            threading.Thread(target=lambda: statuses.append(daemon.get("/api/delayed/0.5").status)) for _ in range(8)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert statuses == [200] * 8
        return {seen.peer for seen in backend.received}

    first = burst()
    assert len(first) > 2  # the requests overlapped: more connections than the pool keeps idle
    assert burst() == first and burst() == first
    gauge = f'gwd_upstream_connections{{backend="127.0.0.1:{backend.port}"}} '
    wait_for(lambda: f"{gauge}2.0" in scrape(daemon), 10, "the surplus connections closed")


def test_refused_connection_is_502(start_daemon, backend):
    closed_port = free_port()
    extra = f"""
[[routes]]
route = "GET /dead"
integration = {{ type = "http", uri = "http://127.0.0.1:{closed_port}/" }}
"""
    daemon = start_daemon(proxy_config(backend, extra), workers=1)
    reply = daemon.get("/dead", headers={"X-Request-Id": "dead-1"})
    assert (reply.status, reply.body) == (502, b'{"message":"Bad Gateway"}')
    line = wait_for(lambda: [r for r in daemon.access_lines() if r["requestId"] == "dead-1"], 5, "log line")[0]
    assert line["integrationError"] == "refused" and line["status"] == 502


def test_slow_backend_is_504(gateway, backend):
    reply = gateway.get("/slow/3", headers={"X-Request-Id": "slow-1"})
    assert (reply.status, reply.body) == (504, b'{"message":"Endpoint request timed out"}')
    line = wait_for(lambda: [r for r in gateway.access_lines() if r["requestId"] == "slow-1"], 5, "log line")[0]
    assert line["integrationError"] == "timeout"


def test_client_disconnect_cancels_the_backend_request(gateway, backend):
    sock = socket.create_connection(("127.0.0.1", gateway.port))
    sock.sendall(b"GET /patient/20 HTTP/1.1\r\nHost: x\r\n\r\n")
    wait_for(lambda: backend.slow_started == ["/slow/20"], 5, "the request to reach the backend")
    sock.close()
    wait_for(lambda: backend.cancelled == ["/slow/20"], 5, "the backend request to be cancelled")


def one_shot_backend(reply: bytes) -> tuple[str, socket.socket]:
    """A backend that answers one request with ``reply`` as raw bytes: a route to it, and its listener to close."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(reply)
            conn.settimeout(5)
            conn.recv(65536)  # until the gateway closes its side

    threading.Thread(target=serve, daemon=True).start()
    route = f"""
[[routes]]
route = "GET /raw"
integration = {{ type = "http", uri = "http://127.0.0.1:{listener.getsockname()[1]}/" }}
"""
    return route, listener


def test_unreadable_response_is_502(start_daemon, backend):
    route, listener = one_shot_backend(b"NOT HTTP AT ALL\r\n\r\n")
    daemon = start_daemon(proxy_config(backend, route), workers=1)
    assert daemon.get("/raw").status == 502
    listener.close()


def test_via_is_appended_to_the_clients(gateway, backend):
    gateway.get("/api/x", headers={"Via": "1.0 corporate-proxy"})
    assert backend.received[0].header("Via") == "1.0 corporate-proxy, 1.1 gwd"


def test_expect_100_continue_is_answered_before_the_body(gateway, backend):
    body = b"x" * 5000
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as sock:
        sock.sendall(
            b"POST /api/upload-digest HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n"
        )
        assert sock.recv(4096).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        sock.sendall(body)
        reply = b""
        while b"}" not in reply:
            reply += sock.recv(4096)
    assert reply.startswith(b"HTTP/1.1 200")
    assert orjson.loads(reply.split(b"\r\n\r\n", 1)[1])["length"] == len(body)
    assert "expect" not in backend.received[0].header_names()


def test_small_response_keeps_the_backends_header_lines_and_gets_framing_right(start_daemon, backend):
    """A buffered response passes header lines through as bytes; Date, length and Connection are ours to get right."""
    route, listener = one_shot_backend(
        b"HTTP/1.1 201 Made\r\nX-Twice: a\r\nX-Twice: b\r\nServer: backend/1\r\n"
        b"Content-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello"
    )
    daemon = start_daemon(proxy_config(backend, route), workers=1)
    reply = raw_request(daemon.port, b"GET /raw HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    head, body = reply.split(b"\r\n\r\n", 1)
    status, *lines = head.split(b"\r\n")
    names = [line.split(b":", 1)[0].lower() for line in lines]
    assert status == b"HTTP/1.1 201 Created" and body == b"hello"
    assert [line for line in lines if line.startswith(b"X-Twice")] == [b"X-Twice: a", b"X-Twice: b"]
    assert names.count(b"date") == 1 and names.count(b"server") == 1 and b"Server: gwd" in lines
    assert b"Content-Length: 5" in lines and b"Connection: close" in lines
    listener.close()

    # HTTP/1.0 keep-alive: the answer says so and the connection carries a second request.
    with socket.create_connection(("127.0.0.1", daemon.port), timeout=10) as sock:
        for _ in range(2):
            sock.sendall(b"GET /api/x HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            reply = b""
            while b"\r\n\r\n" not in reply or not reply.endswith(b"}"):
                reply += sock.recv(65536)
            head = reply.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
            assert head[0] == b"HTTP/1.0 200 OK" and b"Connection: keep-alive" in head
            # The backend's own Date passes through (aiohttp backends always send one).
            assert sum(1 for line in head if line.lower().startswith(b"date:")) == 1
    assert len(backend.received) == 2
