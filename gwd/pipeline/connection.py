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
from typing import TYPE_CHECKING, Any, Callable

import aiohttp
import orjson
from aiohttp import http_parser, web
from aiohttp.http import RawRequestMessage
from aiohttp.http_exceptions import BadHttpMessage, LineTooLong
from aiohttp.streams import EMPTY_PAYLOAD
from aiohttp.web_protocol import RequestHandler

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


class GatewayServer(web.Server):
    """aiohttp's low-level server making :class:`GatewayRequestHandler` connections with gwd's parser limits."""

    def __init__(
        self, handler: Any, *, header_timeout: float, answer_at_once: AnswerAtOnce | None = None, **kwargs: Any
    ) -> None:
        super().__init__(
            handler, max_line_size=MAX_REQUEST_LINE, max_field_size=MAX_HEADER_BYTES, max_headers=MAX_HEADERS, **kwargs
        )
        self._header_timeout = header_timeout
        self._answer_at_once = answer_at_once

    def __call__(self) -> RequestHandler:
        return GatewayRequestHandler(
            self, loop=self._loop, header_timeout=self._header_timeout, answer_at_once=self._answer_at_once, **self._kwargs
        )
