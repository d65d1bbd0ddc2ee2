"""HTTP/1.1 connections to backends: a keep-alive pool per backend, parsed with httptools.

aiohttp's ClientSession does far more per request than a gateway needs
(cookie jars, redirects, URL objects, tracing signals, decompression) and
holds a proxy to about 0.2x nginx's rate; a plain asyncio protocol with the
httptools (llhttp) parser does one buffered write per request head and hands
body bytes through untouched.

Flow control both ways keeps memory flat whatever the body size: reading
from the backend pauses while the client has not taken what was read, and
writing to the backend waits while the socket's buffer is full.

A response head is held to the limits a request head is (at most 100
header lines, 10 KiB of them, 8 KiB of status line): a backend sending an
endless head gets ``502`` (``protocol``) and its connection closed, not a
worker's memory.

Timeouts cost no timer per request: a connection carries a deadline (a
float), and one sweep per worker every ``SWEEP_INTERVAL`` fails the
connections past theirs and closes idle ones past ``IDLE_TIMEOUT``.
Creating and cancelling an ``asyncio.timeout`` per request was a fifth of a
proxying worker's time in py-spy.
"""

from __future__ import annotations

import asyncio
import collections
import errno
import socket
import ssl
from typing import Any

import httptools

from gwd.config.model import BackendTls
from gwd.http.server import MAX_HEADER_BYTES, MAX_HEADERS, MAX_REQUEST_LINE
from gwd.tls import backend_context

READ_HIGH_WATER = 256 * 1024
READ_LOW_WATER = 64 * 1024
IDLE_TIMEOUT = 60.0
"""Idle pooled connections are closed after this (backends often close sooner; a retry covers that race)."""
SURPLUS_IDLE = 1.0
"""Idle connections beyond ``upstream_keepalive`` are closed once idle this long.

A pool that closed every connection handed back past its cap would, under
more concurrent requests than the cap, close one connection and open another
for nearly every request: a connect, a close and a TIME_WAIT socket each
(nginx's ``keepalive`` behaves so).  Keeping them while traffic still needs
them, and closing only those a second of traffic did not reuse, bounds the
idle pool the same way once the burst is over.
"""
SWEEP_INTERVAL = 0.1
"""Timeouts fire up to this much late."""
MAX_HEAD_BYTES = MAX_REQUEST_LINE + MAX_HEADER_BYTES + 4 * MAX_HEADERS
"""The most bytes of a response head: a status line and header lines at their limits, with their separators."""


_CONNECTION_DIRECTIVES = frozenset({b"keep-alive", b"close"})


def connection_options(value: bytes) -> set[bytes]:
    """The lower-cased options of a ``Connection`` header value (RFC 9110 §7.6.1)."""
    return {token.strip().lower() for token in value.split(b",")}


class UpstreamError(Exception):
    """A backend failure; ``kind`` says which: refused, reset, timeout, tls, dns, protocol, or descriptors (gwd's own).

    ``connecting``: no connection was made (nothing of the request was sent).
    """

    def __init__(self, kind: str, detail: str, connecting: bool = False) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.connecting = connecting


class _HeadTooLarge(Exception):
    """Raised from a parser callback: the response head broke one of its limits."""


class UpstreamResponse:
    """The head of a backend response; the body is read from its connection."""

    __slots__ = ("status", "headers", "names", "content_length", "chunked", "connection_tokens")

    def __init__(
        self,
        status: int,
        headers: list[tuple[bytes, bytes]],
        names: list[bytes],
        content_length: int | None,
        chunked: bool,
        connection_tokens: frozenset[bytes],
    ) -> None:
        self.status = status
        self.headers = headers  # (name as sent, value), in order
        self.names = names  # the same names lower-cased, lowered once here for every reader
        self.content_length = content_length
        self.chunked = chunked
        # Lower-cased header names the backend's Connection header lists (hop-by-hop for this hop).
        self.connection_tokens = connection_tokens


