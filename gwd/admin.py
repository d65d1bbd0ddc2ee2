"""The admin listener: ``GET /metrics``, ``/healthz`` and ``/readyz``, answered by the supervisor process.

It runs inside the supervisor's own loop (the supervisor asks it which
sockets to watch and hands it the ready ones), so it needs no thread and
no event loop, and it answers while every worker is busy or restarting.
It speaks just enough HTTP/1.1 for probes and scrapers: one request per
connection, a request head of at most 8 KiB read within 5 s, a response
written as the socket takes it, then the connection is closed.

- ``/metrics``: every process's metrics (Prometheus text, or OpenMetrics
  when the ``Accept`` header asks for it); 404 when metrics are off.
- ``/healthz``: 200 while the supervisor runs.
- ``/readyz``: 200 when every worker of the current config accepts
  connections, 503 while starting, reloading into a broken state, or draining.
- ``/upstreams``: each upstream target's health as the daemon's active
  checks last found it (JSON).
"""

from __future__ import annotations

import logging
import socket
import time
from typing import Callable

from gwd.config.model import Address
from gwd.sockets import bind_listener

log = logging.getLogger("gwd.admin")

MAX_HEAD = 8192
READ_TIMEOUT = 5.0
WRITE_TIMEOUT = 10.0
MAX_CLIENTS = 64


class _Client:
    __slots__ = ("sock", "received", "output", "deadline")

    def __init__(self, sock: socket.socket, now: float) -> None:
        self.sock = sock
        self.received = b""
        self.output = b""  # the response still to write; empty while reading the request
        self.deadline = now + READ_TIMEOUT


class AdminServer:
    """The admin endpoints on ``address``; ``ready`` says whether /readyz is 200, ``metrics`` and ``upstreams`` render theirs."""

    def __init__(
        self,
        address: Address,
        ready: Callable[[], bool],
        metrics: Callable[[str | None], tuple[bytes, str]] | None,
        upstreams: Callable[[], bytes] | None = None,
    ) -> None:
        try:
            self._listener = bind_listener(address, 64)
        except OSError as exc:
            raise OSError(
                f"admin listener (/metrics, /healthz, /readyz): {exc}; set [admin] listen to a free address,"
                " or pass --admin-listen HOST:PORT or --admin-listen off"
            ) from None
        self._ready = ready
        self._metrics = metrics
        self._upstreams = upstreams  # renders /upstreams
        self._clients: dict[int, _Client] = {}
        self.address = address

    def readable(self) -> list[int]:
        return [self._listener.fileno(), *(fd for fd, client in self._clients.items() if not client.output)]

    def writable(self) -> list[int]:
        return [fd for fd, client in self._clients.items() if client.output]

    def next_deadline(self) -> float | None:
        return min((client.deadline for client in self._clients.values()), default=None)

    def on_readable(self, fd: int) -> None:
        now = time.monotonic()
        if fd == self._listener.fileno():
            self._accept(now)
            return
        client = self._clients[fd]
        try:
            data = client.sock.recv(4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._drop(fd)
            return
        if not data:
            self._drop(fd)
            return
        client.received += data
        if b"\r\n\r\n" in client.received:
            client.output = self._answer(client.received)
            client.deadline = now + WRITE_TIMEOUT
        elif len(client.received) > MAX_HEAD:
            client.output = _response(431, "text/plain; charset=utf-8", b"request head too large\n")

    def on_writable(self, fd: int) -> None:
        client = self._clients[fd]
        try:
            sent = client.sock.send(client.output)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._drop(fd)
            return
        client.output = client.output[sent:]
        if not client.output:
            self._drop(fd)

    def expire(self, now: float) -> None:
        """Close connections past their deadline (a client that sends or reads too slowly)."""
        for fd in [fd for fd, client in self._clients.items() if client.deadline <= now]:
            self._drop(fd)

    def close(self) -> None:
        for fd in list(self._clients):
            self._drop(fd)
        self._listener.close()

    def _accept(self, now: float) -> None:
        while True:
            try:
                sock, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.warning("admin listener: accept failed: %s", exc)
                return
            if len(self._clients) >= MAX_CLIENTS:
                sock.close()
                continue
            sock.setblocking(False)
            self._clients[sock.fileno()] = _Client(sock, now)

    def _drop(self, fd: int) -> None:
        client = self._clients.pop(fd, None)
        if client is not None:
            client.sock.close()

    def _answer(self, head: bytes) -> bytes:
        request_line, _, rest = head.partition(b"\r\n")
        parts = request_line.split(b" ")
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
            return _response(400, "text/plain; charset=utf-8", b"bad request\n")
        method, target = parts[0], parts[1].split(b"?", 1)[0]
        if method not in (b"GET", b"HEAD"):
            return _response(405, "text/plain; charset=utf-8", b"method not allowed\n", method == b"HEAD")
        head_only = method == b"HEAD"
        if target == b"/healthz":
            return _response(200, "text/plain; charset=utf-8", b"ok\n", head_only)
        if target == b"/readyz":
            if self._ready():
                return _response(200, "text/plain; charset=utf-8", b"ready\n", head_only)
            return _response(503, "text/plain; charset=utf-8", b"not ready\n", head_only)
        if target == b"/metrics" and self._metrics is not None:
            accept = None
            for line in rest.split(b"\r\n"):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"accept":
                    accept = value.strip().decode("latin-1")
            try:
                body, content_type = self._metrics(accept)
            except Exception:  # the supervisor serves on: a failed scrape must not take the daemon down
                log.exception("admin listener: /metrics failed")
                return _response(500, "text/plain; charset=utf-8", b"metrics unavailable\n", head_only)
            return _response(200, content_type, body, head_only)
        if target == b"/upstreams" and self._upstreams is not None:
            return _response(200, "application/json", self._upstreams(), head_only)
        return _response(404, "text/plain; charset=utf-8", b"not found\n", head_only)


_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


def _response(status: int, content_type: str, body: bytes, head_only: bool = False) -> bytes:
    head = (
        f"HTTP/1.1 {status} {_REASONS[status]}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
        "Cache-Control: no-store\r\nConnection: close\r\n\r\n"
    ).encode("latin-1")
    return head if head_only else head + body
