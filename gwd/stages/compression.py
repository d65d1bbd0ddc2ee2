"""Response compression stage: gzip or Brotli by the client's ``Accept-Encoding``, as AWS's ``minimumCompressionSize``.

The outermost stage, so every answer of a route passes it: a backend's,
a mock's, a function's, and a cache hit (entries are stored as the
integration sent them, so one entry serves clients asking for any
encoding).  A response is compressed when the API's ``compression`` table
is set, its body is at least ``min_size`` bytes (a streamed body of
unknown length always is), its ``Content-Type`` is one of ``types``, it
carries no ``Content-Encoding`` (a body is never decompressed to be
compressed again), no ``Content-Range`` and no ``Cache-Control:
no-transform``, and the request is not HEAD.  Such a response says
``Vary: Accept-Encoding`` whether or not this client asked for an
encoding; a strong ``ETag`` becomes weak once the body is compressed.

The encoding is the one of ``encodings`` the client gives the highest
q-value (``*`` names every other one; ties go to the config's order).
A streamed body is compressed chunk by chunk, each flushed as it goes,
so a stream (server-sent events) reaches the client as it is produced.
"""

from __future__ import annotations

import zlib
from typing import Awaitable, Callable

import brotli

from gwd.config.model import CompressionConfig, RouteConfig, StageConfig
from gwd.http.message import BodySource, Response
from gwd.pipeline.exchange import Exchange
from gwd.pipeline.handler import Handler
from gwd.pipeline.resources import Resources

_UNCHANGED = frozenset({b"content-encoding", b"content-range"})
_KNOWN_ACCEPT_ENCODINGS = 256
"""Distinct ``Accept-Encoding`` values whose choice is remembered (browsers send a handful)."""


def build(route: RouteConfig, stage: StageConfig, resources: Resources, next_handler: Handler) -> Handler:
    compressor = resources.compression
    if compressor is None:
        return next_handler

    def compress(exchange: Exchange) -> Response | Awaitable[Response]:
        answer = next_handler(exchange)
        if isinstance(answer, Response):
            return compressor.apply(exchange, answer)
        return _compress_later(compressor, exchange, answer)

    return compress


async def _compress_later(compressor: Compressor, exchange: Exchange, answer: Awaitable[Response]) -> Response:
    return compressor.apply(exchange, await answer)


class Compressor:
    """One API's ``compression`` table, compiled at config load."""

    __slots__ = ("_min_size", "_encodings", "_types", "_gzip_level", "_br_quality", "_choices")

    def __init__(self, config: CompressionConfig) -> None:
        self._min_size = config.min_size
        self._encodings = config.encodings
        self._types = MediaTypes(config.types)
        self._gzip_level = config.gzip_level
        self._br_quality = config.br_quality
        self._choices: dict[bytes, str | None] = {}

    def apply(self, exchange: Exchange, response: Response) -> Response:
        """``response``, compressed if it and the request qualify; with ``Vary: Accept-Encoding`` if it could have been."""
        if response.stream is None:
            if len(response.body) < self._min_size or not response.body:
                return response
        elif response.content_length is not None and response.content_length < self._min_size:
            return response
        if exchange.method == "HEAD" or response.status < 200 or response.status in (204, 304):
            return response
        content_type = None
        vary = b"Vary: Accept-Encoding\r\n"
        for line in response.header_lines.split(b"\r\n"):
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name in _UNCHANGED:
                return response
            if name == b"content-type":
                content_type = value.strip()
            elif name == b"cache-control" and b"no-transform" in value.lower():
                return response
            elif name == b"vary" and b"accept-encoding" in value.lower():
                vary = b""  # the integration said so already
        if content_type is None or not self._types.matches(content_type):
            return response
        encoding = self.choose(exchange.request.headers.get(b"accept-encoding"))
        if encoding is None:
            response.header_lines += vary
            return response
        response.header_lines = _weak_etag(response.header_lines) + b"Content-Encoding: %s\r\n%s" % (encoding.encode(), vary)
        if response.stream is None:
            response.body = self._whole(encoding, response.body)
            response.content_length = len(response.body)
        else:
            response.stream = CompressedSource(response.stream, self._chunker(encoding))
            response.content_length = None
        return response

    def choose(self, accept_encoding: bytes | None) -> str | None:
        """The encoding to answer in, by the client's ``Accept-Encoding``; None: send the body as it is."""
        if not accept_encoding:
            return None
        choices = self._choices
        try:
            return choices[accept_encoding]
        except KeyError:
            pass
        choice = _preferred(self._encodings, accept_encoding)
        if len(choices) >= _KNOWN_ACCEPT_ENCODINGS:
            choices.clear()
        choices[accept_encoding] = choice
        return choice

    def _whole(self, encoding: str, body: bytes) -> bytes:
        if encoding == "br":
            return brotli.compress(body, quality=self._br_quality)
        packer = zlib.compressobj(self._gzip_level, zlib.DEFLATED, 31)
        return packer.compress(body) + packer.flush()

    def _chunker(self, encoding: str) -> Callable[[bytes | None], bytes]:
        """A function compressing one chunk after another (flushed each time); None ends the stream."""
        if encoding == "br":
            packer = brotli.Compressor(quality=self._br_quality)
            return lambda chunk: packer.finish() if chunk is None else packer.process(chunk) + packer.flush()
        deflater = zlib.compressobj(self._gzip_level, zlib.DEFLATED, 31)
        return lambda chunk: deflater.flush() if chunk is None else deflater.compress(chunk) + deflater.flush(zlib.Z_SYNC_FLUSH)