class UpstreamConnection(asyncio.Protocol):
    """One connection to a backend, carrying one request at a time."""

    __slots__ = (
        "_pool",
        "_transport",
        "_parser",
        "_busy",
        "_headers",
        "_response",
        "_body",
        "_body_bytes",
        "_complete",
        "_head_only",
        "_keep_alive",
        "_error",
        "_waiter",
        "_drain_waiter",
        "_write_paused",
        "_read_paused",
        "_deadline",
        "_timeout",
        "idle_since",
        "_received_any",
        "_closed",
        "_head_bytes",
        "_header_bytes",
    )

    def __init__(self, pool: UpstreamPool) -> None:
        self._pool = pool
        self._transport: asyncio.Transport | None = None
        self._parser: Any = None
        self._busy = False
        self._headers: list[tuple[bytes, bytes]] = []
        self._response: UpstreamResponse | None = None
        self._body: collections.deque[bytes] = collections.deque()
        self._body_bytes = 0
        self._complete = False
        self._head_only = False
        self._keep_alive = False
        self._error: UpstreamError | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._drain_waiter: asyncio.Future[None] | None = None
        self._write_paused = False
        self._read_paused = False
        # While a request is out: when it fails for lack of progress (loop time), and the allowance.
        self._deadline = 0.0
        self._timeout = 0.0
        self.idle_since = 0.0  # loop time it was last handed back to the pool
        self._received_any = False
        self._closed = False
        # Bytes of the response head so far, all of them and those of header names and values.
        self._head_bytes = 0
        self._header_bytes = 0

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        self._parser = httptools.HttpResponseParser(self)

    def data_received(self, data: bytes) -> None:
        self._received_any = True
        if not self._busy:
            # Bytes while idle: the backend broke the protocol; never reuse this connection.
            self._fail(UpstreamError("protocol", "data from an idle connection"))
            self.close()
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(UpstreamError("protocol", "unexpected protocol upgrade"))
        except httptools.HttpParserError as exc:
            if isinstance(exc.__context__, _HeadTooLarge):  # raised by a callback below
                self._refuse_head(str(exc.__context__))
                return
            self._fail(UpstreamError("protocol", f"invalid response: {exc}"))
        if self._response is None and not self._closed:
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD_BYTES:
                self._refuse_head(f"a response head of more than {MAX_HEAD_BYTES} bytes")

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._pool.forget(self)
        if self._busy and not self._complete:
            response = self._response
            if response is not None and response.content_length is None and not response.chunked:
                # A body delimited by the connection's end is complete now.
                self._keep_alive = False
                self._complete = True
                self._wake()
            elif isinstance(exc, ssl.SSLError):
                # An alert from the backend, such as "certificate required" from one that wants mTLS.
                self._fail(UpstreamError("tls", f"the backend ended the TLS session: {exc.reason or exc}"))
            else:
                detail = "connection closed" if exc is None else str(exc) or type(exc).__name__
                self._fail(UpstreamError("reset", detail))
        if self._drain_waiter is not None and not self._drain_waiter.done():
            self._drain_waiter.set_exception(self._error or UpstreamError("reset", "connection closed while sending"))

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._drain_waiter is not None and not self._drain_waiter.done():
            self._drain_waiter.set_result(None)

    # httptools callbacks

    def on_status(self, status: bytes) -> None:
        if len(status) > MAX_REQUEST_LINE:
            raise _HeadTooLarge(f"a status line of more than {MAX_REQUEST_LINE} bytes")

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))
        self._header_bytes += len(name) + len(value)
        if len(self._headers) > MAX_HEADERS:
            raise _HeadTooLarge(f"more than {MAX_HEADERS} header lines")
        if self._header_bytes > MAX_HEADER_BYTES:
            raise _HeadTooLarge(f"more than {MAX_HEADER_BYTES} bytes of header lines")

    def on_headers_complete(self) -> None:
        parser = self._parser
        status = parser.get_status_code()
        if 100 <= status < 200:
            # Interim responses (100 Continue, 103 Early Hints) are not forwarded.
            self._headers = []
            self._header_bytes = 0
            return
        content_length = None
        chunked = False
        tokens: frozenset[bytes] = frozenset()
        names = [name.lower() for name, _ in self._headers]
        for lowered, (_, value) in zip(names, self._headers):
            if lowered == b"content-length":
                content_length = int(value)
            elif lowered == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
            elif lowered == b"connection":
                tokens = tokens.union(connection_options(value)) - _CONNECTION_DIRECTIVES
        self._response = UpstreamResponse(status, self._headers, names, content_length, chunked, tokens)
        self._keep_alive = parser.should_keep_alive()
        if self._head_only:
            # A response to HEAD has no body, whatever Content-Length says, but the
            # parser would wait for one: the next response gets a fresh parser.
            self._complete = True
            self._parser = httptools.HttpResponseParser(self)
        self._wake()

    def on_body(self, body: bytes) -> None:
        # Progress: the read timeout runs between pieces of the body, not over all of it.
        self._deadline = self._pool.loop.time() + self._timeout
        self._body.append(body)
        self._body_bytes += len(body)
        if self._body_bytes > READ_HIGH_WATER and not self._read_paused and self._transport is not None:
            self._read_paused = True
            self._transport.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if self._response is None:
            return  # the end of an interim response
        self._complete = True
        self._wake()

    # Used by the integration

    @property
    def reusable(self) -> bool:
        return not self._closed and self._error is None

    @property
    def received_any(self) -> bool:
        return self._received_any

    def send_head(self, head: bytes, head_only: bool, timeout: float) -> None:
        """Start a request: write its head; the body, if any, follows with :meth:`send_body`.

        The request fails with a timeout error when the backend makes no
        progress for ``timeout`` seconds.
        """
        if self._closed:
            raise UpstreamError("reset", "connection closed before the request was sent")
        self._busy = True
        self._headers = []
        self._head_bytes = 0
        self._header_bytes = 0
        self._response = None
        self._complete = False
        self._head_only = head_only
        self._received_any = False
        self._timeout = timeout
        self._deadline = self._pool.loop.time() + timeout
        assert self._transport is not None
        self._transport.write(head)

    async def send_body(self, chunk: bytes) -> None:
        if self._closed:
            raise UpstreamError("reset", "connection closed while sending")
        assert self._transport is not None
        self._transport.write(chunk)
        if self._write_paused:
            self._drain_waiter = self._pool.loop.create_future()
            try:
                await self._drain_waiter
            finally:
                self._drain_waiter = None

    async def read_head(self) -> UpstreamResponse:
        while self._response is None:
            if self._error is not None:
                raise self._error
            await self._wait()
        return self._response

    def complete_body(self) -> bytes | None:
        """The whole body if it has all arrived (the usual case for a small one), else None."""
        if not self._complete:
            return None
        body = b"".join(self._body)
        self._body.clear()
        self._body_bytes = 0
        return body

    async def read_body(self) -> bytes | None:
        """The next piece of the body, or None at its end."""
        while True:
            if self._body:
                chunk = self._body.popleft()
                self._body_bytes -= len(chunk)
                if self._read_paused and self._body_bytes < READ_LOW_WATER and self._transport is not None:
                    self._read_paused = False
                    self._transport.resume_reading()
                return chunk
            if self._complete:
                return None
            if self._error is not None:
                raise self._error
            await self._wait()

    def release(self) -> None:
        """The exchange is over: pool the connection if it can carry another request, else close it."""
        self._deadline = 0.0
        if self._complete and self._keep_alive and self.reusable and not self._body:
            self._busy = False
            self.idle_since = self._pool.loop.time()
            self._pool.put_idle(self)
        else:
            self.close()

    def close(self) -> None:
        if self._transport is not None and not self._closed:
            self._transport.abort()
        self._closed = True
        self._pool.forget(self)

    def check_timeouts(self, now: float) -> None:
        """Called by the sweep: fail a request past its deadline, close a connection idle too long."""
        if self._deadline and now >= self._deadline:
            self._deadline = 0.0
            self._fail(UpstreamError("timeout", f"no progress for {self._timeout:g}s"))
            self.close()
        elif not self._busy and now - self.idle_since >= IDLE_TIMEOUT:
            self.close()

    def _refuse_head(self, what: str) -> None:
        """The backend's head broke a limit: fail the request and close the connection, buffering no more of it."""
        self._fail(UpstreamError("protocol", f"the backend sent {what}"))
        self.close()

    def _fail(self, error: UpstreamError) -> None:
        if self._error is None:
            self._error = error
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _wait(self) -> None:
        # The pool's loop, not get_running_loop(): that costs a getpid() system call per call.
        self._waiter = self._pool.loop.create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None


