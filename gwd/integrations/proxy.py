"""HTTP integration: forward the request to a backend and its response to the client.

Header rules follow RFC 9110 §7.6: hop-by-hop headers, and those the
``Connection`` header names, are dropped both ways; ``X-Forwarded-For``,
``X-Forwarded-Proto``, ``X-Forwarded-Host`` and ``Via`` are added; ``Host``
is the backend's unless the route preserves the client's.  Bodies stream
both ways untouched (no decompression, no redirects followed).  A small
response with a known length is read whole and sent with its head in one
write of the backend's own header bytes; anything else streams.

Failures: a refused, reset or broken backend is ``502 Bad Gateway``; one
that does not answer within ``timeout`` is ``504``.  An idempotent request
that failed on a reused keep-alive connection before any response byte
arrived is retried once on a new connection (the backend may have closed
the idle connection just as it was reused).

A URI naming an upstream (``http://upstream:NAME/...``) sends each request
to one of its targets, as its :class:`~gwd.http.balancer.Balancer` picks;
a failed attempt of an idempotent request without a body is retried on a
target not yet tried when the upstream's ``retries`` cover the failure, its
budget has a retry left and the route's ``timeout`` has time left.  Past
the upstream's ``max_requests``, or with no target to try, the answer is
``503`` at once.
"""

from __future__ import annotations

import logging
import time
from typing import Callable
from urllib.parse import quote

from gwd.config.model import HOP_BY_HOP_HEADERS, RESERVED_BACKEND_HEADERS, HttpIntegration, RouteConfig, RouteKey, StageConfig
from gwd.config.values import parse_backend_uri, substitute_stage_variables
from gwd.http.message import BodyAborted, RequestBody, RequestBodyError, Response
from gwd.http.balancer import Balancer
from gwd.http.upstream import UpstreamConnection, UpstreamError, UpstreamPool, UpstreamResponse, connection_options
from gwd.pipeline.clientip import Networks, client_address, peer_in
from gwd.pipeline.errors import BODY_TOO_LARGE, GatewayError, body_error
from gwd.pipeline.exchange import Exchange
from gwd.pipeline.handler import Handler
from gwd.pipeline.params import split_params
from gwd.pipeline.resources import Resources
from gwd.pipeline.tracing import traceparent_line

log = logging.getLogger("gwd.proxy")

BUFFER_LIMIT = 64 * 1024
"""Responses up to this size with a known length are sent in one piece."""

TIMED_OUT = GatewayError(504, "Endpoint request timed out", response_type="INTEGRATION_TIMEOUT")
BAD_GATEWAY = GatewayError(502, "Bad Gateway", response_type="INTEGRATION_FAILURE")
NO_DESCRIPTORS = GatewayError(503, "Service Unavailable")
NO_CAPACITY = GatewayError(503, "Service Unavailable")
"""An upstream at its ``max_requests``, or with no target left to try."""

IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})

# Framing (Content-Length, Transfer-Encoding) is recomputed for each hop; the
# X-Forwarded-*, Via, X-Request-Id and traceparent values are replaced by ours.
_HOP_BY_HOP = frozenset(name.encode() for name in HOP_BY_HOP_HEADERS)
_REQUEST_REPLACED = frozenset(name.encode() for name in RESERVED_BACKEND_HEADERS)
_RESPONSE_REPLACED = _HOP_BY_HOP | {b"content-length", b"server"}

_VIA = {"1.1": b"1.1 gwd", "1.0": b"1.0 gwd"}


# RFC 3986 pchar minus "/": what a path parameter may keep unencoded.
_SEGMENT_SAFE = "!$&'()*+,;=:@-._~"


