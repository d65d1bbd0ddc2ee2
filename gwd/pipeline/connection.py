"""Before the pipeline: the HTTP parser's limits, malformed requests, and the time a request head may take.

aiohttp's C parser (llhttp) reads every request; the pure-Python one is
where nearly all of aiohttp's request-smuggling advisories were, so the
daemon refuses to start without the C one (:func:`c_parser_problem`).
Limits follow nginx and AWS: a request line of at most 8 KiB (else 414),
at most 100 header lines and 10 KiB of them in all (else 431).  A request
the parser rejects is answered with a JSON status and ``Connection: close``,
and neither the answer nor the log line repeats any of its bytes (they may
hold credentials).  A connection must deliver its first request head within
``header_timeout``; later heads fall under ``keepalive_timeout``, which
aiohttp counts from the previous response, so a client trickling bytes
cannot hold a connection open.  Requests the gateway can answer without
waiting for anything (fresh hits in the worker's memory cache) are answered
as they are parsed, without aiohttp's task per request
(:class:`GatewayRequestHandler`); this relies on aiohttp's connection
handler's internals, so the aiohttp release is pinned below the next minor.
"""

from __future__ import annotations

import asyncio
import logging
import resource
from typing import TYPE_CHECKING, Any, Callable

import aiohttp
import orjson
from aiohttp import http_parser, web
from aiohttp.http import RawRequestMessage
from aiohttp.http_exceptions import BadHttpMessage, LineTooLong
from aiohttp.streams import EMPTY_PAYLOAD
from aiohttp.web_protocol import RequestHandler

from gwd.pipeline.errors import closing_response

if TYPE_CHECKING:
    from gwd.pipeline.passthrough import PassThroughResponse

log = logging.getLogger("gwd.connection")

MAX_REQUEST_LINE = 8192
MAX_HEADER_BYTES = 10240
MAX_HEADERS = 100
MINIMUM_AIOHTTP = (3, 14, 4)

_REASONS = {400: "Bad Request", 414: "Request-URI Too Long", 431: "Request Header Fields Too Large", 500: "Internal Server Error"}


def c_parser_problem() -> str | None:
    """Why this aiohttp must not serve (an old release, or the pure-Python parser active), or None."""
    version = tuple(int(part) for part in aiohttp.__version__.split(".")[:3] if part.isdigit())
    if version < MINIMUM_AIOHTTP:
        return f"aiohttp {aiohttp.__version__} is older than {'.'.join(map(str, MINIMUM_AIOHTTP))}, which has request-parsing fixes gwd needs"
    if http_parser.HttpRequestParser.__module__ != "aiohttp._http_parser":
        return (
            "aiohttp's C HTTP parser is not active (AIOHTTP_NO_EXTENSIONS is set, or the compiled extension is"
            " missing); gwd does not serve with the pure-Python parser"
        )
    return None


def too_many_header_bytes(raw_headers: tuple[tuple[bytes, bytes], ...]) -> bool:
    """Whether the header lines hold more than ``MAX_HEADER_BYTES`` (a plain loop: a generator costs more per request)."""
    total = 0
    for name, value in raw_headers:
        total += len(name) + len(value)
    return total > MAX_HEADER_BYTES


AnswerAtOnce = Callable[[RawRequestMessage, "str | None", asyncio.Transport], "PassThroughResponse | None"]
"""Answers a parsed request (with the peer's address and the connection) without awaiting anything, or None."""


