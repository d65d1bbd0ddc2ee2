"""The pipeline entry: request id, route match, the route's chain, errors, access log.

This is the one place that turns a :class:`GatewayError` or an unexpected
exception into a response, and the one place that writes the access log.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import re
import time
import uuid
from typing import Iterator, NamedTuple

from aiohttp import web
from aiohttp.http import HttpVersion, RawRequestMessage
from multidict import CIMultiDictProxy, istr
from yarl import URL

from gwd.buckets import BucketTable
from gwd.config import Address, Config, JwtAuthorizer
from gwd.keystore import CacheFlush
from gwd.pipeline.accesslog import AccessLog
from gwd.pipeline.apikeys import KeyCache
from gwd.pipeline.cache import flush_prefixes
from gwd.pipeline.cachestore import MemoryStore, RedisStore
from gwd.pipeline.chain import build_route_handler
from gwd.pipeline.clientcert import client_certificate
from gwd.pipeline.connection import too_many_header_bytes
from gwd.pipeline.errors import INTERNAL_ERROR, NOT_FOUND, GatewayError
from gwd.pipeline.jwtauth import JwtVerifier
from gwd.pipeline.limiters import MemoryLimiter, RedisLimiter
from gwd.pipeline.metrics import RequestMetrics, RouteCounts
from gwd.pipeline.requestauth import RequestAuthorizerClient
from gwd.pipeline.exchange import Exchange
from gwd.pipeline.routing import ExactPaths, Router, StageResolver, UnsafePath, split_path
from gwd.pipeline.resources import Resources
from gwd.pipeline.passthrough import PassThroughResponse
from gwd.pipeline.types import AtOnce, Handler
from gwd.pipeline.upstream import UpstreamPools

log = logging.getLogger("gwd.pipeline")

# Header names as istr: a look-up then skips case-folding the name.
X_REQUEST_ID = istr("X-Request-Id")
TRACEPARENT = istr("traceparent")
_CLIENT_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
BAD_PATH = GatewayError(400, "Bad Request")
HEADERS_TOO_LARGE = GatewayError(431, "Request Header Fields Too Large")
CLIENT_CLOSED_REQUEST = 499
"""The status logged and counted for a request whose client went away before any response (nginx's)."""


class RouteTarget(NamedTuple):
    """What a route key resolves to under one stage."""

    route_key: str
    param_names: tuple[str, ...]
    handler: Handler
    at_once: AtOnce | None  # answers fresh cache hits before the chain (see Entry.answer_at_once)
    counts: RouteCounts | None  # its metrics; None when metrics are off


class Gateway:
    """Serves requests for one loaded config; a reload builds a new one in new workers."""

    __slots__ = (
        "_entries",
        "draining",
        "_pools",
        "_keys",
        "_limiter",
        "_cache_store",
        "_stage_names",
        "_authorizers",
        "_metrics",
    )

    def __init__(self, config: Config, access_log: AccessLog | None, buckets: BucketTable) -> None:
        """``buckets`` is the daemon's shared throttle table (used unless Redis holds the buckets)."""
        self._pools = UpstreamPools(config.server.upstream_keepalive)
        caching = any(stage.cache for stage in config.stages) or any(route.cache for route in config.routes)
        self._cache_store: MemoryStore | RedisStore | None = None
        if caching:
            backend = config.cache.backend
            self._cache_store = MemoryStore(config.cache.max_bytes) if backend == "memory" else RedisStore(backend)
        # Caching needs the key database too: key permissions, and `gwd cache flush` requests.
        needs_keys = caching or any(route.api_key_required for route in config.routes)
        self._keys = KeyCache(config.server.state_dir) if needs_keys else None
        if self._keys is not None and isinstance(self._cache_store, MemoryStore):
            # Redis entries are flushed by `gwd cache flush` itself.
            self._keys.on_cache_flush = self._flush_cache
        self._stage_names = [stage.name for stage in config.stages]
        if config.throttle.backend == "memory":
            self._limiter: MemoryLimiter | RedisLimiter = MemoryLimiter(buckets)
        else:
            self._limiter = RedisLimiter(config.throttle.backend, config.throttle.fail_open)
        self._authorizers: dict[str, JwtVerifier | RequestAuthorizerClient] = {
            authorizer.name: JwtVerifier(authorizer)
            if isinstance(authorizer, JwtAuthorizer)
            else RequestAuthorizerClient(authorizer, config.server.trusted_proxies)
            for authorizer in config.authorizers
        }
        resources = Resources(
            self._pools,
            self._limiter,
            config.server.trusted_proxies,
            self._keys,
            {plan.name: plan for plan in config.usage_plans},
            cache_store=self._cache_store,
            authorizers=self._authorizers,
            max_body=config.server.max_body,
            body_timeout=config.server.body_timeout,
        )
        self._metrics = RequestMetrics(resources, config.metrics.per_key) if config.metrics.enabled else None
        metrics = self._metrics
        routers: dict[str, Router[RouteTarget]] = {}
        answering_at_once: set[str] = set()  # stages with a route that may answer at once
        for stage in config.stages:
            targets = [
                (
                    route.key,
                    RouteTarget(
                        str(route.key),
                        route.key.param_names,
                        *build_route_handler(route, stage, resources),
                        metrics.counts_for(stage.name, str(route.key)) if metrics is not None else None,
                    ),
                )
                for route in config.routes
            ]
            routers[stage.name] = Router(targets)
            if any(target.at_once is not None for _, target in targets):
                answering_at_once.add(stage.name)
        self.draining = False  # from start_draining() on, every response says Connection: close
        client_certs = config.server.tls is not None and config.server.tls.client_auth != "none"
        # Request ids look like UUIDs: a random prefix per gateway (so per worker and
        # per reload) and a counter, which costs far less than uuid4()'s syscall.
        ids = (str(uuid.uuid4())[:24], itertools.count())
        self._entries = {
            address: Entry(
                self,
                {name: routers[name] for name in config.stages_served_on(address)},
                access_log,
                self._metrics,
                client_certs,
                ids,
                config.metrics.server_timing,
                not answering_at_once.isdisjoint(config.stages_served_on(address)),
            )
            for address in config.listen_addresses
        }

    async def close(self) -> None:
        """Close backend connections, the key database, Redis and authorizers' sessions; once no request is in flight."""
        if self._metrics is not None:
            self._metrics.close()
        self._pools.close()
        if self._keys is not None:
            self._keys.close()
        await self._limiter.close()
        if isinstance(self._cache_store, RedisStore):
            await self._cache_store.close()
        for authorizer in self._authorizers.values():
            await authorizer.close()

    def _flush_cache(self, flush: CacheFlush) -> None:
        """Drop cached responses as ``gwd cache flush`` asked."""
        assert isinstance(self._cache_store, MemoryStore)
        prefixes = flush_prefixes(self._stage_names, flush.stage, flush.route)
        dropped = sum(self._cache_store.delete_prefix(prefix) for prefix in prefixes)
        log.info("cache flush (stage %s, route %s): %d responses dropped", flush.stage or "*", flush.route or "*", dropped)

    def start_draining(self) -> None:
        """From now on every response says ``Connection: close``."""
        self.draining = True

    def entry(self, address: Address) -> Entry:
        """What serves the listener on ``address`` (its stages: the private ones there, or the public ones)."""
        return self._entries[address]

    @property
    def handle(self) -> Handler:
        """aiohttp's request handler for the main listener (``server.listen``)."""
        return next(iter(self._entries.values())).handle


class Entry:
    """One listener's way into the gateway: the stages served there, and aiohttp's request handler.

    A private stage (one with ``listen``) is served only on its own
    addresses; ``server.listen`` serves the other stages.
    """

    __slots__ = (
        "_gateway",
        "_stages",
        "_exact_paths",
        "_access_log",
        "_metrics",
        "_client_certs",
        "_ids",
        "_server_timing",
        "answers_at_once",
    )

    def __init__(
        self,
        gateway: Gateway,
        routers: dict[str, Router[RouteTarget]],
        access_log: AccessLog | None,
        metrics: RequestMetrics | None,
        client_certs: bool,
        ids: tuple[str, Iterator[int]],
        server_timing: bool,
        answers_at_once: bool,
    ) -> None:
        self._gateway = gateway  # for its draining flag
        self._stages = StageResolver({name: (name, router) for name, router in routers.items()})
        self._exact_paths = ExactPaths(routers)
        self._access_log = access_log
        self._metrics = metrics
        self._client_certs = client_certs  # the listener verifies client certificates
        self._ids = ids  # request ids: a prefix and a counter shared by all entries
        self._server_timing = server_timing  # responses say how long gwd and the backend took
        # Whether any route here may answer at once: else the connection need not ask (see answer_at_once).
        self.answers_at_once = answers_at_once

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        """aiohttp's low-level request handler."""
        started = time.time()
        started_clock = time.perf_counter()
        metrics = self._metrics
        if metrics is not None:
            metrics.inflight += 1
        try:
            url = request.rel_url
            exchange = self._exchange(
                request.method, request.headers, request.version, url, url.raw_path, request.remote, request.transport
            )
            exchange.request = request
            try:
                if too_many_header_bytes(request.raw_headers):
                    raise HEADERS_TOO_LARGE
                target = self._route(exchange)
                response = NOT_FOUND.render() if target is None else await target.handler(exchange)
            except GatewayError as error:
                response = error.render()
            except asyncio.CancelledError:
                if request.transport is not None:
                    raise  # the worker gave up on it (a drain's end): aiohttp closes the connection
                # The client went away and aiohttp cancelled the request: one line and one count still.
                exchange.client_closed = True
                status = exchange.status_sent or CLIENT_CLOSED_REQUEST
                self._record(exchange, status, exchange.response_length or 0, started, started_clock)
                raise
            except Exception:
                log.exception("request %s %s %s failed", exchange.request_id, request.method, request.path)
                response = INTERNAL_ERROR.render()
            self._finish(exchange, response, started, started_clock)
            return response
        finally:
            if metrics is not None:
                metrics.inflight -= 1

    def answer_at_once(
        self, message: RawRequestMessage, remote: str | None, transport: asyncio.Transport
    ) -> PassThroughResponse | None:
        """The response to a request that needs no waiting (a fresh hit in the worker's memory cache), or None.

        The connection asks, with the parsed request and its peer's address,
        before handing a request to aiohttp's per-request task, and sends
        what this returns itself; None means: handle it as usual.  Only
        routes whose cache is their first stage answer here (see
        :func:`gwd.pipeline.cache.answer_at_once`); what the caller sees and
        what the access log and metrics record is the same either way.
        No aiohttp request object is made for it: the exchange has what the
        parser gave.
        """
        started = time.time()
        started_clock = time.perf_counter()
        if message.path[:1] != "/":
            return None  # absolute- or asterisk-form: aiohttp rewrites those, so the chain takes them
        url = message.url
        raw_path = url.raw_path
        method = message.method
        try:
            stage, target, values = self._match(method, raw_path)
        except GatewayError:
            return None
        if target is None or target.at_once is None:
            return None
        if self._gateway.draining or too_many_header_bytes(message.raw_headers):
            return None
        exchange = self._exchange(method, message.headers, message.version, url, raw_path, remote, transport)
        _enter(exchange, stage, target, values)
        response = target.at_once(exchange)
        if response is not None:
            self._finish(exchange, response, started, started_clock)
        return response

    def _exchange(
        self,
        method: str,
        headers: CIMultiDictProxy[str],
        version: HttpVersion,
        url: URL,
        raw_path: str,
        remote: str | None,
        transport: asyncio.Transport | None,
    ) -> Exchange:
        """A new exchange for what the client sent: its request id (the client's when valid) and trace."""
        request_id = headers.get(X_REQUEST_ID)
        own_request_id = request_id is None or not _CLIENT_REQUEST_ID.fullmatch(request_id)
        if own_request_id:
            prefix, counter = self._ids
            request_id = f"{prefix}{next(counter) & 0xFFFFFFFFFFFF:012x}"
        exchange = Exchange(
            method, headers, version, url, raw_path, remote, request_id, self._gateway.draining, own_request_id
        )
        traceparent = headers.get(TRACEPARENT)
        if traceparent is not None:
            exchange.continue_trace(traceparent)
        if self._client_certs:
            exchange.client_cert = client_certificate(transport)
        return exchange

    def _finish(self, exchange: Exchange, response: web.StreamResponse, started: float, started_clock: float) -> None:
        """Stamp gwd's headers on an unsent response, then write the access log line and count the request."""
        if not response.prepared:
            if self._server_timing:
                exchange.add_header_lines(_server_timing(exchange, time.perf_counter() - started_clock))
            exchange.stamp(response)
        length = exchange.response_length
        if length is None:
            # Streamed responses set response_length; everything else is a web.Response.
            length = len(response.body or b"")
        self._record(exchange, response.status, length, started, started_clock)

    def _record(self, exchange: Exchange, status: int, length: int, started: float, started_clock: float) -> None:
        """Write the access log line and count the request."""
        elapsed = time.perf_counter() - started_clock
        access_log = self._access_log
        if access_log is not None:
            access_log.record(exchange, status, length, started, started + elapsed)
        if self._metrics is not None:
            self._metrics.record(exchange, status, elapsed)

    def _route(self, exchange: Exchange) -> RouteTarget | None:
        """The matched route, with the exchange's stage, route key and parameters set."""
        stage, target, values = self._match(exchange.method, exchange.raw_path)
        _enter(exchange, stage, target, values)
        return target

    def _match(self, method: str, raw_path: str) -> tuple[str, RouteTarget | None, list[str] | None]:
        """The stage ("-" when none serves the path), the route matched there, and its parameters' values."""
        exact = self._exact_paths.match(method, raw_path)
        if exact is not None:
            return exact[0], exact[1], None
        try:
            segments = split_path(raw_path)
        except UnsafePath:
            raise BAD_PATH from None
        found = self._stages.resolve(segments)
        if found is None:
            return "-", None, None
        (stage_name, router), segments = found
        matched = router.match(method, segments)
        if matched is None:
            return stage_name, None, None
        return stage_name, matched[0], matched[1]


def _enter(exchange: Exchange, stage: str, target: RouteTarget | None, values: list[str] | None) -> None:
    """Note on the exchange where routing took it."""
    exchange.stage = stage
    if target is not None:
        exchange.route_key = target.route_key
        exchange.route_counts = target.counts
        if values:
            exchange.path_params = dict(zip(target.param_names, values))


def _server_timing(exchange: Exchange, seconds: float) -> bytes:
    """``Server-Timing`` for the response: gwd's whole time and the backend's part, in milliseconds."""
    line = b"Server-Timing: total;dur=%.3f" % (seconds * 1000)
    if exchange.integration_latency is not None:
        line += b", integration;dur=%.3f" % exchange.integration_latency
    return line + b"\r\n"
