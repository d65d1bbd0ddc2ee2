"""Clients that go away mid-request: one access-log line and one count each, never a 500 or a traceback."""

from __future__ import annotations

import socket
import struct
from typing import Callable

import pytest
from backend import Backend
from support import scrape, total, wait_for

pytestmark = pytest.mark.process

CONFIG = """
[[routes]]
route = "GET /{{proxy+}}"
integration = {{ type = "http", uri = "{backend}/{{proxy}}", timeout = "10s" }}
"""


def reset_after(port: int, path: str, read_bytes: int, reached: Callable[[], object] = lambda: True) -> None:
    """Send a GET, read ``read_bytes`` of the answer (0: none), wait until ``reached``, then reset the connection."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: gwd\r\n\r\n".encode())
    received = b""
    while len(received) < read_bytes:
        data = sock.recv(65536)
        assert data, "the gateway closed before sending what was awaited"
        received += data
    if read_bytes:
        assert received.startswith(b"HTTP/1.1 200 ")
    wait_for(reached, 10, "the request to reach the backend")
    # SO_LINGER 0: close() sends a reset instead of a FIN.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def test_clients_that_reset_mid_stream_are_logged_with_the_status_sent(start_daemon):
    with Backend() as backend:
        daemon = start_daemon(CONFIG.format(backend=backend.url))
        for _ in range(5):
            reset_after(daemon.port, "/trickle/200", 100_000)
        wait_for(lambda: len(daemon.access_lines()) >= 5, 20, "an access-log line per request")
        wait_for(lambda: total(scrape(daemon), "gwd_requests_total") >= 5, 10, "the requests to be counted")
    lines = daemon.access_lines()
    assert len(lines) == 5
    for line in lines:
        assert line["status"] == 200 and line["clientClosed"] is True
        assert 0 < line["responseLength"] < 200 * 65536
    text = scrape(daemon)
    assert total(text, "gwd_requests_total", code="200") == 5
    assert total(text, "gwd_requests_total", code="500") == 0
    assert "Traceback" not in daemon.stderr()


def test_clients_that_reset_before_the_answer_are_logged_as_499(start_daemon):
    with Backend() as backend:
        daemon = start_daemon(CONFIG.format(backend=backend.url))
        for sent in range(1, 4):
            reset_after(daemon.port, "/slow/5", 0, lambda: len(backend.slow_started) == sent)
        wait_for(lambda: len(daemon.access_lines()) >= 3, 20, "an access-log line per request")
        wait_for(lambda: total(scrape(daemon), "gwd_requests_total") >= 3, 10, "the requests to be counted")
        wait_for(lambda: len(backend.cancelled) == 3, 10, "the backend requests to be abandoned")
    lines = daemon.access_lines()
    assert [(line["status"], line["clientClosed"], line["responseLength"]) for line in lines] == [(499, True, 0)] * 3
    text = scrape(daemon)
    assert total(text, "gwd_requests_total", code="499") == 3
    assert total(text, "gwd_requests_total") == 3
    assert "Traceback" not in daemon.stderr()