class ProxyTarget:
    """A backend URI template made ready for one (stage, route) at config load."""

    __slots__ = ("path_parts", "query", "host_header", "greedy_names", "pool_key", "upstream", "tls")

    def __init__(self, integration: HttpIntegration, key: RouteKey, stage: StageConfig) -> None:
        backend = parse_backend_uri(substitute_stage_variables(integration.uri, stage))
        self.path_parts = split_params(backend.path, key.param_names)
        self.query = backend.query
        self.host_header = _host_header(backend.scheme, backend.host, backend.port)
        self.greedy_names = frozenset(s.text for s in key.segments if s.kind == "greedy")
        self.tls = (integration.tls or stage.backend_tls) if backend.scheme == "https" else None
        self.pool_key = (backend.scheme, backend.host, backend.port, self.tls)
        self.upstream = backend.upstream  # an [[upstreams]] entry's name: the backend is one of its targets

    def request_target(self, exchange: Exchange) -> str:
        parts = self.path_parts
        if exchange.integration_path is not None:
            path = exchange.integration_path
        elif len(parts) == 1:
            path = parts[0]
        else:
            params = exchange.path_params
            path = "".join(
                quote(params[part], safe=_SEGMENT_SAFE + "/" if part in self.greedy_names else _SEGMENT_SAFE)
                if i % 2
                else part
                for i, part in enumerate(parts)
            )
        client_query = exchange.request.query
        if self.query and client_query:
            return f"{path}?{self.query}&{client_query}"
        if self.query or client_query:
            return f"{path}?{self.query or client_query}"
        return path


def _host_header(scheme: str, host: str, port: int) -> str:
    """``Host`` for a backend: its host, and its port unless the scheme's default."""
    host = f"[{host}]" if ":" in host else host
    return host if port == (443 if scheme == "https" else 80) else f"{host}:{port}"


def build(route: RouteConfig, stage: StageConfig, resources: Resources) -> Handler:
    """A handler forwarding every request of the route to its backend.

    The client's own headers named as those the route's authorizer sets are
    dropped.  A request body
    longer than ``server.max_body`` is refused with 413 (before the backend
    is contacted when its length is declared, else when the limit is
    passed, which cuts the backend's request short); one that pauses longer
    than ``server.body_timeout`` gets 408 (the request body enforces both).
    Both close the client connection.
    """
    integration = route.integration
    assert isinstance(integration, HttpIntegration)
    target = ProxyTarget(integration, route.key, stage)
    if target.upstream is not None:
        return _balanced(route, stage, target, resources.balancers[target.upstream], resources)
    pool = resources.pools.get(*target.pool_key)
    settings = _Settings(route, resources)
    host_header = target.host_header.encode()

    async def forward(exchange: Exchange) -> Response:
        method, head, body_mode = settings.head(exchange, target, host_header)
        head_only = method == "HEAD"
        sent_at = time.perf_counter()
        connection = None
        try:
            connection, response = await _attempt(exchange, pool, head, head_only, body_mode, settings.timeout, settings)
            exchange.integration_latency = int((time.perf_counter() - sent_at) * 1_000_000) / 1000
            return await _respond(exchange, connection, response, head_only)
        except UpstreamError as error:
            raise _failure(exchange, connection, error) from None
        except RequestBodyError as error:
            if connection is not None:
                connection.close()
            raise body_error(error) from None
        except BaseException:
            # The client went away (cancellation) or something broke: the backend exchange is abandoned.
            if connection is not None:
                connection.close()
            raise

    return forward


class _Settings:
    """What every request of a route sends the same way, read from its config once."""

    __slots__ = ("injected", "trusted_proxies", "max_body", "method_override", "timeout", "connect_timeout", "preserve_host")

    def __init__(self, route: RouteConfig, resources: Resources) -> None:
        integration = route.integration
        assert isinstance(integration, HttpIntegration)
        self.injected = resources.injected_header_names(route)
        self.trusted_proxies = resources.trusted_proxies
        self.max_body = resources.max_body
        self.method_override = integration.method
        self.timeout = integration.timeout
        self.connect_timeout = integration.connect_timeout
        self.preserve_host = integration.preserve_host

    def head(self, exchange: Exchange, target: ProxyTarget, host_header: bytes) -> tuple[str, bytes, str | None]:
        """The method, the request head for the backend and how the body travels; 413 for a declared body too large."""
        request = exchange.request
        method = self.method_override or request.method
        head, body_mode = _request_head(
            exchange, method, target.request_target(exchange), host_header, self.preserve_host, self.trusted_proxies, self.injected
        )
        if body_mode == "length" and (request.content_length or 0) > self.max_body:
            raise BODY_TOO_LARGE
        return method, head, body_mode


