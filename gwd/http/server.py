"""gwd's HTTP/1.1 server protocol: llhttp (through httptools) parses, this module frames, times and limits.

One :class:`HttpConnection` per client connection.  Requests are handled one
at a time, in order: pipelined requests wait in a queue (reading pauses
while it is long), and each answer goes out in one ``write`` when its body
is bytes.  A request whose :class:`Service` answers without waiting (a
cache hit, a mock, a refusal) is answered inside ``data_received``, with no
task; one that must wait gets a task.

Limits follow nginx and AWS: a request line of at most 8 KiB (else 414), at
most 100 header lines and 10 KiB of them in all (else 431), a body of at
most ``max_body`` (the pipeline answers 413).  A malformed request gets a
JSON 400 (501 for a transfer coding or method gwd does not implement, 505
for an HTTP version other than 1.x) with ``Connection: close``, quoting none
of its bytes (they may hold credentials), and nothing of it reaches the
service.

Timeouts cost no timer per request: each connection holds one deadline,
and one sweep per worker every :data:`SWEEP_INTERVAL` closes those past it.
A new connection must deliver a whole request head within
``header_timeout``; an idle keep-alive connection is closed after
``keepalive_timeout``, and once the next request's first byte arrives its
head must come within ``header_timeout`` too, so a client trickling bytes
cannot hold a connection.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from typing import Awaitable, Callable, NamedTuple, Protocol

import httptools

from gwd.http.message import (
    BodyAborted,
    ClientGone,
    Headers,
    Request,
    RequestBody,
    RequestBodyError,
    Response,
    closing_response,
    date_line,
    status_line,
)
from gwd.http.refused import ConnectionCount, RefusedConnection

log = logging.getLogger("gwd.http")

MAX_REQUEST_LINE = 8192
MAX_HEADER_BYTES = 10240
MAX_HEADERS = 100
PIPELINE_DEPTH = 16
"""Parsed requests a connection holds unanswered before it stops reading."""
SWEEP_INTERVAL = 0.25
"""Connection timeouts fire up to this much late."""
LINGER = 2.0
"""Seconds a connection closed with unread request bytes keeps reading them, so its last answer is not destroyed by a reset."""

_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_CLOSE = b"Connection: close\r\n"
_KEEP_ALIVE = b"Connection: keep-alive\r\n"
_CHUNKED = b"Transfer-Encoding: chunked\r\n"
_LAST_CHUNK = b"0\r\n\r\n"
_TOKEN_CHARS = frozenset(b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_NO_BODY_STATUSES = frozenset({204, 304})


class Refusal(Exception):
    """A request the connection answers itself, and then closes: malformed, over a limit, not implemented."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.answer = closing_response(status, reason, message)
        self.status = status


BAD_REQUEST = Refusal(400, "Bad Request", "Bad Request")
URI_TOO_LONG = Refusal(414, "Request-URI Too Long", "Request-URI Too Long")
HEADERS_TOO_LARGE = Refusal(431, "Request Header Fields Too Large", "Request Header Fields Too Large")
NOT_IMPLEMENTED = Refusal(501, "Not Implemented", "Not Implemented")
VERSION_NOT_SUPPORTED = Refusal(505, "HTTP Version Not Supported", "HTTP Version Not Supported")
INTERNAL_ERROR = Response(500, b"Content-Type: application/json\r\nServer: gwd\r\n", b'{"message":"Internal Server Error"}', close=True)


class Service(Protocol):
    """What a listener serves: answers requests, and hears how each one ended."""

    def respond(self, request: Request) -> Response | Awaitable[Response]:
        """The answer, at once when nothing needs waiting for, else an awaitable of it; never raises."""

    def finished(self, request: Request, response: Response | None, body_bytes: int, client_closed: bool) -> None:
        """The request is over: ``response`` was sent (None: none was), with ``body_bytes`` of its body."""


class Limits(NamedTuple):
    header_timeout: float
    keepalive_timeout: float
    body_timeout: float
    max_body: int


