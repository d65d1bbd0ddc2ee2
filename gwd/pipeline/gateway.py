"""The pipeline entry: request id, route match (custom domain, stage), CORS, the route's chain, errors, access log.

This is the one place that turns a :class:`GatewayError` or an unexpected
exception into a response, and the one place that writes the access log.
CORS preflights are answered here, before any route's stages, and every
response gets its route's ``Access-Control-*`` lines here, errors included.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import re
import time
import uuid
from typing import Awaitable, Iterator, NamedTuple

from gwd.authorizers.jwtauth import JwtVerifier
from gwd.authorizers.requestauth import RequestAuthorizerClient
from gwd.config.model import HTTP_METHODS, Address, Config, FunctionIntegration, JwtAuthorizer
from gwd.functions.runtimes import FunctionRuntimes
from gwd.http.message import ClientGone, Request, Response
from gwd.http.upstream import UpstreamPools
from gwd.mapping.binary import BinaryTypes
from gwd.pipeline.chain import build_route_handler
from gwd.pipeline.clientcert import client_certificate
from gwd.pipeline.cors import CorsPolicy, without_cors_lines
from gwd.pipeline.errors import INTERNAL_ERROR, NOT_FOUND, NOT_IMPLEMENTED, GatewayError
from gwd.pipeline.exchange import Exchange
from gwd.pipeline.gatewayresponses import GatewayResponses
from gwd.pipeline.handler import Handler
from gwd.pipeline.resources import Resources
from gwd.pipeline.routing import BasePaths, Domains, ExactPaths, Router, StageResolver, UnsafePath, split_path
from gwd.stages.apikeys import KeyCache
from gwd.stages.cache import flush_prefixes
from gwd.stages.compression import Compressor
from gwd.stores.buckets import BucketTable
from gwd.stores.cachestore import MemoryStore, RedisStore
from gwd.stores.invocations import InvocationSlots
from gwd.stores.keystore import CacheFlush
from gwd.stores.limiters import MemoryLimiter, RedisLimiter
from gwd.telemetry.accesslog import AccessLog
from gwd.telemetry.metrics import RequestMetrics, RouteCounts

log = logging.getLogger("gwd.pipeline")

_CLIENT_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
BAD_PATH = GatewayError(400, "Bad Request")
CLIENT_CLOSED_REQUEST = 499
"""The status logged and counted for a request whose client went away before any response (nginx's)."""
_SERVER = b"\r\nServer: gwd\r\n"


class RouteTarget(NamedTuple):
    """What a route key resolves to under one stage."""

    route_key: str
    param_names: tuple[str, ...]
    handler: Handler
    counts: RouteCounts | None  # its metrics; None when metrics are off
    cors: CorsPolicy | None  # the route's own, else the API's; None: no CORS


class Gateway:
    """Serves requests for one loaded config; a reload builds a new one in new workers."""

    __slots__ = (
        "_entries",
        "_pools",
        "_keys",
        "_limiter",
        "_cache_store",
        "_stage_names",
        "_authorizers",
        "_metrics",
        "_functions",
    )

    def __init__(self, config: Config, access_log: AccessLog | None, buckets: BucketTable, invocations: InvocationSlots) -> None:
        """``buckets`` is the daemon's shared throttle table (used unless Redis holds the buckets), ``invocations``
        its count of running function invocations."""
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
        functions = any(isinstance(route.integration, FunctionIntegration) for route in config.routes)
        self._functions = FunctionRuntimes(config.server.function_threads) if functions else None
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
            functions=self._functions,
            invocations=invocations if functions else None,
            binary_types=BinaryTypes(config.binary_media_types),
            compression=Compressor(config.compression) if config.compression is not None else None,
        )
        self._metrics = RequestMetrics(resources, config.metrics.per_key) if config.metrics.enabled else None
        metrics = self._metrics
        api_cors = CorsPolicy(config.cors) if config.cors is not None else None
        route_cors = [CorsPolicy(route.cors) if route.cors is not None else api_cors for route in config.routes]
        routers: dict[str, Router[RouteTarget]] = {}
        for stage in config.stages:
            targets = [
                (
                    route.key,
                    RouteTarget(
                        str(route.key),
                        route.key.param_names,
                        build_route_handler(route, stage, resources),
                        metrics.counts_for(stage.name, str(route.key)) if metrics is not None else None,
                        cors,
                    ),
                )
                for route, cors in zip(config.routes, route_cors)
            ]
            routers[stage.name] = Router(targets)
        client_certs = config.server.tls is not None and config.server.tls.client_auth != "none"
        # Request ids look like UUIDs: a random prefix per gateway (so per worker and
        # per reload) and a counter, which costs far less than uuid4()'s syscall.
        ids = (str(uuid.uuid4())[:24], itertools.count())
        gateway_responses = GatewayResponses(config)
        domains = None
        if config.domains:
            domains = Domains(
                {
                    domain.name: [(mapping.base_path, mapping.stage, routers[mapping.stage]) for mapping in domain.mappings]
                    for domain in config.domains
                }
            )
        self._entries = {
            address: Entry(
                {name: routers[name] for name in config.stages_served_on(address)},
                access_log,
                self._metrics,
                client_certs,
                ids,
                config.metrics.server_timing,
                gateway_responses,
                api_cors,
                any(cors is not None for cors in route_cors) or api_cors is not None,
                domains if address == config.server.listen else None,
                config.unmapped_hosts == "stages",
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
        if self._functions is not None:
            self._functions.close()

    def _flush_cache(self, flush: CacheFlush) -> None:
        """Drop cached responses as ``gwd cache flush`` asked."""
        assert isinstance(self._cache_store, MemoryStore)
        prefixes = flush_prefixes(self._stage_names, flush.stage, flush.route)
        dropped = sum(self._cache_store.delete_prefix(prefix) for prefix in prefixes)
        log.info("cache flush (stage %s, route %s): %d responses dropped", flush.stage or "*", flush.route or "*", dropped)

    def entry(self, address: Address) -> Entry:
        """What serves the listener on ``address`` (its stages: the private ones there, or the public ones)."""
        return self._entries[address]


class Entry:
    """One listener's way into the gateway: the stages served there, as the HTTP server's :class:`~gwd.http.server.Service`.

    A private stage (one with ``listen``) is served only on its own
    addresses; ``server.listen`` serves the other stages.  A request whose
    chain answers without waiting (a cache hit, a mock, a refusal) is
    answered at once, inside the connection's read; any other gets a task.
    """

    __slots__ = (
        "_stages",
        "_exact_paths",
        "_access_log",
        "_metrics",
        "_client_certs",
        "_ids",
        "_server_timing",
        "_errors",
        "_cors",
        "_preflights",
        "_domains",
        "_unmapped_stages",
    )

    def __init__(
        self,
        routers: dict[str, Router[RouteTarget]],
        access_log: AccessLog | None,
        metrics: RequestMetrics | None,
        client_certs: bool,
        ids: tuple[str, Iterator[int]],
        server_timing: bool,
        gateway_responses: GatewayResponses,
        cors: CorsPolicy | None,
        preflights: bool,
        domains: Domains[RouteTarget] | None,
        unmapped_stages: bool,
    ) -> None:
        self._stages = StageResolver({name: (name, router) for name, router in routers.items()})
        self._exact_paths = ExactPaths(routers)
        self._access_log = access_log
        self._metrics = metrics
        self._client_certs = client_certs  # the listener verifies client certificates
        self._ids = ids  # request ids: a prefix and a counter shared by all entries
        self._server_timing = server_timing  # responses say how long gwd and the backend took
        self._errors = gateway_responses  # how gateway errors are answered
        self._cors = cors  # the API's CORS policy, for requests no route takes
        self._preflights = preflights  # some route has a CORS policy: the gateway answers preflights
        self._domains = domains  # custom domain names (server.listen's entry only)
        self._unmapped_stages = unmapped_stages  # with domains: another Host reaches the stages by prefix

    def respond(self, request: Request) -> Response | Awaitable[Response]:
        """The request's response, or an awaitable of it; errors become their responses here."""
        exchange = self._exchange(request)
        request.context = exchange
        if self._metrics is not None:
            self._metrics.inflight += 1
        try:
            preflight = self._preflight(exchange) if self._preflights and exchange.method == "OPTIONS" else None
            target = self._route(exchange) if preflight is None else None
            if preflight is not None:
                answer = preflight
            elif target is not None:
                answer = target.handler(exchange)
            elif exchange.method in HTTP_METHODS:
                answer = self._errors.render(NOT_FOUND, exchange)
            else:
                answer = self._errors.render(NOT_IMPLEMENTED, exchange)  # a method no route takes (RFC 9110 §9.1)
        except GatewayError as error:
            answer = self._errors.render(error, exchange)
        except Exception:
            log.exception("request %s %s %s failed", exchange.request_id, request.method, request.path)
            answer = self._errors.render(INTERNAL_ERROR, exchange)
        if isinstance(answer, Response):
            return self._stamp(exchange, answer)
        return self._later(exchange, answer)

    async def _later(self, exchange: Exchange, answer: Awaitable[Response]) -> Response:
        try:
            response = await answer
        except GatewayError as error:
            response = self._errors.render(error, exchange)
        except (asyncio.CancelledError, ClientGone):
            raise  # the client went away, or the worker gave up on the request: see finished()
        except Exception:
            log.exception("request %s %s %s failed", exchange.request_id, exchange.method, exchange.raw_path)
            response = self._errors.render(INTERNAL_ERROR, exchange)
        return self._stamp(exchange, response)

    def finished(self, request: Request, response: Response | None, body_bytes: int, client_closed: bool) -> None:
        """Write the access log line and count the request, once it is over.

        No response and no client gone means the worker gave up on the
        request at the end of a drain: nothing is recorded for it.
        """
        exchange = request.context
        if not isinstance(exchange, Exchange):
            return  # the server answered it without the pipeline
        metrics = self._metrics
        if metrics is not None:
            metrics.inflight -= 1
        if response is None:
            if not client_closed:
                return
            status = CLIENT_CLOSED_REQUEST
        else:
            status = response.status
        exchange.client_closed = client_closed
        elapsed = time.perf_counter() - exchange.started_clock
        access_log = self._access_log
        if access_log is not None:
            access_log.record(exchange, status, body_bytes, exchange.started, exchange.started + elapsed)
        if metrics is not None:
            metrics.record(exchange, status, elapsed)

    def _exchange(self, request: Request) -> Exchange:
        """A new exchange for what the client sent: its request id (the client's when valid) and trace."""
        headers = request.headers
        request_id = headers.text(b"x-request-id")
        own_request_id = request_id is None or not _CLIENT_REQUEST_ID.fullmatch(request_id)
        if own_request_id:
            prefix, counter = self._ids
            request_id = f"{prefix}{next(counter) & 0xFFFFFFFFFFFF:012x}"
        assert request_id is not None
        exchange = Exchange(request, request_id, own_request_id, time.time(), time.perf_counter())
        traceparent = headers.text(b"traceparent")
        if traceparent is not None:
            exchange.continue_trace(traceparent)
        if self._client_certs and request.connection is not None:
            exchange.client_cert = client_certificate(request.connection)
        return exchange

    def _stamp(self, exchange: Exchange, response: Response) -> Response:
        """Put the headers every gwd response carries, and the stages' own, on the response."""
        lines = b"X-Request-Id: " + exchange.request_id.encode() + _SERVER + exchange.extra_header_lines
        if self._server_timing:
            lines += _server_timing(exchange, time.perf_counter() - exchange.started_clock)
        cors = exchange.cors
        if cors is not None:
            response.header_lines = without_cors_lines(response.header_lines)
            lines += cors.response_lines(exchange.request.headers.get(b"origin"))
        response.extra_lines = lines
        return response

    def _preflight(self, exchange: Exchange) -> Response | None:
        """The gateway's answer to a CORS preflight, when the route it asks about (or the API) has a policy."""
        headers = exchange.request.headers
        requested = headers.text(b"access-control-request-method")
        if requested is None or headers.get(b"origin") is None:
            return None
        stage, target, _ = self._match(requested, exchange)
        policy = target.cors if target is not None else self._cors
        if policy is None:
            return None
        exchange.stage = stage
        return policy.preflight(headers)

    def _route(self, exchange: Exchange) -> RouteTarget | None:
        """The matched route, with the exchange's stage, route key and parameters set."""
        stage, target, values = self._match(exchange.method, exchange)
        _enter(exchange, stage, target, values)
        exchange.cors = target.cors if target is not None else self._cors
        return target

    def _match(self, method: str, exchange: Exchange) -> tuple[str, RouteTarget | None, list[str] | None]:
        """The stage ("-" when none serves the path), the route matched there, and its parameters' values."""
        raw_path = exchange.raw_path
        if self._domains is not None:
            paths = self._domains.lookup(exchange.request.headers.get(b"host"))
            if paths is not None:
                return self._match_mapped(method, exchange, paths)
            if not self._unmapped_stages:
                return "-", None, None
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

    def _match_mapped(
        self, method: str, exchange: Exchange, paths: BasePaths[RouteTarget]
    ) -> tuple[str, RouteTarget | None, list[str] | None]:
        """:meth:`_match` on a custom domain: its longest matching base path picks the stage, and is removed from the path."""
        request = exchange.request
        exact = paths.match_exact(method, exchange.raw_path)
        if exact is not None:
            # The API sees its own path, as on AWS (a function event's rawPath leaves the base path out).
            stage_name, target, request.path = exact
            return stage_name, target, None
        try:
            segments = split_path(exchange.raw_path)
        except UnsafePath:
            raise BAD_PATH from None
        found = paths.resolve(segments)
        if found is None:
            return "-", None, None
        stage_name, router, segments, base_segments = found
        if base_segments:
            path = request.path
            request.path = "/" + path[1:].split("/", base_segments)[-1] if path.count("/") > base_segments else "/"
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