async def _attempt(
    exchange: Exchange,
    pool: UpstreamPool,
    head: bytes,
    head_only: bool,
    body_mode: str | None,
    timeout: float,
    settings: _Settings,
) -> tuple[UpstreamConnection, UpstreamResponse]:
    """Send the request to one backend and read its response head; on failure the connection is closed.

    An idempotent request without a body that failed on a reused keep-alive
    connection before any response byte is sent again on a new connection
    (the backend may have closed the idle connection just as it was reused).
    """
    method = settings.method_override or exchange.request.method
    connection = pool.take_idle()
    reused = connection is not None
    try:
        while True:
            if connection is None:
                connection = await pool.connect(settings.connect_timeout)
            try:
                connection.send_head(head, head_only, timeout)
                if body_mode:
                    await _send_body(connection, exchange.request.body, body_mode == "chunked")
                return connection, await connection.read_head()
            except UpstreamError as error:
                stale = error.kind == "reset" and reused and not connection.received_any
                if not (stale and method in IDEMPOTENT and not body_mode):
                    raise
                log.debug("request %s: retrying on a new connection after %s", exchange.request_id, error)
                connection.close()
                connection, reused = None, False
    except BaseException:
        if connection is not None:
            connection.close()
        raise


def _balanced(route: RouteConfig, stage: StageConfig, target: ProxyTarget, balancer: Balancer, resources: Resources) -> Handler:
    """A handler forwarding each request to a target of an upstream, retrying on another as its policy allows."""
    upstream = resources.upstreams[balancer.name]
    settings = _Settings(route, resources)
    integration = route.integration
    assert isinstance(integration, HttpIntegration)
    # The route's own TLS settings, else the upstream's, else the stage's default.
    tls = (integration.tls or upstream.tls or stage.backend_tls) if upstream.scheme == "https" else None
    pools = [resources.pools.get(upstream.scheme, t.host, t.port, tls) for t in upstream.targets]
    host_headers = [_host_header(upstream.scheme, t.host, t.port).encode() for t in upstream.targets]
    retries = upstream.retries
    retry_on = retries.on if retries is not None else frozenset()
    attempts = retries.attempts if retries is not None else 0
    key_of = _hash_key(upstream.hash_on, resources.trusted_proxies)

    async def forward(exchange: Exchange) -> Response:
        method = settings.method_override or exchange.request.method
        head_only = method == "HEAD"
        if not balancer.admit():
            exchange.integration_error = "overflow"
            raise NO_CAPACITY
        try:
            key = key_of(exchange) if key_of is not None else None
            retryable = bool(attempts) and method in IDEMPOTENT and not exchange.request.has_body
            tried: list[int] = []
            sent_at = time.perf_counter()
            deadline = sent_at + settings.timeout
            while True:
                index = balancer.pick(key, tried)
                if index is None:
                    exchange.integration_error = "unavailable"
                    raise NO_CAPACITY
                _, head, body_mode = settings.head(exchange, target, host_headers[index])
                balancer.started(index)
                connection = None
                try:
                    connection, response = await _attempt(
                        exchange, pools[index], head, head_only, body_mode, deadline - time.perf_counter(), settings
                    )
                except UpstreamError as error:
                    if error.kind == "descriptors":
                        balancer.abandoned(index)  # gwd's own shortage, not the target's fault
                    else:
                        balancer.failed(index)
                    if retryable and _try_again(balancer, index, _retried_for(error, retry_on), tried, attempts, deadline):
                        log.info("request %s: retrying on another target of %s after %s", exchange.request_id, balancer.name, error)
                        tried.append(index)
                        continue
                    raise _failure(exchange, None, error) from None
                except BaseException:
                    # The client went away or sent a bad body: not the target's fault.
                    balancer.abandoned(index)
                    raise
                if response.status >= 500:
                    balancer.failed(index)
                    if retryable and _try_again(balancer, index, str(response.status) in retry_on, tried, attempts, deadline):
                        connection.close()
                        tried.append(index)
                        continue
                else:
                    balancer.succeeded(index)
                exchange.integration_latency = int((time.perf_counter() - sent_at) * 1_000_000) / 1000
                try:
                    return await _respond(exchange, connection, response, head_only)
                except UpstreamError as error:
                    raise _failure(exchange, connection, error) from None
                except BaseException:
                    connection.close()
                    raise
        except RequestBodyError as error:
            raise body_error(error) from None
        finally:
            balancer.release()

    return forward


