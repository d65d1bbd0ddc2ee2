"""Accepting on an HTTPS listener: a client that speaks plain HTTP to it gets a 400 it can read.

Given the TLS context, the event loop's server would start a handshake on
every connection, and a plain ``GET`` would end it with no answer at all.
Here the worker accepts itself, looks at a new connection's first byte
without reading it (``MSG_PEEK``), and hands a TLS handshake (record type
22) to the loop as an accepted socket with the context; anything else is
answered as nginx does, ``400`` saying a plain HTTP request was sent to an
HTTPS port, and closed.  A connection that sends nothing within the
listener's ``header_timeout`` is closed.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from typing import Callable

from gwd.http.message import closing_response

log = logging.getLogger("gwd.tls")

TLS_HANDSHAKE = b"\x16"
"""The first byte of a TLS record carrying a handshake: every TLS client's first byte."""
PLAIN_HTTP_ANSWER = closing_response(400, "Bad Request", "The plain HTTP request was sent to HTTPS port")


class TlsListener:
    """Serves ``protocol_factory`` over TLS on a listening socket shared with the other workers."""

    __slots__ = ("_loop", "_listener", "_factory", "_context", "_first_byte_timeout", "_waiting", "_handshakes", "_closed")

    def __init__(
        self,
        listener: socket.socket,
        protocol_factory: Callable[[], asyncio.Protocol],
        context: ssl.SSLContext,
        first_byte_timeout: float,
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._listener = listener
        self._factory = protocol_factory
        self._context = context
        self._first_byte_timeout = first_byte_timeout
        self._waiting: dict[socket.socket, asyncio.TimerHandle] = {}  # accepted, first byte not yet seen
        self._handshakes: set[asyncio.Task[None]] = set()  # held here: the loop keeps only weak references to tasks
        self._closed = False
        self._loop.add_reader(listener.fileno(), self._accept)

    def close(self) -> None:
        """Stop accepting (the socket stays open for the other workers); drop connections not yet begun."""
        if self._closed:
            return
        self._closed = True
        self._loop.remove_reader(self._listener.fileno())
        for conn in list(self._waiting):
            self._drop(conn)

    def _accept(self) -> None:
        for _ in range(64):  # a few at a time, so one listener cannot hold up the loop
            try:
                conn, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return  # another worker took it, or none is left
            except OSError as exc:
                log.warning("cannot accept a connection: %s", exc.strerror or exc)
                return
            conn.setblocking(False)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._waiting[conn] = self._loop.call_later(self._first_byte_timeout, self._drop, conn)
            self._loop.add_reader(conn.fileno(), self._sniff, conn)

    def _drop(self, conn: socket.socket) -> None:
        timer = self._waiting.pop(conn, None)
        if timer is not None:
            timer.cancel()
            self._loop.remove_reader(conn.fileno())
            conn.close()

    def _sniff(self, conn: socket.socket) -> None:
        try:
            first = conn.recv(1, socket.MSG_PEEK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            first = b""
        if first == TLS_HANDSHAKE:
            self._waiting.pop(conn).cancel()
            self._loop.remove_reader(conn.fileno())
            task = self._loop.create_task(self._handshake(conn))
            self._handshakes.add(task)
            task.add_done_callback(self._handshakes.discard)
            return
        if first:
            self._answer_plain_http(conn)
        self._drop(conn)

    @staticmethod
    def _answer_plain_http(conn: socket.socket) -> None:
        """The 400, after reading what came, so the close sends a FIN, not a reset that could destroy it."""
        try:
            conn.recv(65536)
            conn.send(PLAIN_HTTP_ANSWER)
            conn.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the client is gone already

    async def _handshake(self, conn: socket.socket) -> None:
        try:
            await self._loop.connect_accepted_socket(
                self._factory, conn, ssl=self._context, ssl_handshake_timeout=self._first_byte_timeout
            )
        except (OSError, ssl.SSLError, TimeoutError) as exc:
            # A client that cannot agree on TLS (old version, unknown CA): its loss, not the worker's.
            log.debug("TLS handshake failed: %s", exc)
            conn.close()