class HttpServer:
    """A worker's HTTP connections over all its listeners: their factory, limit, timeouts and drain."""

    __slots__ = ("limits", "count", "connections", "draining", "_loop", "_sweeper")

    def __init__(self, limits: Limits, count: ConnectionCount) -> None:
        self.limits = limits
        self.count = count
        self.connections: set[HttpConnection] = set()
        self.draining = False  # from start_draining() on, every response says Connection: close
        self._loop = asyncio.get_running_loop()
        self._sweeper = self._loop.call_later(SWEEP_INTERVAL, self._sweep)

    def factory(self, service: Service) -> Callable[[], asyncio.Protocol]:
        """The protocol factory of one listener serving ``service``."""

        def connection() -> asyncio.Protocol:
            count = self.count
            if count.open >= count.most:
                if not count.refusing:
                    count.refusing = True
                    log.warning("%d client connections open, the most this worker takes: answering new ones 503", count.most)
                return RefusedConnection(count)
            return HttpConnection(self, service)

        return connection

    def _sweep(self) -> None:
        now = self._loop.time()
        for connection in [c for c in self.connections if 0 < c.deadline <= now]:
            connection.timed_out()
        self._sweeper = self._loop.call_later(SWEEP_INTERVAL, self._sweep)

    def start_draining(self) -> None:
        """From now on every response says ``Connection: close``; idle keep-alive connections close.

        A connection that has not sent its first request yet keeps it coming:
        the client chose this worker just now and would see a close without
        an answer, which it must not retry.  ``close_idle`` ends those.
        """
        self.draining = True
        for connection in list(self.connections):
            if connection.served:
                connection.close_if_idle()

    def close_idle(self) -> None:
        for connection in list(self.connections):
            connection.close_if_idle()

    def busy(self) -> int:
        """Connections with a request under way."""
        return sum(1 for connection in self.connections if connection.active is not None)

    def abort_all(self) -> None:
        """The drain's end: cancel what is left and close every connection."""
        for connection in list(self.connections):
            connection.abort()

    def close(self) -> None:
        self._sweeper.cancel()


