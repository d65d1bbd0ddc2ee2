"""gwd's request and response: what the server protocol parses, what every stage and integration returns.

A :class:`Request` is what the client sent, as the parser gave it: bytes
where bytes came, decoded only where a stage asks.  A :class:`Response` is a
status, header lines already encoded (``Name: value\\r\\n`` each), and a body
that is either bytes or a :class:`BodySource` to stream from.  The server
protocol adds what belongs to the hop (``Date`` when the lines hold none,
``Content-Length`` or chunked framing, ``Connection``), so every response,
whether a cache hit, a backend's, a mock's or an error, is written the same
way, in one ``write`` when its body is bytes.
"""

from __future__ import annotations

import asyncio
import time
from email.utils import formatdate
from http import HTTPStatus
from typing import TYPE_CHECKING, Protocol
from urllib.parse import parse_qsl, unquote

import orjson

if TYPE_CHECKING:
    from gwd.http.server import HttpConnection


def valid_text(text: str) -> str:
    """``text`` with every byte that was not UTF-8 (kept as a surrogate by ``surrogateescape``) as U+FFFD.

    What gwd hands to code it does not own (a function's event, an
    authorizer's request) must be text any JSON encoder and ``str.encode()``
    take; a surrogate is neither.
    """
    return text if text.isascii() else text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


class Headers:
    """A request's header lines as sent, and a look-up by lower-cased name.

    ``get`` takes the lower-cased name as bytes (callers keep such names as
    constants built once) and gives the first value, or None.
    """

    __slots__ = ("lines", "names", "_first")

    def __init__(self, lines: list[tuple[bytes, bytes]] | None = None) -> None:
        self.lines: list[tuple[bytes, bytes]] = []  # (name as sent, value), in order
        self.names: list[bytes] = []  # the same names lower-cased, lowered once here for every reader
        self._first: dict[bytes, bytes] = {}
        for name, value in lines or ():
            self.add(name, value)

    def add(self, name: bytes, value: bytes) -> None:
        lowered = name.lower()
        self.lines.append((name, value))
        self.names.append(lowered)
        self._first.setdefault(lowered, value)

    def get(self, lowered: bytes) -> bytes | None:
        return self._first.get(lowered)

    def text(self, lowered: bytes) -> str | None:
        """The first value of the header as text (UTF-8; bytes that are not stay as surrogates), or None."""
        value = self._first.get(lowered)
        return None if value is None else value.decode("utf-8", "surrogateescape")

    def readable(self, lowered: bytes) -> str | None:
        """The first value as text for code gwd does not own: bytes that are not UTF-8 as U+FFFD (see :func:`valid_text`)."""
        value = self._first.get(lowered)
        return None if value is None else value.decode("utf-8", "replace")

    def getall(self, lowered: bytes) -> list[bytes]:
        if lowered not in self._first:
            return []
        return [value for name, (_, value) in zip(self.names, self.lines) if name == lowered]

    def __contains__(self, lowered: bytes) -> bool:
        return lowered in self._first

    def __len__(self) -> int:
        return len(self.lines)


