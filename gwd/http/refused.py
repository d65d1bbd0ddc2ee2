"""Connections past a worker's limit: answered 503 at once, with descriptors kept in reserve for it.

A worker holds at most :func:`connection_limit` client connections; past
it, a new connection gets ``503`` and ``Retry-After`` instead of waiting
in the backlog or being closed with no answer for lack of descriptors.
"""

from __future__ import annotations

import asyncio
import resource

from gwd.http.message import closing_response

DESCRIPTOR_RESERVE = 64
"""Descriptors a worker keeps for everything but client connections (files, pipes, Redis, listeners)."""
REFUSED_LINGER = 2.0
"""Seconds a refused connection waits for its request (see :class:`RefusedConnection`)."""
_SERVICE_UNAVAILABLE = closing_response(503, "Service Unavailable", "Service Unavailable", b"Retry-After: 1\r\n")


def connection_limit(configured: int) -> int:
    """The most client connections a worker holds: ``server.max_connections``, and no more than its descriptors allow.

    Each connection may hold a backend connection too, so two descriptors
    each, beside :data:`DESCRIPTOR_RESERVE`.
    """
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return configured or 1_000_000
    by_descriptors = max(1, (soft - DESCRIPTOR_RESERVE) // 2)
    return min(configured, by_descriptors) if configured else by_descriptors


class ConnectionCount:
    """A worker's open client connections over all its listeners, against their limit."""

    __slots__ = ("open", "most", "refusing", "lingering")

    def __init__(self, most: int) -> None:
        self.open = 0
        self.most = most
        self.refusing = False  # a refusal was logged, and the count has not fallen well below the limit since
        self.lingering = 0  # refused connections waiting for their request before they close


class RefusedConnection(asyncio.Protocol):
    """A connection past the worker's limit: it gets a 503 at once instead of waiting, or a close without an answer.

    It is closed once the client's request has come (closing on unread
    bytes would send a reset, which can destroy the 503), or after
    :data:`REFUSED_LINGER`; at once when many refused connections already
    wait so, to keep their descriptors few.
    """

    __slots__ = ("_count", "_transport", "_close_handle")

    def __init__(self, count: ConnectionCount) -> None:
        self._count = count
        self._close_handle: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._transport = transport
        transport.write(_SERVICE_UNAVAILABLE)
        if self._count.lingering >= DESCRIPTOR_RESERVE // 2:
            transport.close()
            return
        self._count.lingering += 1
        self._close_handle = asyncio.get_running_loop().call_later(REFUSED_LINGER, transport.close)

    def data_received(self, data: bytes) -> None:
        self._transport.close()

    def eof_received(self) -> bool:
        return False  # the client is done: close

    def connection_lost(self, exc: Exception | None) -> None:
        if self._close_handle is not None:
            self._close_handle.cancel()
            self._count.lingering -= 1