class UpstreamPool:
    """Keep-alive connections to one backend (scheme, host, port); beyond ``max_idle`` idle ones, see :data:`SURPLUS_IDLE`."""

    __slots__ = ("loop", "host", "port", "_ssl", "_server_hostname", "_max_idle", "_idle", "_all", "_pools")

    def __init__(
        self, pools: UpstreamPools, host: str, port: int, tls: ssl.SSLContext | None, server_name: str | None, max_idle: int
    ) -> None:
        self.loop = asyncio.get_running_loop()
        self._pools = pools
        self.host = host
        self.port = port
        self._ssl = tls
        self._server_hostname = server_name
        self._max_idle = max_idle
        self._idle: list[UpstreamConnection] = []
        self._all: set[UpstreamConnection] = set()

    @property
    def connection_count(self) -> int:
        return len(self._all)

    def take_idle(self) -> UpstreamConnection | None:
        """The most recently used idle connection (the least likely to have been closed by the backend)."""
        while self._idle:
            connection = self._idle.pop()
            if connection.reusable:
                return connection
        return None

    async def connect(self, timeout: float) -> UpstreamConnection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                _, connection = await loop.create_connection(
                    lambda: UpstreamConnection(self),
                    self.host,
                    self.port,
                    ssl=self._ssl,
                    server_hostname=self._server_hostname,
                )
        except TimeoutError:
            raise UpstreamError("timeout", f"connect to {self.host}:{self.port} timed out after {timeout:g}s", True) from None
        except ConnectionRefusedError:
            raise UpstreamError("refused", f"{self.host}:{self.port} refused the connection", True) from None
        except ssl.SSLCertVerificationError as exc:
            raise UpstreamError(
                "tls", f"the certificate of {self.host}:{self.port} was refused: {exc.verify_message or exc.reason}", True
            ) from None
        except ssl.SSLError as exc:
            raise UpstreamError("tls", f"TLS handshake with {self.host}:{self.port} failed: {exc.reason or exc}", True) from None
        except OSError as exc:
            if exc.errno in (errno.EMFILE, errno.ENFILE):
                # The gateway's own shortage, not the backend's fault: 503, not 502.
                raise UpstreamError("descriptors", f"no file descriptor left to connect to {self.host}:{self.port}", True) from None
            kind = "dns" if isinstance(exc, socket.gaierror) else "refused"
            raise UpstreamError(kind, f"cannot connect to {self.host}:{self.port}: {exc.strerror or exc}", True) from None
        self._all.add(connection)
        self._pools.start_sweeping()
        return connection

    def put_idle(self, connection: UpstreamConnection) -> None:
        if not self._max_idle:
            connection.close()
            return
        self._idle.append(connection)

    def forget(self, connection: UpstreamConnection) -> None:
        self._all.discard(connection)
        try:
            self._idle.remove(connection)
        except ValueError:
            pass

    def check_timeouts(self, now: float) -> bool:
        """Sweep this pool's connections, closing the surplus idle ones; True while it has any."""
        idle = self._idle  # least recently used first
        surplus = len(idle) - self._max_idle
        while surplus > 0 and now - idle[0].idle_since >= SURPLUS_IDLE:
            idle[0].close()  # which takes it out of the list
            surplus -= 1
        for connection in list(self._all):
            connection.check_timeouts(now)
        return bool(self._all)

    def close(self) -> None:
        for connection in list(self._all):
            connection.close()
        self._idle.clear()


