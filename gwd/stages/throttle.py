"""Throttle stage: token buckets per client, API key and route, and API-key quotas.

The buckets live where :mod:`gwd.stores.limiters` says: the daemon's
shared memory, or Redis.  The most specific bucket is checked first (the
client's, then the API key's usage plan, then the route's), the key's quota
last; a request refused by a later check gets its earlier tokens back, so a
refused request consumes nothing.  Over a limit:
``429 {"message":"Too Many Requests"}`` with ``Retry-After``; over the
quota: ``429 {"message":"Limit Exceeded"}``.  Every response of a throttled
route carries ``RateLimit-Policy`` and ``RateLimit``
(draft-ietf-httpapi-ratelimit-headers), one item per bucket: ``q`` is the
burst, ``w`` the seconds the bucket takes to refill from empty, ``r`` the
requests left now and ``t`` the seconds until it is full again.
"""

from __future__ import annotations

import math
from typing import Awaitable

from gwd.config.model import Limit, Quota, RouteConfig, StageConfig
from gwd.http.message import Response
from gwd.pipeline.clientip import client_address
from gwd.pipeline.errors import GatewayError
from gwd.pipeline.exchange import Exchange
from gwd.pipeline.handler import Handler
from gwd.pipeline.resources import Resources
from gwd.stores.limiters import LimitsUnavailable

CLIENT_KEY_CACHE = 1024
"""Client identities whose bucket keys each route's throttle keeps ready."""
CACHED_IDENTITY_LENGTH = 64
QUOTA_EXCEEDED = GatewayError(429, "Limit Exceeded", response_type="QUOTA_EXCEEDED")
UNAVAILABLE = GatewayError(503, "Service Unavailable")
REFUSALS_KEPT = 64
"""429 answers each bucket keeps ready, by their policy and ``Retry-After`` (a flood gets the same few)."""