class RequestBodyError(Exception):
    """Reading a request body failed: ``status`` is what the client is answered (413, 408, or 400)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


class ClientGone(ConnectionError):
    """The client closed its connection."""


class Request:
    """One request as the client sent it.

    ``path`` and ``query`` are the target's parts, undecoded; ``scheme``
    and ``remote`` (the peer's address) belong to the connection and are
    worked out once per connection.  ``context`` is the application's: the
    pipeline keeps its exchange there.
    """

    __slots__ = (
        "method",
        "target",
        "path",
        "query",
        "version",
        "headers",
        "keep_alive",
        "content_length",
        "chunked",
        "expect_continue",
        "body",
        "connection",
        "context",
    )

    def __init__(
        self,
        method: str,
        target: bytes,
        version: str,
        headers: Headers,
        *,
        keep_alive: bool = True,
        content_length: int | None = None,
        chunked: bool = False,
        body: RequestBody | None = None,
        connection: HttpConnection | None = None,
    ) -> None:
        self.method = method
        self.target = target
        path, _, query = target.partition(b"?")
        if path[:1] != b"/" and b"://" in path:
            # Absolute form (RFC 9112, 3.2.2), as proxies send: the resource is the path after the authority.
            path = b"/" + path.partition(b"://")[2].partition(b"/")[2]
        self.path = path.decode("utf-8", "surrogateescape")
        self.query = query.decode("utf-8", "surrogateescape")
        self.version = version  # "1.1", "1.0"
        self.headers = headers
        self.keep_alive = keep_alive
        self.content_length = content_length
        self.chunked = chunked
        self.expect_continue = False
        self.body = body if body is not None else RequestBody.complete(b"")
        self.connection = connection
        self.context: object = None

    def with_body(self, body: bytes, headers: Headers | None = None, query: str | None = None) -> Request:
        """This request with a body that is all here (a mapping template's output), and new headers or query if given."""
        copy = self.with_head(headers, query)
        copy.content_length = len(body)
        copy.chunked = False
        copy.expect_continue = False
        copy.body = RequestBody.complete(body)
        return copy

    def with_head(self, headers: Headers | None = None, query: str | None = None) -> Request:
        """This request with new headers or query string (parameter mapping), its body still its own."""
        copy = Request.__new__(Request)
        copy.method = self.method
        copy.target = self.target
        copy.path = self.path
        copy.query = self.query if query is None else query
        copy.version = self.version
        copy.headers = self.headers if headers is None else headers
        copy.keep_alive = self.keep_alive
        copy.content_length = self.content_length
        copy.chunked = self.chunked
        copy.expect_continue = self.expect_continue
        copy.body = self.body
        copy.connection = self.connection
        copy.context = self.context
        return copy

    @property
    def remote(self) -> str:
        return self.connection.remote if self.connection is not None else ""

    @property
    def scheme(self) -> str:
        return self.connection.scheme if self.connection is not None else "http"

    @property
    def has_body(self) -> bool:
        """Whether the request says a body follows (a length above 0, or chunked)."""
        return self.chunked or bool(self.content_length)

    def media_type(self) -> str:
        """The ``Content-Type``'s media type, lower-cased and without parameters ("" when there is none)."""
        content_type = self.headers.text(b"content-type")
        return content_type.partition(";")[0].strip().lower() if content_type else ""

    def decoded_path(self) -> str:
        """The path with its percent-escapes decoded (UTF-8)."""
        return unquote(self.path) if "%" in self.path else self.path

    def query_values(self, name: str) -> list[str]:
        """Every value of one query-string parameter, decoded, in order."""
        return [value for key, value in parse_qsl(self.query, keep_blank_values=True) if key == name] if self.query else []

    def query_items(self) -> list[tuple[str, str]]:
        """The query string's parameters, decoded, in order."""
        return parse_qsl(self.query, keep_blank_values=True) if self.query else []


class RequestBody:
    """A request's body as it arrives: chunks queued by the parser, read by whatever forwards or consumes it.

    The connection pauses reading while more than ``high_water`` bytes wait
    here; reading past ``max_bytes`` is a 413; waiting longer than
    ``timeout`` for the next chunk is a 408.  The first read of a request
    that said ``Expect: 100-continue`` sends the interim ``100 Continue``.
    """

    __slots__ = ("_chunks", "buffered", "received", "done", "_waiter", "_failure", "_connection", "_continue", "max_bytes", "timeout")

    HIGH_WATER = 256 * 1024

    def __init__(self, connection: HttpConnection | None, max_bytes: int, timeout: float) -> None:
        self._chunks: list[bytes] = []
        self.buffered = 0
        self.received = 0
        self.done = False
        self._waiter: asyncio.Future[None] | None = None
        self._failure: BaseException | None = None
        self._connection = connection
        self._continue = False
        self.max_bytes = max_bytes
        self.timeout = timeout

    @classmethod
    def complete(cls, data: bytes) -> RequestBody:
        """A body that is all here already (in-process requests, tests)."""
        body = cls(None, len(data), 0.0)
        if data:
            body._chunks.append(data)
            body.received = body.buffered = len(data)
        body.done = True
        return body

    def expect_continue(self) -> None:
        self._continue = True

    def feed(self, data: bytes) -> None:
        if self._failure is not None:
            return  # refused already: what comes is dropped, not kept
        self.received += len(data)
        if self.received > self.max_bytes:
            self.fail(RequestBodyError(413, "Request Entity Too Large"))
            return
        self._chunks.append(data)
        self.buffered += len(data)
        self._wake()

    def finish(self) -> None:
        self.done = True
        self._wake()

    def fail(self, error: BaseException) -> None:
        if self._failure is None and not self.done:
            self._failure = error
            self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def read(self) -> bytes | None:
        """The next chunk, or None at the body's end."""
        if self._failure is not None:
            raise self._failure
        while not self._chunks:
            if self.done:
                return None
            if self._continue:
                self._continue = False
                if self._connection is not None:
                    self._connection.send_continue()
            loop = asyncio.get_running_loop()
            self._waiter = waiter = loop.create_future()
            timer = loop.call_later(self.timeout, self.fail, RequestBodyError(408, "Request Timeout")) if self.timeout else None
            try:
                await waiter
            finally:
                self._waiter = None
                if timer is not None:
                    timer.cancel()
            if self._failure is not None:
                raise self._failure
        data = b"".join(self._chunks) if len(self._chunks) > 1 else self._chunks[0]
        self._chunks.clear()
        self.buffered = 0
        if self._connection is not None:
            self._connection.body_drained()
        return data

    def take_complete(self) -> bytes | None:
        """The whole body when all of it is here already (a small one usually is), else None: then :meth:`read_all`."""
        if not self.done or self._failure is not None or self._continue:
            return None
        data = b"".join(self._chunks) if len(self._chunks) != 1 else self._chunks[0]
        self._chunks.clear()
        self.buffered = 0
        if self._connection is not None:
            self._connection.body_drained()
        return data

    async def read_all(self) -> bytes:
        """The whole body (for consumers that need it at once: authorizers, functions)."""
        complete = self.take_complete()
        if complete is not None:
            return complete
        parts = []
        while (chunk := await self.read()) is not None:
            parts.append(chunk)
        return b"".join(parts)


class BodySource(Protocol):
    """Where a streamed response's body comes from (a backend connection, a generator)."""

    async def read(self) -> bytes | None:
        """The next chunk, or None at the end; raises :class:`BodyAborted` when the source failed."""

    def close(self, complete: bool) -> None:
        """Done with the source: ``complete`` when every chunk was read and sent."""


class BodyAborted(Exception):
    """A streamed body's source failed after the head went out: the client connection is cut."""


class Response:
    """A status, encoded header lines, and a body (bytes, or a source to stream).

    ``header_lines`` hold no framing (``Content-Length``,
    ``Transfer-Encoding``, ``Connection``): the server protocol writes those.
    ``extra_lines`` are the pipeline's own (request id, rate limits, cache
    status), added at the end.  ``content_length`` is the body's length, or
    for a body-less answer to HEAD (or a 304) the length the body would
    have, or None when unknown.  ``dated``: the lines hold a ``Date``.
    ``close``: the connection closes after this response.
    """

    __slots__ = ("status", "header_lines", "extra_lines", "body", "stream", "content_length", "dated", "close")

    def __init__(self, status: int, header_lines: bytes = b"", body: bytes = b"", *, dated: bool = False, close: bool = False) -> None:
        self.status = status
        self.header_lines = header_lines
        self.extra_lines = b""
        self.body = body
        self.stream: BodySource | None = None
        self.content_length: int | None = len(body)
        self.dated = dated
        self.close = close

    @classmethod
    def streamed(cls, status: int, header_lines: bytes, source: BodySource, length: int | None, dated: bool) -> Response:
        """A response whose body is read from ``source`` as it is sent (``length`` None: chunked, or until close for HTTP/1.0)."""
        response = cls(status, header_lines, dated=dated)
        response.stream = source
        response.content_length = length
        return response

    @classmethod
    def bodiless(cls, status: int, header_lines: bytes, length: int | None, dated: bool) -> Response:
        """The head alone: an answer to HEAD, a 204 or a 304 (``length`` is what the body would be, when known)."""
        response = cls(status, header_lines, dated=dated)
        response.content_length = length
        return response

    @classmethod
    def json(cls, status: int, document: object, header_lines: bytes = b"", close: bool = False) -> Response:
        return cls(status, b"Content-Type: application/json\r\n" + header_lines, orjson.dumps(document), close=close)

    def header_value(self, lowered: bytes) -> bytes | None:
        """The first value of a header in :attr:`header_lines` (a slow look-up, for tests and rare paths)."""
        for line in self.header_lines.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.lower() == lowered:
                return value.strip()
        return None


_STATUS_LINES = {
    (version, status.value): f"HTTP/{version} {status.value} {status.phrase}\r\n".encode()
    for version in ("1.1", "1.0")
    for status in HTTPStatus
}
_HTTP11_STATUS_LINES = {status: line for (version, status), line in _STATUS_LINES.items() if version == "1.1"}


def status_line(version: str, status: int) -> bytes:
    line = _HTTP11_STATUS_LINES.get(status) if version == "1.1" else _STATUS_LINES.get((version, status))
    if line is None:
        line = f"HTTP/{version} {status} \r\n".encode()
    return line


def reason(status: int) -> str:
    """The standard reason phrase of ``status`` ("" for one without)."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


class _DateLine:
    """``Date: ...\\r\\n`` for the current second, formatted once a second."""

    __slots__ = ("_second", "_line")

    def __init__(self) -> None:
        self._second = -1
        self._line = b""

    def current(self) -> bytes:
        now = int(time.time())
        if now != self._second:
            self._second = now
            self._line = b"Date: " + formatdate(now, usegmt=True).encode() + b"\r\n"
        return self._line


date_line = _DateLine().current
"""``Date: ...\\r\\n`` for now."""


def header_value(text: str) -> bytes:
    """A value for a header line gwd writes from data (a template's, a mapped parameter's): one line, UTF-8."""
    return text.replace("\r", " ").replace("\n", " ").encode("utf-8", "replace")


def lines_without(lines: bytes, lowered: bytes) -> bytes:
    """Encoded header lines less those named ``lowered`` (for the rare paths that rewrite a response's headers)."""
    kept = [line for line in lines.split(b"\r\n") if line and line.partition(b":")[0].strip().lower() != lowered]
    return b"".join(line + b"\r\n" for line in kept)


def closing_response(status: int, reason: str, message: str, extra_header_lines: bytes = b"") -> bytes:
    """A whole ``Connection: close`` error response as bytes, for a connection answered outside any request."""
    body = orjson.dumps({"message": message})
    return (
        b"HTTP/1.1 %d %s\r\nServer: gwd\r\nContent-Type: application/json\r\n%bConnection: close\r\n"
        b"Content-Length: %d\r\n\r\n%b" % (status, reason.encode(), extra_header_lines, len(body), body)
    )