def _try_again(balancer: Balancer, index: int, covered: bool, tried: list[int], attempts: int, deadline: float) -> bool:
    """Whether a failed attempt is tried again: the policy covers it, and attempts, time and budget are left."""
    return covered and len(tried) < attempts and deadline - time.perf_counter() > 0 and balancer.may_retry(index)


def _retried_for(error: UpstreamError, retry_on: frozenset[str]) -> bool:
    """Whether a retry policy's ``on`` list covers a failed attempt."""
    if error.kind == "descriptors":
        return False  # gwd's own shortage: another target would not help
    if error.connecting and ("connect-failure" in retry_on or (error.kind == "refused" and "refused" in retry_on)):
        return True
    return error.kind in retry_on and error.kind in ("reset", "timeout")


def _hash_key(hash_on: str | None, trusted: Networks) -> Callable[[Exchange], bytes] | None:
    """What consistent_hash hashes for a request: the client's address, a header, a cookie or a path parameter."""
    if hash_on is None:
        return None
    if hash_on == "ip":
        return lambda exchange: client_address(exchange.request, trusted).encode()
    kind, _, name = hash_on.partition(":")
    if kind == "header":
        header = name.lower().encode()
        return lambda exchange: exchange.request.headers.get(header) or b""
    if kind == "cookie":
        return lambda exchange: _cookie(exchange.request.headers.getall(b"cookie"), name).encode()
    return lambda exchange: exchange.path_params.get(name, "").encode()


def _cookie(headers: list[bytes], name: str) -> str:
    """A cookie's value in the request's ``Cookie`` headers; "" without it."""
    for header in headers:
        for pair in header.decode("latin-1").split(";"):
            key, _, value = pair.strip().partition("=")
            if key == name:
                return value
    return ""


