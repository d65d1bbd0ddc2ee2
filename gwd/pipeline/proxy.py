"""HTTP integration: forward the request to a backend and its response to the client.

Header rules follow RFC 9110 §7.6: hop-by-hop headers, and those the
``Connection`` header names, are dropped both ways; ``X-Forwarded-For``,
``X-Forwarded-Proto``, ``X-Forwarded-Host`` and ``Via`` are added; ``Host``
is the backend's unless the route preserves the client's.  Bodies stream
both ways untouched (no decompression, no redirects followed).  A small
response with a known length is read whole and sent with its head in one
write of the backend's own header bytes (:mod:`gwd.pipeline.passthrough`);
anything else streams.

Failures: a refused, reset or broken backend is ``502 Bad Gateway``; one
that does not answer within ``timeout`` is ``504``.  An idempotent request
that failed on a reused keep-alive connection before any response byte
arrived is retried once on a new connection (the backend may have closed
the idle connection just as it was reused); nothing else is retried.
"""

from __future__ import annotations

import asyncio
import logging
import time
from urllib.parse import quote

from aiohttp import web
from aiohttp.http import HttpVersion10, HttpVersion11
from multidict import CIMultiDict

from gwd.config import HttpIntegration, RouteKey, StageConfig, parse_backend_uri, substitute_stage_variables
from gwd.pipeline.clientip import Networks, in_networks
from gwd.pipeline.errors import GatewayError
from gwd.pipeline.exchange import Exchange
from gwd.pipeline.passthrough import PassThroughResponse
from gwd.pipeline.resources import Resources
from gwd.pipeline.templates import split_params
from gwd.pipeline.tracing import traceparent_line
from gwd.pipeline.types import Handler
from gwd.pipeline.upstream import (
    UpstreamConnection,
    UpstreamError,
    UpstreamResponse,
    connection_options,
)

log = logging.getLogger("gwd.proxy")

BUFFER_LIMIT = 64 * 1024
"""Responses up to this size with a known length are sent in one piece."""

IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})

# RFC 9110 §7.6.1 and the fields every proxy treats as hop-by-hop.  Framing
# (Content-Length, Transfer-Encoding) is recomputed for each hop; the
# X-Forwarded-*, Via and X-Request-Id values are replaced by ours.
_HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)
_REQUEST_REPLACED = _HOP_BY_HOP | {
    b"host",
    b"content-length",
    b"expect",
    b"x-forwarded-for",
    b"x-forwarded-proto",
    b"x-forwarded-host",
    b"x-request-id",
    b"via",
    b"traceparent",
}
_RESPONSE_REPLACED = _HOP_BY_HOP | {b"content-length", b"server"}

_VIA = {HttpVersion11: b"1.1 gwd", HttpVersion10: b"1.0 gwd"}


BODY_TOO_LARGE = GatewayError(413, "Request Entity Too Large", close=True)
BODY_TIMEOUT = GatewayError(408, "Request Timeout", close=True)
FAULTY_FRAMING = GatewayError(400, "Bad Request", close=True)

# RFC 3986 pchar minus "/": what a path parameter may keep unencoded.
_SEGMENT_SAFE = "!$&'()*+,;=:@-._~"


class ProxyTarget:
    """A backend URI template made ready for one (stage, route) at config load."""

    __slots__ = ("path_parts", "query", "host_header", "greedy_names", "pool_key")

    def __init__(self, integration: HttpIntegration, key: RouteKey, stage: StageConfig) -> None:
        backend = parse_backend_uri(substitute_stage_variables(integration.uri, stage))
        self.path_parts = split_params(backend.path, key.param_names)
        self.query = backend.query
        default_port = 443 if backend.scheme == "https" else 80
        host = f"[{backend.host}]" if ":" in backend.host else backend.host
        self.host_header = host if backend.port == default_port else f"{host}:{backend.port}"
        self.greedy_names = frozenset(s.text for s in key.segments if s.kind == "greedy")
        tls = (integration.tls or stage.backend_tls) if backend.scheme == "https" else None
        self.pool_key = (backend.scheme, backend.host, backend.port, tls)

    def request_target(self, exchange: Exchange) -> str:
        parts = self.path_parts
        if len(parts) == 1:
            path = parts[0]
        else:
            params = exchange.path_params
            path = "".join(
                quote(params[part], safe=_SEGMENT_SAFE + "/" if part in self.greedy_names else _SEGMENT_SAFE)
                if i % 2
                else part
                for i, part in enumerate(parts)
            )
        client_query = exchange.request.rel_url.raw_query_string
        if self.query and client_query:
            return f"{path}?{self.query}&{client_query}"
        if self.query or client_query:
            return f"{path}?{self.query or client_query}"
        return path


