"""The admin listener's own answers, driven by the same calls the supervisor's loop makes."""

from __future__ import annotations

import select
import socket
import time

from support import free_port

from gwd.admin import AdminServer
from gwd.config.model import Address


def exchange(server: AdminServer, request: bytes) -> bytes:
    """Send ``request`` to ``server`` and turn its loop until it closes the connection; the reply."""
    client = socket.create_connection(("127.0.0.1", server.address.port), timeout=5)
    client.sendall(request)
    client.setblocking(False)
    reply = b""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        readable, writable, _ = select.select([*server.readable(), client], server.writable(), [], 0.1)
        for fd in readable:
            if fd is client:
                data = client.recv(65536)
                if not data:
                    client.close()
                    return reply
                reply += data
            else:
                server.on_readable(fd)
        for fd in writable:
            server.on_writable(fd)
    raise AssertionError(f"no complete reply within 10 s: {reply!r}")


def test_a_failing_metrics_render_is_a_500_and_the_listener_serves_on(caplog):
    renders = []

    def metrics(accept: str | None) -> tuple[bytes, str]:
        renders.append(accept)
        if len(renders) == 1:
            raise RuntimeError("cannot read the values files")
        return b"gwd_up 1\n", "text/plain; version=0.0.4"

    server = AdminServer(Address("127.0.0.1", free_port()), lambda: True, metrics)
    try:
        failed = exchange(server, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        assert failed.startswith(b"HTTP/1.1 500 Internal Server Error\r\n"), failed
        assert failed.endswith(b"\r\n\r\nmetrics unavailable\n")
        assert "cannot read the values files" in caplog.text
        served = exchange(server, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        assert served.startswith(b"HTTP/1.1 200 OK\r\n") and served.endswith(b"\r\n\r\ngwd_up 1\n"), served
        assert len(renders) == 2
    finally:
        server.close()