class _Bucket:
    """One configured limit, made ready at config load."""

    __slots__ = ("name", "rate", "burst", "policy", "state_format", "_refusals")

    def __init__(self, name: str, limit: Limit) -> None:
        self.name = name
        self.rate = limit.rate
        self.burst = float(limit.burst)
        self.policy = f'"{name}";q={limit.burst};w={max(1, math.ceil(limit.burst / limit.rate))}'
        # Takes :meth:`state`'s two numbers.
        self.state_format = f'"{name}";r=%d;t=%d'
        self._refusals: dict[tuple[str, int], GatewayError] = {}

    def state(self, remaining: float) -> tuple[float, float]:
        """The requests left and the seconds until the bucket is full again."""
        # -((r - b) // rate) is ceil((b - r) / rate) without a call.
        return remaining, -((remaining - self.burst) // self.rate)

    def refusal(self, retry_after: float, policy: str) -> GatewayError:
        """The 429 for a request refused ``retry_after`` seconds before a token comes back."""
        seconds = math.ceil(retry_after)
        refusal = self._refusals.get((policy, seconds))
        if refusal is None:
            if len(self._refusals) >= REFUSALS_KEPT:
                self._refusals.clear()
            refusal = self._refusals[policy, seconds] = GatewayError(
                429,
                "Too Many Requests",
                {
                    "Retry-After": str(max(1, seconds)),
                    "RateLimit-Policy": policy,
                    "RateLimit": f'"{self.name}";r=0;t={seconds}',
                },
                response_type="THROTTLED",
            )
        return refusal


def build(route: RouteConfig, stage: StageConfig, resources: Resources, next_handler: Handler) -> Handler:
    """Wrap ``next_handler`` with the route's limits, or return it as it is when it has none."""
    route_limit = route.throttle or stage.throttle
    client_limit = route.client_throttle or stage.client_throttle
    # Usage plans limit each API key, on the routes that take keys.
    plan_buckets = {
        plan.name: _Bucket("key", plan.throttle)
        for plan in resources.usage_plans.values()
        if plan.throttle is not None and route.api_key_required
    }
    quotas = {
        plan.name: plan.quota
        for plan in resources.usage_plans.values()
        if plan.quota is not None and route.api_key_required
    }
    if route_limit is None and client_limit is None and not plan_buckets and not quotas:
        return next_handler
    keys = resources.keys
    scope = f"{resources.api}\0{stage.name}\0{route.key}".encode()
    route_bucket = _Bucket("route", route_limit) if route_limit else None
    route_key = b"route\0" + scope
    client_bucket = _Bucket("client", client_limit) if client_limit else None
    client_prefix = b"client\0" + scope + b"\0"
    source, _, source_name = client_limit.key.partition(":") if client_limit else ("ip", "", "")
    header = source_name.lower().encode("latin-1") if source == "header" else None
    claim = source_name if source == "claim" else None
    by_address = source == "ip" and not resources.trusted_proxies
    # RateLimit-Policy values, built once: without a key's plan, and for each plan.
    policy = _policy(client_bucket, route_bucket)
    plan_policies = {name: _policy(client_bucket, bucket, route_bucket) for name, bucket in plan_buckets.items()}
    limiter = resources.limiter
    throttled = resources.throttled
    route_name = str(route.key)
    trusted = resources.trusted_proxies

    asynchronous = limiter.asynchronous

    # Bucket keys by client identity: the same bytes object for a returning
    # client, so its hash is computed once.  Short identities only (an IPv6
    # address is at most 45 characters), and cleared when full, so that its
    # memory stays small whatever clients send.
    client_keys: dict[str, bytes] = {}

    def client_key(exchange: Exchange) -> bytes:
        request = exchange.request
        if by_address:
            identity = request.remote
        elif claim is not None:
            # A request without the claim (no authorizer ran, or it lacks it) is keyed by its address instead.
            value = exchange.claims.get(claim) if exchange.claims else None
            identity = str(value) if value is not None else client_address(request, trusted)
        else:
            # A request without the named header is keyed by its address instead.
            identity = (header and request.headers.text(header)) or client_address(request, trusted)
        key = client_keys.get(identity)
        if key is None:
            key = client_prefix + identity.encode("utf-8", "surrogateescape")
            if len(identity) <= CACHED_IDENTITY_LENGTH:
                if len(client_keys) >= CLIENT_KEY_CACHE:
                    client_keys.clear()
                client_keys[identity] = key
        return key

    if not plan_buckets and not quotas and (client_bucket is None or route_bucket is None):
        # One bucket, no key plan: the common case, without the lists below.
        only = client_bucket or route_bucket
        assert only is not None
        take = limiter.take
        rate, burst = only.rate, only.burst
        per_client = only is client_bucket
        lines_format = f"RateLimit-Policy: {policy}\r\nRateLimit: {only.state_format}\r\n".encode()

        if not asynchronous:

            def throttle_one(exchange: Exchange) -> Response | Awaitable[Response]:
                left = take(client_key(exchange) if per_client else route_key, rate, burst)
                if left < 0.0:
                    throttled[resources.api, stage.name, route_name, only.name] += 1
                    raise only.refusal(-left, policy)
                exchange.add_header_lines(lines_format % only.state(left))
                return next_handler(exchange)

            return throttle_one

        async def throttle_one_shared(exchange: Exchange) -> Response:
            try:
                left = await take(client_key(exchange) if per_client else route_key, rate, burst)
            except LimitsUnavailable:
                raise UNAVAILABLE from None
            if left < 0.0:
                throttled[resources.api, stage.name, route_name, only.name] += 1
                raise only.refusal(-left, policy)
            exchange.add_header_lines(lines_format % only.state(left))
            response = next_handler(exchange)
            return response if isinstance(response, Response) else await response

        return throttle_one_shared

    def checks_of(exchange: Exchange) -> tuple[list[tuple[bytes, _Bucket]], str, Quota | None]:
        """The buckets to take from, most specific first (the client, the API key's plan, the route), the policy, the quota."""
        checks: list[tuple[bytes, _Bucket]] = []
        if client_bucket is not None:
            checks.append((client_key(exchange), client_bucket))
        this_policy = policy
        api_key = exchange.api_key
        plan = api_key.plan if api_key is not None else None
        if plan in plan_buckets:
            assert api_key is not None
            checks.append((b"key\0" + api_key.id.encode(), plan_buckets[plan]))
            this_policy = plan_policies[plan]
        if route_bucket is not None:
            checks.append((route_key, route_bucket))
        return checks, this_policy, quotas.get(plan) if plan is not None else None

    def refused(reason: str, refusal: GatewayError) -> GatewayError:
        throttled[resources.api, stage.name, route_name, reason] += 1
        return refusal

    if not asynchronous:

        def throttle(exchange: Exchange) -> Response | Awaitable[Response]:
            # A later refusal gives back the tokens taken before it.
            checks, this_policy, quota = checks_of(exchange)
            taken: list[tuple[bytes, float]] = []
            states = []
            for key, bucket in checks:
                left = limiter.take(key, bucket.rate, bucket.burst)
                if left < 0.0:
                    for given, burst in taken:
                        limiter.give_back(given, burst)
                    raise refused(bucket.name, bucket.refusal(-left, this_policy))
                taken.append((key, bucket.burst))
                states.append(bucket.state_format % bucket.state(left))
            # The quota is counted last, so that a request refused by a bucket is not counted.
            if quota is not None and not keys.consume_quota(exchange.api_key, quota):
                for given, burst in taken:
                    limiter.give_back(given, burst)
                raise refused("quota", QUOTA_EXCEEDED)
            if states:
                exchange.add_header_lines(_state_lines(this_policy, states))
            return next_handler(exchange)

        return throttle

    async def throttle_shared(exchange: Exchange) -> Response:
        # As throttle() above, each call to the limiter awaited.
        checks, this_policy, quota = checks_of(exchange)
        taken: list[tuple[bytes, float]] = []
        states = []
        try:
            for key, bucket in checks:
                left = await limiter.take(key, bucket.rate, bucket.burst)
                if left < 0.0:
                    for given, burst in taken:
                        await limiter.give_back(given, burst)
                    raise refused(bucket.name, bucket.refusal(-left, this_policy))
                taken.append((key, bucket.burst))
                states.append(bucket.state_format % bucket.state(left))
            if quota is not None and not await limiter.consume_quota(exchange.api_key, quota):
                for given, burst in taken:
                    await limiter.give_back(given, burst)
                raise refused("quota", QUOTA_EXCEEDED)
        except LimitsUnavailable:
            raise UNAVAILABLE from None
        if states:
            exchange.add_header_lines(_state_lines(this_policy, states))
        response = next_handler(exchange)
        return response if isinstance(response, Response) else await response

    return throttle_shared


def _state_lines(policy: str, states: list[str]) -> bytes:
    return f"RateLimit-Policy: {policy}\r\nRateLimit: {', '.join(states)}\r\n".encode()


def _policy(*buckets: _Bucket | None) -> str:
    return ", ".join(bucket.policy for bucket in buckets if bucket is not None)