def build(
    integration: HttpIntegration, key: RouteKey, stage: StageConfig, resources: Resources, injected: frozenset[bytes]
) -> Handler:
    """A handler forwarding every request of the route to its backend.

    ``injected`` names (lower-cased) the headers the route's authorizer sets:
    the client's own headers of those names are dropped.  A request body
    longer than ``server.max_body`` is refused with 413 (before the backend
    is contacted when its length is declared, else when the limit is
    passed, which cuts the backend's request short); one that pauses longer
    than ``server.body_timeout`` gets 408.  Both close the client connection.
    """
    target = ProxyTarget(integration, key, stage)
    pool = resources.pools.get(*target.pool_key)
    trusted_proxies = resources.trusted_proxies
    max_body = resources.max_body
    body_timeout = resources.body_timeout
    method_override = integration.method
    timeout = integration.timeout
    connect_timeout = integration.connect_timeout
    preserve_host = integration.preserve_host
    host_header = target.host_header.encode()

    async def forward(exchange: Exchange) -> web.StreamResponse:
        request = exchange.request
        method = method_override or request.method
        head_only = method == "HEAD"
        head, body_mode = _request_head(
            exchange, method, target.request_target(exchange), host_header, preserve_host, trusted_proxies, injected
        )
        if body_mode == "length" and (request.content_length or 0) > max_body:
            raise BODY_TOO_LARGE
        connection = pool.take_idle()
        reused = connection is not None
        sent_at = time.perf_counter()
        try:
            while True:
                if connection is None:
                    connection = await pool.connect(connect_timeout)
                try:
                    connection.send_head(head, head_only, timeout)
                    if body_mode:
                        if request.headers.get("Expect", "").lower() == "100-continue":
                            # The client waits for this before sending its body (RFC 9110 §10.1.1).
                            await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                        await _send_body(connection, request, body_mode == "chunked", max_body, body_timeout)
                    response = await connection.read_head()
                    break
                except UpstreamError as error:
                    # The backend may have closed an idle connection just as we reused it.
                    stale = error.kind == "reset" and reused and not connection.received_any
                    if not (stale and method in IDEMPOTENT and not body_mode):
                        raise
                    log.debug("request %s: retrying on a new connection after %s", exchange.request_id, error)
                    connection.close()
                    connection, reused = None, False
            exchange.integration_latency = int((time.perf_counter() - sent_at) * 1_000_000) / 1000
            return await _respond(exchange, connection, response, head_only)
        except UpstreamError as error:
            raise _failure(exchange, connection, error) from None
        except BaseException:
            # The client went away (cancellation) or something broke: the backend exchange is abandoned.
            if connection is not None:
                connection.close()
            raise

    return forward


def _failure(exchange: Exchange, connection: UpstreamConnection | None, error: UpstreamError) -> GatewayError:
    """Abandon the backend exchange; the client gets 504 for a timeout, 503 when gwd is out of descriptors, else 502."""
    if connection is not None:
        connection.close()
    exchange.integration_error = error.kind
    log.warning("request %s: backend failed: %s", exchange.request_id, error)
    if error.kind == "timeout":
        return GatewayError(504, "Endpoint request timed out")
    if error.kind == "descriptors":
        return GatewayError(503, "Service Unavailable")
    return GatewayError(502, "Bad Gateway")


def _request_head(
    exchange: Exchange,
    method: str,
    target: str,
    host_header: bytes,
    preserve_host: bool,
    trusted_proxies: Networks,
    injected: frozenset[bytes],
) -> tuple[bytes, str | None]:
    """The request line and headers for the backend, and how the body travels (None, "length", "chunked")."""
    request = exchange.request
    raw_headers = request.raw_headers
    named: set[bytes] = set()  # header names the client's Connection header lists
    client_host = b""
    forwarded_for = b""
    forwarded_proto = b""
    via = b""
    content_length = b""
    chunked = False
    lines = [f"{method} {target} HTTP/1.1\r\n".encode("latin-1")]
    for name, value in raw_headers:
        lowered = name.lower()
        if lowered in _REQUEST_REPLACED:
            if lowered == b"connection":
                named.update(connection_options(value))
            elif lowered == b"host":
                client_host = value
            elif lowered == b"x-forwarded-for":
                forwarded_for = forwarded_for + b", " + value if forwarded_for else value
            elif lowered == b"x-forwarded-proto":
                forwarded_proto = value
            elif lowered == b"via":
                via = via + b", " + value if via else value
            elif lowered == b"content-length":
                content_length = value
            elif lowered == b"transfer-encoding":
                chunked = True
            continue
        if lowered in injected:
            continue
        lines.append(name + b": " + value + b"\r\n")
    if named:
        lines = [line for line in lines if line.split(b":", 1)[0].lower() not in named]
    peer = request.remote or ""
    trusted = bool(trusted_proxies) and in_networks(peer, trusted_proxies)
    peer_bytes = peer.encode()
    if trusted and forwarded_for:
        lines.append(b"X-Forwarded-For: " + forwarded_for + b", " + peer_bytes + b"\r\n")
    else:
        lines.append(b"X-Forwarded-For: " + peer_bytes + b"\r\n")
    scheme = b"https" if request.scheme == "https" else b"http"
    lines.append(b"X-Forwarded-Proto: " + (forwarded_proto if trusted and forwarded_proto else scheme) + b"\r\n")
    if client_host:
        lines.append(b"X-Forwarded-Host: " + client_host + b"\r\n")
    lines.append(b"Host: " + (client_host if preserve_host and client_host else host_header) + b"\r\n")
    hop = _VIA.get(request.version) or b"%d.%d gwd" % request.version
    lines.append(b"Via: " + (via + b", " + hop if via else hop) + b"\r\n")
    lines.append(b"X-Request-Id: " + exchange.request_id.encode() + b"\r\n")
    lines.append(traceparent_line(*exchange.trace()))
    if exchange.backend_header_lines:
        lines.append(exchange.backend_header_lines)
    body_mode = None
    if chunked and request.version == HttpVersion10:
        # HTTP/1.0 has no transfer codings: its framing is faulty (RFC 9112 §6.1).
        raise FAULTY_FRAMING
    if chunked:
        lines.append(b"Transfer-Encoding: chunked\r\n")
        body_mode = "chunked"
    elif content_length and content_length != b"0":
        lines.append(b"Content-Length: " + content_length + b"\r\n")
        body_mode = "length"
    elif method in ("POST", "PUT", "PATCH"):
        lines.append(b"Content-Length: 0\r\n")
    lines.append(b"\r\n")
    return b"".join(lines), body_mode