class GatewayRequestHandler(RequestHandler):
    """aiohttp's connection handler with gwd's answers to malformed requests, a first-head deadline, and at-once answers.

    aiohttp makes a request object for each request and hands it to a task
    of its own, with its request loop, writer and response coroutines
    around it: a large part of what a cache hit costs a worker.  When the
    connection is idle (its request loop waits for the next request),
    requests that arrive are first offered, as parsed, to
    ``answer_at_once``; what it answers is written here, in order, and the
    first request it declines goes to aiohttp's loop with everything after
    it, so pipelined requests are still answered in order.
    """

    def __init__(
        self, manager: web.Server, *, header_timeout: float, answer_at_once: AnswerAtOnce | None, **kwargs: Any
    ) -> None:
        super().__init__(manager, **kwargs)
        self._header_timeout = header_timeout
        self._header_deadline: asyncio.TimerHandle | None = None
        self._answer_at_once = answer_at_once
        self._remote: str | None = None  # the peer's address, as aiohttp's request gives it

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        peer = self.peername
        if peer is not None:
            self._remote = str(peer[0]) if isinstance(peer, (list, tuple)) else str(peer)
        self._header_deadline = self._loop.call_later(self._header_timeout, self._first_head_overdue)

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        waiter = self._waiter
        if self._answer_at_once is None or waiter is None or waiter.done():
            # Not waiting for a request: one is queued or under way, so later ones must wait their turn.
            super().data_received(data)
            return
        # Parse and queue as usual, but leave the request loop asleep until we know it has work.
        self._waiter = None
        try:
            super().data_received(data)
        finally:
            self._waiter = waiter
        if not self._buffer_paused and not self._upgraded:
            self._answer_queued_at_once()
        if self._messages:
            waiter.set_result(None)

    def _answer_queued_at_once(self) -> None:
        """Answer queued requests from the front while ``answer_at_once`` can; leave the rest queued."""
        messages = self._messages
        transport = self.transport
        answered = False
        while messages and not self._force_close and not self._close and not self.writing_paused:
            message, payload = messages[0]
            if (
                payload is not EMPTY_PAYLOAD
                or not isinstance(message, RawRequestMessage)
                or message.should_close
                or message.upgrade
            ):
                break  # a body to read, a parse error to answer, a connection to close or upgrade: aiohttp's part
            try:
                response = self._answer_at_once(message, self._remote, transport)
            except Exception:
                # The request loop handles it again, and answers 500 if it fails there too.
                log.exception("answering a request at once failed")
                break
            if response is None:
                break
            messages.popleft()
            self._parser.message_consumed()
            self._manager.requests_count += 1
            transport.write(response.encode(message.version, message.method == "HEAD", True))
            answered = True
        if answered and self._keepalive_timeout:
            # What aiohttp's request loop does after each response: the idle timeout starts again.
            self._keepalive = True
            self._next_keepalive_close_time = self._loop.time() + self._keepalive_timeout
            if self._keepalive_handle is None:
                self._keepalive_handle = self._loop.call_at(self._next_keepalive_close_time, self._process_keepalive)

    def _first_head_overdue(self) -> None:
        self._header_deadline = None
        if self._request_count == 0:
            log.debug("closing a connection that sent no complete request head in %gs", self._header_timeout)
            self.force_close()

    def handle_error(
        self, request: web.BaseRequest, status: int = 500, exc: BaseException | None = None, message: str | None = None
    ) -> web.StreamResponse:
        if isinstance(exc, LineTooLong):
            status = 414 if exc.args[1:2] == (MAX_REQUEST_LINE,) else 431
        elif isinstance(exc, BadHttpMessage) and "Too many headers" in str(exc):
            status = 431
        elif status != 500:
            status = 400
        if status == 500:
            log.error("unexpected error handling a request from %s", request.remote, exc_info=exc)
        else:
            # The exception's text quotes the request; the class name is enough to tell what was wrong.
            log.debug("malformed request from %s: %s (%d)", request.remote, type(exc).__name__, status)
        if request.writer.output_size > 0:
            raise ConnectionError("the response has started; the connection is closed instead")
        response = web.Response(
            status=status, body=orjson.dumps({"message": _REASONS[status]}), content_type="application/json"
        )
        response.headers["Server"] = "gwd"
        response.force_close()
        return response


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


class GatewayServer(web.Server):
    """aiohttp's low-level server making :class:`GatewayRequestHandler` connections with gwd's parser limits.

    Past the worker's connection limit (``count``), a new connection is
    answered ``503`` and closed: with descriptors to spare for that, a
    client is never closed without an answer for lack of them.
    """

    def __init__(
        self,
        handler: Any,
        *,
        header_timeout: float,
        count: ConnectionCount,
        answer_at_once: AnswerAtOnce | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            handler, max_line_size=MAX_REQUEST_LINE, max_field_size=MAX_HEADER_BYTES, max_headers=MAX_HEADERS, **kwargs
        )
        self._header_timeout = header_timeout
        self._answer_at_once = answer_at_once
        self._count = count

    def __call__(self) -> asyncio.Protocol:
        count = self._count
        if count.open >= count.most:
            if not count.refusing:
                count.refusing = True
                log.warning("%d client connections open, the most this worker takes: answering new ones 503", count.most)
            return RefusedConnection(count)
        return GatewayRequestHandler(
            self, loop=self._loop, header_timeout=self._header_timeout, answer_at_once=self._answer_at_once, **self._kwargs
        )

    def connection_made(self, handler: RequestHandler, transport: asyncio.Transport) -> None:
        self._count.open += 1
        super().connection_made(handler, transport)

    def connection_lost(self, handler: RequestHandler, exc: BaseException | None = None) -> None:
        count = self._count
        count.open -= 1
        if count.open < count.most - max(1, count.most // 10):
            count.refusing = False  # well below the limit again: the next time it fills up is logged
        super().connection_lost(handler, exc)