class HttpConnection(asyncio.Protocol):
    """One client connection: parse, queue, answer in order, frame, time out."""

    __slots__ = (
        "_server",
        "_service",
        "_loop",
        "_transport",
        "_parser",
        "remote",
        "scheme",
        "_limits",
        "_url",
        "_headers",
        "_header_bytes",
        "_in_head",
        "_parsing",
        "_requests",
        "active",
        "_task",
        "_writing_paused",
        "_drain_waiter",
        "_reading_paused",
        "_closing",
        "_lingering",
        "deadline",
        "_dispatching",
        "served",
        "facts",
    )

    def __init__(self, server: HttpServer, service: Service) -> None:
        self._server = server
        self._service = service
        self._loop = server._loop
        self._limits = server.limits
        self._parser = httptools.HttpRequestParser(self)
        self.remote = ""
        self.scheme = "http"
        self._url = b""
        self._headers = Headers()
        self._header_bytes = 0
        self._in_head = False
        self._parsing: Request | None = None  # the request whose head or body is being parsed
        self._requests: collections.deque[Request] = collections.deque()  # parsed, waiting their turn
        self.active: Request | None = None  # the request being answered
        self._task: asyncio.Task[None] | None = None
        self._writing_paused = False
        self._drain_waiter: asyncio.Future[None] | None = None
        self._reading_paused = False
        self._closing = False  # close once the active request is answered
        self._lingering = False
        self.deadline = 0.0  # loop time the connection times out at; 0: none
        self._dispatching = False
        self.served = 0
        self.facts: dict[object, object] = {}  # what the application worked out once per connection

    # -- asyncio.Protocol --------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._transport = transport
        peer = transport.get_extra_info("peername")
        if isinstance(peer, (tuple, list)):
            self.remote = str(peer[0])
        elif peer:
            self.remote = str(peer)
        if transport.get_extra_info("sslcontext") is not None:
            self.scheme = "https"
        server = self._server
        server.connections.add(self)
        server.count.open += 1
        self.deadline = self._loop.time() + self._limits.header_timeout

    def connection_lost(self, exc: Exception | None) -> None:
        server = self._server
        if self in server.connections:
            server.connections.discard(self)
            count = server.count
            count.open -= 1
            if count.open < count.most - max(1, count.most // 10):
                count.refusing = False  # well below the limit again: the next time it fills up is logged
        self.deadline = 0.0
        self._closing = True
        gone = ClientGone("the client closed the connection")
        for request in (self.active, self._parsing, *self._requests):
            if request is not None:
                request.body.fail(gone)
        self._requests.clear()
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(gone)
        if self._task is not None and not self._task.done():
            self._task.cancel()

    def eof_received(self) -> bool:
        # A client that stops sending has given up on what it still waits
        # for, as nginx takes it: close, which abandons the request under way
        # (logged as 499) and its backend exchange.  Answers already written
        # are still flushed.
        return False

    def pause_writing(self) -> None:
        self._writing_paused = True

    def resume_writing(self) -> None:
        self._writing_paused = False
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        if self.active is None and self._requests:
            self._dispatch()

    def data_received(self, data: bytes) -> None:
        if self._lingering or self._closing and self.active is None:
            return  # closing: what comes is not read
        served = self.served
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserCallbackError as error:
            cause = error.__context__
            self._refuse(cause if isinstance(cause, Refusal) else BAD_REQUEST, type(cause).__name__)
        except httptools.HttpParserInvalidMethodError:
            # llhttp knows every registered method: an unknown one that is a
            # well-formed token is "not implemented", anything else malformed.
            method, space, _ = data.partition(b" ")
            well_formed = served == self.served and space and method and _TOKEN_CHARS.issuperset(method)
            self._refuse(NOT_IMPLEMENTED if well_formed else BAD_REQUEST, "HttpParserInvalidMethodError")
        except httptools.HttpParserUpgrade:
            # The request (a CONNECT, or one asking to switch protocols) is
            # answered as any other; what follows its head is not HTTP, so
            # nothing more is read from this connection.
            self._closing = True
            if self.active is None and not self._requests:
                self._lingering_close()
        except httptools.HttpParserError as error:
            self._refuse(BAD_REQUEST, f"{type(error).__name__} ({error})")
        else:
            if self._in_head and self._url and data[-1:] == b"\n" and self._parser.get_http_version() < "1.0":
                # A request line that ended without an HTTP version: llhttp
                # reads on as HTTP/0.9, whose client waits for an answer.
                self._refuse(BAD_REQUEST, "no HTTP version")

    # -- parser callbacks ---------------------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = Headers()
        self._header_bytes = 0
        self._in_head = True
        if self.active is None and not self._requests:
            # The first byte of the next request: its head must come within header_timeout.
            self.deadline = self._loop.time() + self._limits.header_timeout

    def on_url(self, url: bytes) -> None:
        self._url += url
        if len(self._url) > MAX_REQUEST_LINE:
            raise URI_TOO_LONG

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_bytes += len(name) + len(value)
        if self._header_bytes > MAX_HEADER_BYTES:
            raise HEADERS_TOO_LARGE
        if not self._in_head:
            return  # a trailer: bounded above, and not passed on
        headers = self._headers
        if len(headers.lines) >= MAX_HEADERS:
            raise HEADERS_TOO_LARGE
        headers.add(name, value.strip(b" \t"))

    def on_headers_complete(self) -> None:
        self._in_head = False
        parser = self._parser
        version = parser.get_http_version()
        if version != "1.1" and version != "1.0":
            raise BAD_REQUEST if version[:2] != "1." and version < "1" else VERSION_NOT_SUPPORTED
        headers = self._headers
        hosts = headers.getall(b"host")
        if len(hosts) > 1 or (not hosts and version == "1.1"):
            raise BAD_REQUEST  # RFC 9112 §3.2: exactly one Host
        method = parser.get_method().decode("ascii")
        if method == "CONNECT":
            raise NOT_IMPLEMENTED
        chunked = False
        coding = headers.get(b"transfer-encoding")
        if coding is not None:
            if version == "1.0":
                raise BAD_REQUEST  # HTTP/1.0 has no transfer codings (RFC 9112 §6.1)
            codings = [c.strip().lower() for value in headers.getall(b"transfer-encoding") for c in value.split(b",")]
            if codings[-1] != b"chunked" or b"chunked" in codings[:-1]:
                raise BAD_REQUEST  # the body's length cannot be known (RFC 9112 §6.1, §6.3)
            if len(codings) > 1:
                raise NOT_IMPLEMENTED  # a coding under chunked: gwd decodes none (RFC 9112 §6.1)
            chunked = True
        length = headers.get(b"content-length")
        content_length = int(length) if length is not None else None
        if parser.should_upgrade():
            # llhttp reads no body for a request that switches protocols: what
            # follows the head is not forwarded as one (see HttpParserUpgrade).
            chunked, content_length = False, None
        limits = self._limits
        body = (
            RequestBody(self, limits.max_body, limits.body_timeout) if chunked or content_length else _NO_BODY
        )
        request = Request(
            method,
            self._url,
            version,
            headers,
            keep_alive=parser.should_keep_alive(),
            content_length=content_length,
            chunked=chunked,
            body=body,
            connection=self,
        )
        if body is not _NO_BODY:
            expect = headers.get(b"expect")
            if expect is not None and expect.lower() == b"100-continue" and version == "1.1":
                request.expect_continue = True
                body.expect_continue()
        self._parsing = request
        self._requests.append(request)
        self.deadline = 0.0
        if self.active is None:
            self._dispatch()
        elif len(self._requests) >= PIPELINE_DEPTH:
            self._pause_reading()

    def on_body(self, data: bytes) -> None:
        request = self._parsing
        if request is None:
            return
        body = request.body
        body.feed(data)
        if body.buffered > RequestBody.HIGH_WATER:
            self._pause_reading()

    def on_message_complete(self) -> None:
        request = self._parsing
        if request is not None:
            request.body.finish()
            self._parsing = None
        self.served += 1

    def extra_info(self, name: str) -> object:
        """The transport's ``get_extra_info(name)`` (``ssl_object``, ``peername``, ...)."""
        return self._transport.get_extra_info(name)

    # -- what the request body and the drain ask of the connection ----------------------------------------

    def send_continue(self) -> None:
        """Tell a client waiting for it to send its body (RFC 9110 §10.1.1)."""
        if not self._transport.is_closing():
            self._transport.write(_CONTINUE)

    def body_drained(self) -> None:
        if self._reading_paused and len(self._requests) < PIPELINE_DEPTH:
            parsing = self._parsing
            if parsing is None or parsing.body.buffered <= RequestBody.HIGH_WATER // 4:
                self._reading_paused = False
                self._transport.resume_reading()

    def _pause_reading(self) -> None:
        if not self._reading_paused:
            self._reading_paused = True
            self._transport.pause_reading()

    def timed_out(self) -> None:
        """Past the deadline: a head too slow, a keep-alive connection idle too long, or a linger's end."""
        self.deadline = 0.0
        if not self._lingering and self._url:
            log.debug("closing a connection whose request head did not arrive in time")
        self._transport.close()

    def close_if_idle(self) -> None:
        if self.active is None and not self._requests and not self._in_head:
            self._closing = True
            self._transport.close()

    def abort(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
        self._transport.abort()

    # -- answering ----------------------------------------------------------------------------------------

    def _refuse(self, refusal: Refusal, why: str) -> None:
        """Answer a request the parser or the limits rejected, then close; the service never sees it."""
        log.debug("malformed request from %s: %s (%d)", self.remote, why, refusal.status)
        self._closing = True
        self._pause_reading()
        if self._parsing is not None and self._parsing is not self.active:
            # Its head was accepted but its body is bad: it must not be answered at all.
            try:
                self._requests.remove(self._parsing)
            except ValueError:
                pass
        if self._parsing is not None:
            # The request being answered reads its body from here: it answers with the refusal's status.
            self._parsing.body.fail(RequestBodyError(refusal.status, "the request body was malformed"))
        self._parsing = None
        if self.active is not None:
            # The request being answered came whole; the bad bytes come after it.
            self._requests.clear()
            return
        self._transport.write(refusal.answer)
        self._lingering_close()

    def _dispatch(self) -> None:
        """Answer queued requests in order, as long as each is answered at once and the client takes them."""
        if self._dispatching:
            return  # answering is under way further up the stack: it goes on from there
        self._dispatching = True
        try:
            requests = self._requests
            while self.active is None and requests and not self._writing_paused and not self._transport.is_closing():
                request = requests.popleft()
                self.active = request
                try:
                    answer = self._service.respond(request)
                except Exception:
                    log.exception("answering a request failed")
                    answer = INTERNAL_ERROR
                if isinstance(answer, Response) and answer.stream is None:
                    self._send(request, answer)
                else:
                    self._task = self._loop.create_task(self._answer_later(request, answer))
            if self._reading_paused and len(requests) < PIPELINE_DEPTH:
                self.body_drained()
            if self.active is None and not requests:
                if self._closing:
                    self._close()
                elif self._server.draining:
                    self._close()
                else:
                    self.deadline = self._loop.time() + self._limits.keepalive_timeout
        finally:
            self._dispatching = False

    async def _answer_later(self, request: Request, answer: Response | Awaitable[Response]) -> None:
        try:
            response = answer if isinstance(answer, Response) else await answer
        except asyncio.CancelledError:
            self._service.finished(request, None, 0, self._transport.is_closing() and not self._server.draining)
            return
        except ClientGone:
            self._service.finished(request, None, 0, True)  # its body stopped coming: the client left
            return
        except Exception:
            log.exception("answering a request failed")
            response = INTERNAL_ERROR
        if self._transport.is_closing():
            if response.stream is not None:
                response.stream.close(False)
            self._service.finished(request, None, 0, True)
            return
        if response.stream is None:
            self._send(request, response)
        else:
            await self._send_stream(request, response)
        self._task = None
        if self.active is None:
            self._dispatch()

    def _head(self, request: Request, response: Response, keep_alive: bool) -> list[bytes]:
        status = response.status
        version = request.version
        lines = [status_line(version, status), response.header_lines, response.extra_lines]
        if not response.dated:
            lines.append(date_line())
        if status not in _NO_BODY_STATUSES:
            if response.stream is None or response.content_length is not None:
                if response.content_length is not None:
                    lines.append(b"Content-Length: %d\r\n" % response.content_length)
            elif request.method != "HEAD":
                lines.append(_CHUNKED)
        elif status == 304 and response.content_length:
            lines.append(b"Content-Length: %d\r\n" % response.content_length)
        if keep_alive:
            if version == "1.0":
                lines.append(_KEEP_ALIVE)
        elif version == "1.1":
            lines.append(_CLOSE)
        lines.append(b"\r\n")
        return lines

    def _keeps_alive(self, request: Request, response: Response) -> bool:
        return (
            request.keep_alive
            and not response.close
            and not self._closing
            and not self._server.draining
            and request.body.done
        )

    def _send(self, request: Request, response: Response) -> None:
        """Write a whole response in one piece, and move on to the next request."""
        keep_alive = self._keeps_alive(request, response)
        lines = self._head(request, response, keep_alive)
        sent = 0
        if request.method != "HEAD" and response.status not in _NO_BODY_STATUSES and response.body:
            lines.append(response.body)
            sent = len(response.body)
        self._transport.write(b"".join(lines))
        self._done(request, response, sent, keep_alive)

    async def _send_stream(self, request: Request, response: Response) -> None:
        source = response.stream
        assert source is not None
        keep_alive = self._keeps_alive(request, response)
        if response.content_length is None and request.version == "1.0":
            keep_alive = False  # the body ends where the connection does
        transport = self._transport
        chunked = response.content_length is None and request.version == "1.1"
        transport.write(b"".join(self._head(request, response, keep_alive)))
        sent = 0
        try:
            if request.method == "HEAD" or response.status in _NO_BODY_STATUSES:
                source.close(False)  # its body is not read: the source cannot be reused
            else:
                while (chunk := await source.read()) is not None:
                    if not chunk:
                        continue
                    transport.write(b"%x\r\n%b\r\n" % (len(chunk), chunk) if chunked else chunk)
                    sent += len(chunk)
                    if self._writing_paused:
                        await self._drain()
                if chunked:
                    transport.write(_LAST_CHUNK)
                source.close(True)
        except BodyAborted:
            transport.abort()  # the head is out: cutting the connection is all that tells the client
            self._service.finished(request, response, sent, False)
            return
        except (ClientGone, ConnectionError, asyncio.CancelledError):
            source.close(False)
            self._service.finished(request, response, sent, True)
            return
        except Exception:
            log.exception("sending a response body failed")
            source.close(False)
            transport.abort()
            self._service.finished(request, response, sent, False)
            return
        self._done(request, response, sent, keep_alive)

    async def _drain(self) -> None:
        if self._transport.is_closing():
            raise ClientGone("the client closed the connection")
        self._drain_waiter = self._loop.create_future()
        try:
            await self._drain_waiter
        finally:
            self._drain_waiter = None

    def _done(self, request: Request, response: Response, sent: int, keep_alive: bool) -> None:
        self.active = None
        self._service.finished(request, response, sent, False)
        if not keep_alive:
            self._closing = True
            self._requests.clear()
            if request.body.done:
                self._close()
            else:
                self._lingering_close()
        elif not self._dispatching:
            self._dispatch()

    def _close(self) -> None:
        self.deadline = 0.0
        self._transport.close()

    def _lingering_close(self) -> None:
        """Close for writing, and read (and drop) what the client still sends for a while, then close."""
        self._lingering = True
        self.deadline = self._loop.time() + LINGER
        transport = self._transport
        if self._reading_paused:
            self._reading_paused = False
            transport.resume_reading()
        if transport.can_write_eof():
            transport.write_eof()
        else:
            transport.close()


_NO_BODY = RequestBody.complete(b"")
"""The body of every request without one (nothing is ever fed to it)."""
