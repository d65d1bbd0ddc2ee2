"""JSON access log: one line per request, AWS ``$context`` field names.

Lines are buffered and written in batches (at most ``FLUSH_INTERVAL`` late,
or at once when ``FLUSH_BYTES`` are waiting), so a request costs an append
to one buffer, not a system call.  A worker killed with SIGKILL loses at
most its last interval of lines; every graceful exit flushes.  Batches
written to a pipe or socket (stdout under journald) are cut at line
boundaries into writes of at most ``PIPE_BUF`` bytes, which the kernel
keeps whole, so lines from different workers never interleave.  Files are
opened ``O_APPEND``, which keeps each write whole as well.
"""

from __future__ import annotations

import asyncio
import logging
import os
import select
import stat
import time

import orjson

from gwd.pipeline.exchange import Exchange

FLUSH_INTERVAL = 0.2
FLUSH_BYTES = 64 * 1024

log = logging.getLogger("gwd.accesslog")

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


class AccessLog:
    """Writes access-log lines to stdout or to a file that SIGUSR1 reopens."""

    __slots__ = (
        "_target",
        "_fd",
        "_chunk_limit",
        "_pending",
        "_flush_handle",
        "_failing",
        "_fields",
    )

    def __init__(self, target: str) -> None:
        self._target = target
        self._fd = -1
        self._chunk_limit = 0
        # Lines waiting for the next write, appended in place: no object per line to keep until then.
        self._pending = bytearray()
        self._flush_handle: asyncio.TimerHandle | None = None
        self._failing = False
        # One line's fields, refilled for every line: making a dict of them per request costs more.
        self._fields: dict[str, object] = {}
        self._open()

    def _open(self) -> None:
        if self._target == "stdout":
            self._fd = 1
        else:
            self._fd = os.open(self._target, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        is_file = stat.S_ISREG(os.fstat(self._fd).st_mode)
        self._chunk_limit = 0 if is_file else select.PIPE_BUF

    def reopen(self) -> None:
        """Flush, then reopen a file target (after logrotate moved it away)."""
        self.flush()
        if self._target != "stdout":
            old = self._fd
            self._open()
            os.close(old)

    def close(self) -> None:
        self.flush()
        if self._target != "stdout":
            os.close(self._fd)

    def record(self, exchange: Exchange, status: int, response_length: int, started: float, finished: float) -> None:
        """Queue the line for one finished request (times from ``time.time()``)."""
        fields = self._fields
        fields["requestId"] = exchange.request_id
        request = exchange.request
        fields["ip"] = request.remote
        fields["requestTime"] = clf_time(started)
        fields["requestTimeEpoch"] = int(started * 1000)
        fields["httpMethod"] = exchange.method
        fields["routeKey"] = exchange.route_key
        raw_path = exchange.raw_path
        # A path without escapes is decoded already (and decoding is not free).
        fields["path"] = raw_path if "%" not in raw_path else request.decoded_path()
        fields["status"] = status
        fields["protocol"] = "HTTP/1.1" if request.version == "1.1" else "HTTP/" + request.version
        fields["responseLength"] = response_length
        # Milliseconds with microsecond resolution; cheaper than round(x, 3).
        fields["responseLatency"] = int((finished - started) * 1_000_000) / 1000
        fields["integrationLatency"] = exchange.integration_latency
        fields["integrationError"] = exchange.integration_error
        user_agent = request.headers.get(b"user-agent")
        fields["userAgent"] = user_agent.decode("utf-8", "backslashreplace") if user_agent is not None else None
        fields["api"] = exchange.api
        fields["stage"] = exchange.stage
        fields["apiKeyId"] = exchange.api_key.id if exchange.api_key is not None else None
        fields["principalId"] = exchange.principal_id
        fields["traceId"] = exchange.trace()[0]
        if exchange.client_cert is not None:
            fields["clientCert"] = exchange.client_cert.as_log()
        elif "clientCert" in fields:
            del fields["clientCert"]
        if exchange.function_name is not None:
            fields["functionName"] = exchange.function_name
        elif "functionName" in fields:
            del fields["functionName"]
        if exchange.validation_error is not None:
            fields["validationError"] = exchange.validation_error
        elif "validationError" in fields:
            del fields["validationError"]
        if exchange.client_closed:
            fields["clientClosed"] = True
        elif "clientClosed" in fields:
            del fields["clientClosed"]
        pending = self._pending
        try:
            pending += orjson.dumps(fields, option=orjson.OPT_APPEND_NEWLINE)
        except orjson.JSONEncodeError:
            # A lone surrogate (a JWT's "sub" may hold one) is no UTF-8: write it as \uXXXX rather than lose the line.
            pending += orjson.dumps(_escaped(fields), option=orjson.OPT_APPEND_NEWLINE)
        if len(pending) >= FLUSH_BYTES:
            self.flush()
        elif self._flush_handle is None:
            self._flush_handle = asyncio.get_running_loop().call_later(FLUSH_INTERVAL, self.flush)

    def flush(self) -> None:
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        if not self._pending:
            return
        lines, self._pending = self._pending, bytearray()
        try:
            for chunk in self._chunks(lines):
                _write_all(self._fd, chunk)
        except OSError as exc:
            # Serving goes on without the log; say so once, not once per batch.
            if not self._failing:
                log.error("cannot write the access log %s: %s; dropping lines until it works again", self._target, exc)
            self._failing = True
        else:
            self._failing = False

    def _chunks(self, lines: bytearray) -> list[memoryview]:
        """``lines`` as one write, or (to a pipe) as writes of whole lines of at most PIPE_BUF bytes each."""
        view = memoryview(lines)
        limit = self._chunk_limit
        if not limit:
            return [view]
        chunks: list[memoryview] = []
        start = 0
        while start < len(lines):
            end = lines.rfind(b"\n", start, start + limit) + 1
            if end <= start:  # a line longer than PIPE_BUF goes alone
                end = lines.index(b"\n", start) + 1
            chunks.append(view[start:end])
            start = end
        return chunks


def _escaped(fields: dict[str, object]) -> dict[str, object]:
    """``fields`` with every surrogate in its strings written as a ``\\uXXXX`` escape."""
    return {
        name: value.encode("utf-8", "backslashreplace").decode() if isinstance(value, str) else value
        for name, value in fields.items()
    }


class _ClfTime:
    """The Common Log Format time of the current second, formatted once a second (the access log and function events share it)."""

    __slots__ = ("_second", "_text")

    def __init__(self) -> None:
        self._second = -1
        self._text = ""

    def of(self, epoch: float) -> str:
        second = int(epoch)
        if second != self._second:
            self._second, self._text = second, format_clf_time(second)
        return self._text


clf_time = _ClfTime().of
"""``requestTime`` for a time from ``time.time()``."""


def format_clf_time(epoch_second: int) -> str:
    """``25/Nov/2026:07:50:29 +0000``, the Common Log Format time AWS logs as ``requestTime``."""
    t = time.gmtime(epoch_second)
    month = _MONTHS[t.tm_mon - 1]
    return f"{t.tm_mday:02d}/{month}/{t.tm_year}:{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} +0000"


def _write_all(fd: int, view: memoryview) -> None:
    while view:
        written = os.write(fd, view)
        view = view[written:]
