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
from dataclasses import replace
from typing import Any, Awaitable, Iterator, NamedTuple

from gwd.authorizers.jwtauth import JwtVerifier
from gwd.authorizers.requestauth import RequestAuthorizerClient
from gwd.config.model import (
    HTTP_METHODS,
    Address,
    ApiConfig,
    Config,
    FunctionIntegration,
    JwtAuthorizer,
    RouteConfig,
    StageConfig,
)
from gwd.functions.runtimes import FunctionRuntimes
from gwd.http.message import ClientGone, Request, Response
from gwd.http.balancer import Balancer
from gwd.http.health import HealthChecker
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
from gwd.stores.health import HealthTable
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


class ApiStage(NamedTuple):
    """Where a request is served: an API's stage ("-" when the API has none for the path), and the API's CORS policy."""

    api: str
    stage: str
    cors: CorsPolicy | None  # for requests no route of the API takes


NOWHERE = ApiStage("-", "-", None)
"""Where a request that reaches no API is."""


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
        "_health",
    )

    def __init__(
        self, config: Config, access_log: AccessLog | None, buckets: BucketTable, invocations: InvocationSlots, health: HealthTable
    ) -> None:
        """``buckets`` is the daemon's shared throttle table (used unless Redis holds the buckets), ``invocations``
        its count of running function invocations (and upstream requests), ``health`` its upstream targets' health."""
        self._pools = UpstreamPools(config.server.upstream_keepalive)
        routes = [route for api in config.apis for route in api.routes]
        caching = any(stage.cache for api in config.apis for stage in api.stages) or any(route.cache for route in routes)
        self._cache_store: MemoryStore | RedisStore | None = None
        if caching:
            backend = config.cache.backend
            self._cache_store = MemoryStore(config.cache.max_bytes) if backend == "memory" else RedisStore(backend)
        # Caching needs the key database too: key permissions, and `gwd cache flush` requests.
        needs_keys = caching or any(route.api_key_required for route in routes)
        self._keys = KeyCache(config.server.state_dir) if needs_keys else None
        if self._keys is not None and isinstance(self._cache_store, MemoryStore):
            # Redis entries are flushed by `gwd cache flush` itself.
            self._keys.on_cache_flush = self._flush_cache
        self._stage_names = {api.name: [stage.name for stage in api.stages] for api in config.apis}
        if config.throttle.backend == "memory":
            self._limiter: MemoryLimiter | RedisLimiter = MemoryLimiter(buckets)
        else:
            self._limiter = RedisLimiter(config.throttle.backend, config.throttle.fail_open)
        self._authorizers: list[JwtVerifier | RequestAuthorizerClient] = []
        functions = any(isinstance(route.integration, FunctionIntegration) for route in routes)
        self._functions = FunctionRuntimes(config.server.function_threads) if functions else None
        shared = Resources(
            self._pools,
            self._limiter,
            config.server.trusted_proxies,
            self._keys,
            {},
            cache_store=self._cache_store,
            max_body=config.server.max_body,
            body_timeout=config.server.body_timeout,
            functions=self._functions,
            invocations=invocations if functions else None,
            upstreams={upstream.name: upstream for upstream in config.upstreams},
            balancers={upstream.name: Balancer(upstream, invocations) for upstream in config.upstreams},
        )
        self._metrics = RequestMetrics(shared, config.metrics.per_key) if config.metrics.enabled else None
        self._health = HealthChecker(config.upstreams, health, dict(shared.balancers))
        stages: dict[tuple[str, str], tuple[ApiStage, Router[RouteTarget]]] = {}
        errors = {NOWHERE.api: GatewayResponses(None)}
        unmatched = {NOWHERE.api: NOWHERE}  # by API: where a path none of its stages takes is
        preflights = False
        for api in config.apis:
            resources = replace(shared, api=api.name, **self._api_resources(api, config))
            api_cors = CorsPolicy(api.cors) if api.cors is not None else None
            route_cors = [CorsPolicy(route.cors) if route.cors is not None else api_cors for route in api.routes]
            preflights = preflights or any(cors is not None for cors in route_cors) or api_cors is not None
            for stage in api.stages:
                targets = [
                    (route.key, self._target(route, stage, resources, api.name, cors))
                    for route, cors in zip(api.routes, route_cors)
                ]
                stages[api.name, stage.name] = (ApiStage(api.name, stage.name, api_cors), Router(targets))
            errors[api.name] = GatewayResponses(api)
            unmatched[api.name] = ApiStage(api.name, "-", api_cors)
        client_certs = config.server.tls is not None and config.server.tls.client_auth != "none"
        # Request ids look like UUIDs: a random prefix per gateway (so per worker and
        # per reload) and a counter, which costs far less than uuid4()'s syscall.
        ids = (str(uuid.uuid4())[:24], itertools.count())
        domains = None
        if config.domains:
            domains = Domains(
                {
                    domain.name: [(mapping.base_path, *stages[mapping.api, mapping.stage]) for mapping in domain.mappings]
                    for domain in config.domains
                }
            )
        self._entries = {}
        for address in config.listen_addresses:
            served = config.stages_served_on(address)
            if address == config.server.listen:
                default = config.default_api or NOWHERE.api
            else:
                default = served[0][0].name  # a private listener serves one API
            self._entries[address] = Entry(
                {stage.name: stages[api.name, stage.name] for api, stage in served},
                unmatched[default],
                access_log,
                self._metrics,
                client_certs,
                ids,
                config.metrics.server_timing,
                errors,
                preflights,
                domains if address == config.server.listen else None,
            )

    def _api_resources(self, api: ApiConfig, config: Config) -> dict[str, Any]:
        """What :class:`Resources` holds of one API's own: plans, authorizers (kept to close too), media types, compression."""
        authorizers = {
            authorizer.name: JwtVerifier(authorizer)
            if isinstance(authorizer, JwtAuthorizer)
            else RequestAuthorizerClient(authorizer, config.server.trusted_proxies)
            for authorizer in api.authorizers
        }
        self._authorizers += authorizers.values()
        return {
            "usage_plans": {plan.name: plan for plan in api.usage_plans},
            "authorizers": authorizers,
            "binary_types": BinaryTypes(api.binary_media_types),
            "compression": Compressor(api.compression) if api.compression is not None else None,
        }

    def _target(self, route: RouteConfig, stage: StageConfig, resources: Resources, api: str, cors: CorsPolicy | None) -> RouteTarget:
        """One route under one stage of an API, built."""
        counts = self._metrics.counts_for(api, stage.name, str(route.key)) if self._metrics is not None else None
        return RouteTarget(str(route.key), route.key.param_names, build_route_handler(route, stage, resources), counts, cors)

    def draining(self) -> None:
        """The worker stops taking connections: another worker runs the daemon's health checks from now on."""
        self._health.stop()

    async def close(self) -> None:
        """Close backend connections, the key database, Redis and authorizers' sessions; once no request is in flight."""
        self._health.stop()
        if self._metrics is not None:
            self._metrics.close()
        self._pools.close()
        if self._keys is not None:
            self._keys.close()
        await self._limiter.close()
        if isinstance(self._cache_store, RedisStore):
            await self._cache_store.close()
        for authorizer in self._authorizers:
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

    On ``server.listen``, a request whose ``Host`` is a custom domain reaches
    the API stage its base path maps to; any other reaches the default API's
    stages by path prefix.  A private stage (one with ``listen``) is served
    only on its own addresses.  A request whose chain answers without
    waiting (a cache hit, a mock, a refusal) is answered at once, inside the
    connection's read; any other gets a task.
    """

    __slots__ = (
        "_stages",
        "_exact_paths",
        "_unmatched",
        "_access_log",
        "_metrics",
        "_client_certs",
        "_ids",
        "_server_timing",
        "_errors",
        "_preflights",
        "_domains",
    )

    def __init__(
        self,
        stages: dict[str, tuple[ApiStage, Router[RouteTarget]]],
        unmatched: ApiStage,
        access_log: AccessLog | None,
        metrics: RequestMetrics | None,
        client_certs: bool,
        ids: tuple[str, Iterator[int]],
        server_timing: bool,
        gateway_responses: dict[str, GatewayResponses],
        preflights: bool,
        domains: Domains[ApiStage, RouteTarget] | None,
    ) -> None:
        self._stages = StageResolver(stages)
        self._exact_paths = ExactPaths(stages)
        self._unmatched = unmatched  # where a path no stage here takes is: the default API, or none
        self._access_log = access_log
        self._metrics = metrics
        self._client_certs = client_certs  # the listener verifies client certificates
        self._ids = ids  # request ids: a prefix and a counter shared by all entries
        self._server_timing = server_timing  # responses say how long gwd and the backend took
        self._errors = gateway_responses  # how gateway errors are answered, by API ("-": none's)
        self._preflights = preflights  # some route has a CORS policy: the gateway answers preflights
        self._domains = domains  # custom domain names (server.listen's entry only)

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
                answer = self._error(NOT_FOUND, exchange)
            else:
                answer = self._error(NOT_IMPLEMENTED, exchange)  # a method no route takes (RFC 9110 §9.1)
        except GatewayError as error:
            answer = self._error(error, exchange)
        except Exception:
            log.exception("request %s %s %s failed", exchange.request_id, request.method, request.path)
            answer = self._error(INTERNAL_ERROR, exchange)
        if isinstance(answer, Response):
            return self._stamp(exchange, answer)
        return self._later(exchange, answer)

    async def _later(self, exchange: Exchange, answer: Awaitable[Response]) -> Response:
        try:
            response = await answer
        except GatewayError as error:
            response = self._error(error, exchange)
        except (asyncio.CancelledError, ClientGone):
            raise  # the client went away, or the worker gave up on the request: see finished()
        except Exception:
            log.exception("request %s %s %s failed", exchange.request_id, exchange.method, exchange.raw_path)
            response = self._error(INTERNAL_ERROR, exchange)
        return self._stamp(exchange, response)

    def _error(self, error: GatewayError, exchange: Exchange) -> Response:
        """The response for a gateway error, as the API the request reached configures it."""
        return self._errors[exchange.api].render(error, exchange)

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
        place, target, _ = self._match(requested, exchange)
        policy = target.cors if target is not None else place.cors
        if policy is None:
            return None
        exchange.api, exchange.stage = place.api, place.stage
        return policy.preflight(headers)

    def _route(self, exchange: Exchange) -> RouteTarget | None:
        """The matched route, with the exchange's API, stage, route key and parameters set."""
        place, target, values = self._match(exchange.method, exchange)
        exchange.api, exchange.stage = place.api, place.stage
        if target is not None:
            exchange.route_key = target.route_key
            exchange.route_counts = target.counts
            if values:
                exchange.path_params = dict(zip(target.param_names, values))
            exchange.cors = target.cors
        else:
            exchange.cors = place.cors
        return target

    def _match(self, method: str, exchange: Exchange) -> tuple[ApiStage, RouteTarget | None, list[str] | None]:
        """Where the request is served, the route matched there, and its parameters' values."""
        raw_path = exchange.raw_path
        if self._domains is not None:
            paths = self._domains.lookup(exchange.request.headers.get(b"host"))
            if paths is not None:
                return self._match_mapped(method, exchange, paths)
        exact = self._exact_paths.match(method, raw_path)
        if exact is not None:
            return exact[0], exact[1], None
        try:
            segments = split_path(raw_path)
        except UnsafePath:
            raise BAD_PATH from None
        found = self._stages.resolve(segments)
        if found is None:
            return self._unmatched, None, None
        (place, router), segments = found
        matched = router.match(method, segments)
        if matched is None:
            return place, None, None
        return place, matched[0], matched[1]

    def _match_mapped(
        self, method: str, exchange: Exchange, paths: BasePaths[ApiStage, RouteTarget]
    ) -> tuple[ApiStage, RouteTarget | None, list[str] | None]:
        """:meth:`_match` on a custom domain: its longest matching base path picks the API stage, and is removed from the path."""
        request = exchange.request
        exact = paths.match_exact(method, exchange.raw_path)
        if exact is not None:
            # The API sees its own path, as on AWS (a function event's rawPath leaves the base path out).
            place, target, request.path = exact
            return place, target, None
        try:
            segments = split_path(exchange.raw_path)
        except UnsafePath:
            raise BAD_PATH from None
        found = paths.resolve(segments)
        if found is None:
            return NOWHERE, None, None
        place, router, segments, base_segments = found
        if base_segments:
            path = request.path
            request.path = "/" + path[1:].split("/", base_segments)[-1] if path.count("/") > base_segments else "/"
        matched = router.match(method, segments)
        if matched is None:
            return place, None, None
        return place, matched[0], matched[1]


def _server_timing(exchange: Exchange, seconds: float) -> bytes:
    """``Server-Timing`` for the response: gwd's whole time and the backend's part, in milliseconds."""
    line = b"Server-Timing: total;dur=%.3f" % (seconds * 1000)
    if exchange.integration_latency is not None:
        line += b", integration;dur=%.3f" % exchange.integration_latency
    return line + b"\r\n"