def _failure(exchange: Exchange, connection: UpstreamConnection | None, error: UpstreamError) -> GatewayError:
    """Abandon the backend exchange; the client gets 504 for a timeout, 503 when gwd is out of descriptors, else 502."""
    if connection is not None:
        connection.close()
    exchange.integration_error = error.kind
    log.warning("request %s: backend failed: %s", exchange.request_id, error)
    if error.kind == "timeout":
        return TIMED_OUT
    if error.kind == "descriptors":
        return NO_DESCRIPTORS
    return BAD_GATEWAY


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
    named: set[bytes] = set()  # header names the client's Connection header lists
    client_host = b""
    forwarded_for = b""
    forwarded_proto = b""
    via = b""
    lines = [f"{method} {target} HTTP/1.1\r\n".encode("utf-8", "surrogateescape")]
    headers = request.headers
    for lowered, (name, value) in zip(headers.names, headers.lines):
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
            continue
        if lowered in injected:
            continue
        lines.append(name + b": " + value + b"\r\n")
    if named:
        lines = [line for line in lines if line.split(b":", 1)[0].lower() not in named]
    trusted = bool(trusted_proxies) and peer_in(request, trusted_proxies)
    peer_bytes = request.remote.encode()
    if trusted and forwarded_for:
        lines.append(b"X-Forwarded-For: " + forwarded_for + b", " + peer_bytes + b"\r\n")
    else:
        lines.append(b"X-Forwarded-For: " + peer_bytes + b"\r\n")
    scheme = b"https" if request.scheme == "https" else b"http"
    lines.append(b"X-Forwarded-Proto: " + (forwarded_proto if trusted and forwarded_proto else scheme) + b"\r\n")
    if client_host:
        lines.append(b"X-Forwarded-Host: " + client_host + b"\r\n")
    lines.append(b"Host: " + (client_host if preserve_host and client_host else host_header) + b"\r\n")
    hop = _VIA[request.version]
    lines.append(b"Via: " + (via + b", " + hop if via else hop) + b"\r\n")
    lines.append(b"X-Request-Id: " + exchange.request_id.encode() + b"\r\n")
    lines.append(traceparent_line(*exchange.trace()))
    if exchange.backend_header_lines:
        lines.append(exchange.backend_header_lines)
    body_mode = None
    if request.chunked:
        lines.append(b"Transfer-Encoding: chunked\r\n")
        body_mode = "chunked"
    elif request.content_length:
        lines.append(b"Content-Length: %d\r\n" % request.content_length)
        body_mode = "length"
    elif method in ("POST", "PUT", "PATCH"):
        lines.append(b"Content-Length: 0\r\n")
    lines.append(b"\r\n")
    return b"".join(lines), body_mode


async def _send_body(connection: UpstreamConnection, body: RequestBody, chunked: bool) -> None:
    """Forward the client's body as it comes (its reads enforce ``max_body`` and ``body_timeout``)."""
    while (chunk := await body.read()) is not None:
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
    for lowered, (name, value) in zip(response.names, response.headers):
        if lowered in dropped:
            continue
        if lowered == b"date":
            dated = True
        lines.append(name + b": " + value + b"\r\n")
    return b"".join(lines), dated


async def _respond(
    exchange: Exchange, connection: UpstreamConnection, response: UpstreamResponse, head_only: bool
) -> Response:
    length = response.content_length
    lines, dated = _response_header_lines(response)
    status = response.status
    if head_only or status in (204, 304):
        connection.release()
        # No body, but the length the body would have had is the backend's to state.
        return Response.bodiless(status, lines, length if status != 204 else None, dated)
    if length is not None and length <= BUFFER_LIMIT:
        body = connection.complete_body()
        if body is None:
            parts = []
            while (chunk := await connection.read_body()) is not None:
                parts.append(chunk)
            body = b"".join(parts)
        connection.release()
        return Response(status, lines, body, dated=dated)
    return Response.streamed(status, lines, _BackendBody(exchange, connection), length, dated)


class _BackendBody:
    """A large or open-ended backend body, read as the client takes it (see :class:`gwd.http.message.BodySource`)."""

    __slots__ = ("_exchange", "_connection", "_read")

    def __init__(self, exchange: Exchange, connection: UpstreamConnection) -> None:
        self._exchange = exchange
        self._connection = connection
        self._read = 0

    async def read(self) -> bytes | None:
        try:
            chunk = await self._connection.read_body()
        except UpstreamError as error:
            # The head is already on its way: all that is left is to cut the client off.
            exchange = self._exchange
            exchange.integration_error = error.kind
            log.warning(
                "request %s: backend failed mid-body (%s) after %d bytes", exchange.request_id, error.kind, self._read
            )
            self._connection.close()
            raise BodyAborted(error.kind) from None
        if chunk is not None:
            self._read += len(chunk)
        return chunk

    def close(self, complete: bool) -> None:
        if complete:
            self._connection.release()
        else:
            self._connection.close()  # the client went away mid-body: the backend's rest is not wanted either
