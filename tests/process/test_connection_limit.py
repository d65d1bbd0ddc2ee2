"""A worker past its connection limit answers 503 at once: no client is closed without an answer."""

from __future__ import annotations

import socket

import pytest
from support import wait_for

pytestmark = pytest.mark.process

CONFIG = """
[server]
{server}

[[routes]]
route = "GET /hello"
integration = {{ type = "mock", body = "hello" }}
"""


def first_statuses(port: int, count: int) -> list[int]:
    """Open ``count`` connections, send a keep-alive GET on each, then read each one's status (0: closed unanswered)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            sockets.append(sock)
            sock.sendall(b"GET /hello HTTP/1.1\r\nHost: gwd\r\n\r\n")
        return [status_of(sock) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def status_of(sock: socket.socket) -> int:
    head = b""
    while b"\r\n" not in head:
        data = sock.recv(4096)
        if not data:
            return 0
        head += data
    return int(head.split(b" ", 2)[1])


def test_connections_past_max_connections_get_503(start_daemon):
    daemon = start_daemon(CONFIG.format(server="max_connections = 5"), workers=1)
    assert first_statuses(daemon.port, 8) == [200] * 5 + [503] * 3
    assert daemon.stderr().count("the most this worker takes: answering new ones 503") == 1
    # Once connections close, new ones are served again.
    wait_for(lambda: daemon.get("/hello").status == 200, 10, "a new connection to be served")


def test_a_worker_short_of_descriptors_answers_503_instead_of_closing(start_daemon):
    """With 160 descriptors a worker takes (160 - 64) / 2 = 48 connections; the rest still get an answer."""
    daemon = start_daemon(CONFIG.format(server=""), workers=1, nofile=160)
    statuses = first_statuses(daemon.port, 200)
    assert statuses.count(0) == 0, "a connection was closed without an answer"
    assert statuses == [200] * 48 + [503] * 152