async def _send_body(
    connection: UpstreamConnection, request: web.BaseRequest, chunked: bool, max_body: int, body_timeout: float
) -> None:
    content = request.content
    sent = 0
    while True:
        try:
            async with asyncio.timeout(body_timeout):
                chunk = await content.readany()
        except TimeoutError:
            raise BODY_TIMEOUT from None
        if not chunk:
            break
        sent += len(chunk)
        if sent > max_body:
            raise BODY_TOO_LARGE
        if chunked:
            await connection.send_body(b"%x\r\n%b\r\n" % (len(chunk), chunk))
        else:
            await connection.send_body(chunk)
    if chunked:
        await connection.send_body(b"0\r\n\r\n")


def _dropped_response_headers(response: UpstreamResponse) -> frozenset[bytes]:
    """Lower-cased names not passed on: hop-by-hop ones, those the backend's ``Connection`` names, and ours."""
    return _RESPONSE_REPLACED | response.connection_tokens if response.connection_tokens else _RESPONSE_REPLACED


def _response_header_lines(response: UpstreamResponse) -> tuple[bytes, bool]:
    """The backend's header lines that are passed on, as bytes, and whether they hold a ``Date``."""
    dropped = _dropped_response_headers(response)
    dated = False
    lines = []
    for name, value in response.headers:
        lowered = name.lower()
        if lowered in dropped:
            continue
        if lowered == b"date":
            dated = True
        lines.append(name + b": " + value + b"\r\n")
    return b"".join(lines), dated


def _response_headers(response: UpstreamResponse) -> CIMultiDict[str]:
    """The backend's headers that are passed on, for an aiohttp response (streamed, or without a body)."""
    lines = _response_header_lines(response)[0].decode("latin-1").split("\r\n")
    return CIMultiDict(line.split(": ", 1) for line in lines if line)  # type: ignore[misc]


async def _respond(
    exchange: Exchange, connection: UpstreamConnection, response: UpstreamResponse, head_only: bool
) -> web.StreamResponse:
    length = response.content_length
    if head_only or response.status in (204, 304):
        headers = _response_headers(response)
        # No body, but the length the body would have had is the backend's to state.
        if length is not None and response.status != 204:
            headers["Content-Length"] = str(length)
        connection.release()
        exchange.response_length = 0
        return web.Response(status=response.status, headers=headers)
    if length is not None and length <= BUFFER_LIMIT:
        body = connection.complete_body()
        if body is None:
            parts = []
            while (chunk := await connection.read_body()) is not None:
                parts.append(chunk)
            body = b"".join(parts)
        connection.release()
        exchange.response_length = len(body)
        return PassThroughResponse(response.status, *_response_header_lines(response), body)
    return await _stream(exchange, connection, response.status, _response_headers(response), length)


async def _stream(
    exchange: Exchange, connection: UpstreamConnection, status: int, headers: CIMultiDict[str], length: int | None
) -> web.StreamResponse:
    reply = web.StreamResponse(status=status, headers=headers)
    if length is not None:
        reply.content_length = length
    exchange.stamp(reply)
    await reply.prepare(exchange.request)
    exchange.status_sent = status
    # Counted as it goes: a client that goes away may cancel this anywhere.
    exchange.response_length = 0
    try:
        while (chunk := await connection.read_body()) is not None:
            await reply.write(chunk)
            exchange.response_length += len(chunk)
        await reply.write_eof()
    except UpstreamError as error:
        # The head is already on its way: all that is left is to cut the client off.
        kind = error.kind
        exchange.integration_error = kind
        log.warning(
            "request %s: backend failed mid-body (%s) after %d bytes", exchange.request_id, kind, exchange.response_length
        )
        connection.close()
        transport = exchange.request.transport
        if transport is not None:
            transport.abort()
        return reply
    except ConnectionError:
        # The client went away mid-body: the backend's rest is not wanted either.
        exchange.client_closed = True
        connection.close()
        return reply
    connection.release()
    return reply