def client_tls(scheme: str, host: str, tls: BackendTls | None) -> tuple[ssl.SSLContext | None, str | None]:
    """The TLS context and server name (SNI, and the name verified) for connecting to a backend; (None, None) for http."""
    if scheme != "https":
        return None, None
    if tls is None:
        return backend_context(None, None, None, False), host
    return backend_context(tls.client_cert, tls.client_key, tls.ca, tls.insecure_skip_verify), tls.server_name or host


class UpstreamPools:
    """Every backend pool of one worker, so routes to the same backend share connections."""

    __slots__ = ("_pools", "_max_idle", "_sweep_handle")

    def __init__(self, max_idle: int) -> None:
        self._pools: dict[tuple[str, str, int, BackendTls | None], UpstreamPool] = {}
        self._max_idle = max_idle
        self._sweep_handle: asyncio.TimerHandle | None = None

    def get(self, scheme: str, host: str, port: int, tls: BackendTls | None) -> UpstreamPool:
        """The pool for a backend; routes that reach it with other TLS settings get their own."""
        key = (scheme, host, port, tls)
        pool = self._pools.get(key)
        if pool is None:
            context, server_name = client_tls(scheme, host, tls)
            pool = self._pools[key] = UpstreamPool(self, host, port, context, server_name, self._max_idle)
        return pool

    def connection_counts(self) -> dict[str, int]:
        """Open connections per backend, as ``host:port`` (for the metrics)."""
        counts: dict[str, int] = {}
        for pool in self._pools.values():
            backend = f"{pool.host}:{pool.port}"
            counts[backend] = counts.get(backend, 0) + pool.connection_count
        return counts

    def start_sweeping(self) -> None:
        if self._sweep_handle is None:
            self._sweep_handle = asyncio.get_running_loop().call_later(SWEEP_INTERVAL, self._sweep)

    def _sweep(self) -> None:
        self._sweep_handle = None
        now = asyncio.get_running_loop().time()
        busy = [pool.check_timeouts(now) for pool in self._pools.values()]
        if any(busy):
            self.start_sweeping()

    def close(self) -> None:
        if self._sweep_handle is not None:
            self._sweep_handle.cancel()
            self._sweep_handle = None
        for pool in self._pools.values():
            pool.close()