def _preferred(encodings: tuple[str, ...], accept_encoding: bytes) -> str | None:
    """The one of ``encodings`` with the highest q-value in ``accept_encoding`` (RFC 9110 §12.5.3), first on ties."""
    weights: dict[str, float] = {}
    for item in accept_encoding.decode("latin-1").lower().split(","):
        coding, *params = item.split(";")
        weight = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip() == "q":
                try:
                    weight = float(value)
                except ValueError:
                    weight = 0.0
        coding = coding.strip()
        if coding:
            weights[coding] = weight
    best, best_weight = None, 0.0
    for encoding in encodings:
        weight = weights.get(encoding, weights.get("*", 0.0))
        if weight > best_weight:
            best, best_weight = encoding, weight
    return best


def _weak_etag(header_lines: bytes) -> bytes:
    """``header_lines`` with a strong ``ETag`` made weak: the compressed body is not the same bytes."""
    start = (b"\r\n" + header_lines.lower()).find(b"\r\netag:")  # where the line starts in header_lines
    if start < 0:
        return header_lines
    value_at = start + 5
    while header_lines[value_at : value_at + 1] == b" ":
        value_at += 1
    if header_lines.startswith(b"W/", value_at):
        return header_lines
    return header_lines[:value_at] + b"W/" + header_lines[value_at:]


class CompressedSource:
    """A streamed body, compressed as it is read."""

    __slots__ = ("_source", "_chunker", "_ended")

    def __init__(self, source: BodySource, chunker: Callable[[bytes | None], bytes]) -> None:
        self._source = source
        self._chunker = chunker
        self._ended = False

    async def read(self) -> bytes | None:
        while not self._ended:
            chunk = await self._source.read()
            if chunk is None:
                self._ended = True
                return self._chunker(None) or None
            packed = self._chunker(chunk)
            if packed:
                return packed
        return None

    def close(self, complete: bool) -> None:
        self._source.close(complete)


class MediaTypes:
    """Media type patterns: ``text/html``, ``text/*``, ``application/*+json``; ``matches(content_type)``."""

    __slots__ = ("_exact", "_families", "_suffixes")

    def __init__(self, patterns: tuple[str, ...]) -> None:
        lowered = [pattern.strip().lower() for pattern in patterns]
        self._exact = frozenset(pattern for pattern in lowered if "*" not in pattern)
        self._families = frozenset(pattern[:-2] for pattern in lowered if pattern.endswith("/*"))
        self._suffixes = frozenset(
            (pattern.partition("/")[0], pattern.partition("/*")[2]) for pattern in lowered if "/*+" in pattern
        )

    def matches(self, content_type: bytes) -> bool:
        """Whether a body of this ``Content-Type`` (parameters allowed) is one of the patterns."""
        media = content_type.partition(b";")[0].strip().lower().decode("latin-1")
        family, _, subtype = media.partition("/")
        if media in self._exact or family in self._families:
            return True
        plus = subtype.rfind("+")
        return plus >= 0 and (family, subtype[plus:]) in self._suffixes
