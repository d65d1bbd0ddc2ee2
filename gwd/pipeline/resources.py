"""What a worker's route handlers share: backend pools, buckets, keys, settings.

Each API's routes get a copy (:func:`dataclasses.replace`) holding that
API's own plans, authorizers and settings, and the same pools, stores and
counts as every other API's.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Mapping

from gwd.config.model import JwtAuthorizer, RouteConfig, UpstreamConfig, UsagePlan
from gwd.http.balancer import Balancer
from gwd.http.upstream import UpstreamPools
from gwd.mapping.binary import BinaryTypes
from gwd.pipeline.clientip import Networks
from gwd.stores.cachestore import MemoryStore, RedisStore

if TYPE_CHECKING:
    from gwd.authorizers.jwtauth import JwtVerifier
    from gwd.authorizers.requestauth import RequestAuthorizerClient
    from gwd.functions.runtimes import FunctionRuntimes
    from gwd.integrations.function import FunctionCounts
    from gwd.stages.apikeys import KeyCache
    from gwd.stages.cache import CacheCounts
    from gwd.stages.compression import Compressor
    from gwd.stores.invocations import InvocationSlots
    from gwd.stores.limiters import MemoryLimiter, RedisLimiter


@dataclass(frozen=True, slots=True)
class Resources:
    pools: UpstreamPools
    limiter: MemoryLimiter | RedisLimiter
    trusted_proxies: Networks
    keys: KeyCache | None  # None when no route needs API keys
    usage_plans: Mapping[str, UsagePlan]
    max_body: int  # server.max_body: request body bytes forwarded at most
    body_timeout: float  # server.body_timeout: the longest pause in a request body
    # Refused requests by (API, stage, route key, reason: "client", "key", "route" or "quota"),
    # kept for the metrics endpoint.
    throttled: Counter[tuple[str, str, str, str]] = field(default_factory=Counter)
    cache_store: MemoryStore | RedisStore | None = None  # None when no route caches
    # Cache look-up results by (API, stage, route key), kept for the metrics endpoint.
    cache_results: dict[tuple[str, str, str], CacheCounts] = field(default_factory=dict)
    # The API's [[authorizers]], by name: one verifier or client per worker, shared by routes.
    authorizers: Mapping[str, JwtVerifier | RequestAuthorizerClient] = field(default_factory=dict)
    # Function integrations: the worker's imported handlers, the daemon's running-invocation counts
    # (None when no route has one), and each function's counts since the last metrics flush, by name.
    functions: FunctionRuntimes | None = None
    invocations: InvocationSlots | None = None
    function_counts: dict[str, FunctionCounts] = field(default_factory=dict)
    # The API's binary_media_types, compiled (empty: none declared).
    binary_types: BinaryTypes = field(default_factory=lambda: BinaryTypes(()))
    # The API's compression table, compiled; None when responses go as the integrations sent them.
    compression: Compressor | None = None
    # [[upstreams]] by name, and the worker's balancer of each (shared by every route and API).
    upstreams: Mapping[str, UpstreamConfig] = field(default_factory=dict)
    balancers: Mapping[str, Balancer] = field(default_factory=dict)
    # The API whose routes these serve (its name keys buckets, cache entries and counts); "" in the daemon's own.
    api: str = ""

    def authorizer_kind(self, route: RouteConfig) -> str | None:
        """What the route's authorizer is, as events and templates show it: "jwt", "request", or None."""
        if route.authorizer is None:
            return None
        return "jwt" if isinstance(self.authorizers[route.authorizer].config, JwtAuthorizer) else "request"

    def injected_header_names(self, route: RouteConfig) -> frozenset[bytes]:
        """Lower-cased names of the headers the route's authorizer sets for the backend (removed from the client's)."""
        if route.authorizer is None:
            return frozenset()
        config = self.authorizers[route.authorizer].config
        mapping = config.claim_headers if isinstance(config, JwtAuthorizer) else config.context_headers
        return frozenset(header.lower().encode() for _, header in mapping)
