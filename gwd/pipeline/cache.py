"""Response cache stage: serve GET and HEAD from the worker's store, fetch each missing entry once.

The key is built from what the route's policy names and nothing else: the
stage and route key, the request path (so its parameters), the named query
parameters (sorted, so their order does not matter), the named request
headers, and always ``Accept-Encoding``, so a gzip body is never sent to a
client that asked for plain text.  A request carrying ``Authorization`` or
``x-api-key`` is not served from nor stored into the shared entries: it
bypasses the cache, unless the policy says ``per_identity``, and then its
entries are its own (keyed by a digest of those headers).

A response is stored when its status is one the policy lists (200 by
default), it has no ``Set-Cookie``, its ``Cache-Control`` says neither
``no-store``, ``no-cache`` nor ``private``, and its body came whole (not
streamed); the backend's ``max-age``/``s-maxage`` shortens the TTL when the
policy respects it.  A HEAD is answered from the GET entry.  Concurrent
misses for one key in a worker wait for the first one's fetch (single
flight) instead of all going to the backend; with Redis, one process of all
the daemons fetches while the others wait for its entry (a short lock).
When Redis cannot be reached, requests bypass the cache.

A client's ``Cache-Control: max-age=0`` (or ``no-cache``) refreshes the
entry from the backend only when the policy's ``invalidation`` allows it:
``"allow"``, or ``"require_key"`` (the default) and an ``x-api-key`` with
the ``cache-invalidate`` permission, like AWS's "Require authorization";
otherwise it is served as any request.  ``gwd cache flush`` empties whole
stages and routes (see :meth:`Gateway._flush_cache`).

Responses say ``X-Cache: Hit`` (with ``Age``), ``Miss`` or ``Bypass``.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import time

from aiohttp import hdrs, web
from multidict import CIMultiDictProxy

from gwd.config import CachePolicy, RouteConfig, StageConfig
from gwd.pipeline.apikeys import API_KEY_HEADER
from gwd.pipeline.cachestore import CachedResponse, CacheUnavailable, MemoryStore, RedisStore
from gwd.pipeline.exchange import Exchange
from gwd.pipeline.passthrough import PassThroughResponse, date_line
from gwd.pipeline.resources import Resources
from gwd.pipeline.types import AtOnce, Handler

_CACHEABLE_METHODS = frozenset({"GET", "HEAD"})
LOCK_LEASE = 5.0
"""With Redis: how long other daemons wait for the one fetching an entry before fetching it themselves."""
_MISS = b"X-Cache: Miss\r\n"
_BYPASS = b"X-Cache: Bypass\r\n"
_HIT = b"X-Cache: Hit\r\nAge: %d\r\n"
_MAX_AGE = re.compile(rb"(?:^|,)\s*max-age\s*=\s*\"?(\d+)")
_S_MAXAGE = re.compile(rb"(?:^|,)\s*s-maxage\s*=\s*\"?(\d+)")
_REFRESH = re.compile(r"(?:^|,)\s*(?:max-age\s*=\s*0|no-cache)\b", re.IGNORECASE)
_UNCACHEABLE = re.compile(rb"(?:^|,)\s*(no-store|no-cache|private)\b")


def build(route: RouteConfig, stage: StageConfig, resources: Resources, next_handler: Handler) -> Handler:
    """Wrap ``next_handler`` with the route's cache policy, or return it as it is when it has none."""
    policy = None if route.cache_disabled else route.cache or stage.cache
    if policy is None:
        return next_handler
    store = resources.cache_store
    assert store is not None  # the gateway makes one when any route caches
    shared = isinstance(store, RedisStore)  # its calls are coroutines
    keys = resources.keys
    counts = resources.cache_results[stage.name, str(route.key)] = CacheCounts()
    prefix = f"{stage.name}\0{route.key}\0"
    in_flight: dict[str, asyncio.Future[None]] = {}

    async def bypass(exchange: Exchange) -> web.StreamResponse:
        counts.bypass += 1
        exchange.add_header_lines(_BYPASS)
        return await next_handler(exchange)

    def may_refresh(headers: CIMultiDictProxy[str]) -> bool:
        """Whether this request's ``Cache-Control: max-age=0`` refreshes the entry (the policy's invalidation)."""
        if policy.invalidation == "allow":
            return True
        if policy.invalidation == "ignore" or keys is None:
            return False
        value = headers.get(API_KEY_HEADER)
        key = keys.lookup(value) if value else None
        return key is not None and "cache-invalidate" in key.permissions

    async def cached(exchange: Exchange) -> web.StreamResponse:
        if exchange.method not in _CACHEABLE_METHODS:
            return await bypass(exchange)
        headers = exchange.headers
        cache_control = headers.get(hdrs.CACHE_CONTROL)
        refresh = cache_control is not None and _REFRESH.search(cache_control) is not None and may_refresh(headers)
        # A key that may refresh the entry only authorises that: it does not make the request its own.
        key = cache_key(exchange, policy, prefix, key_authorises_refresh=refresh)
        if key is None:
            return await bypass(exchange)
        try:
            while not refresh:
                now = time.monotonic()
                entry = store.get(key, now)
                if shared:
                    entry = await entry
                if entry is not None:
                    return _hit(exchange, entry, now, counts)
                waiting = in_flight.get(key)
                if waiting is None:
                    break
                # Another request of this worker is fetching this entry: wait for it, then
                # look again (if it was not cacheable after all, fetch for ourselves).
                await asyncio.shield(waiting)
            if exchange.method == "HEAD":
                counts.miss += 1
                exchange.add_header_lines(_MISS)
                return await next_handler(exchange)
        except CacheUnavailable:
            return await bypass(exchange)
        leader = key not in in_flight  # a refresh may overlap a fetch already under way
        if leader:
            fetched: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            in_flight[key] = fetched
        try:
            locked = False
            if shared and leader and not refresh:
                # One process of all the daemons fetches; the others wait for its entry.
                try:
                    locked = await store.lock(key, LOCK_LEASE)
                    if locked:
                        # Another process may have stored it and unlocked since this one looked.
                        entry = await store.get(key, time.monotonic())
                    else:
                        entry = await store.wait_for(key, LOCK_LEASE)
                    if entry is not None:
                        if locked:
                            await store.unlock(key)
                        return _hit(exchange, entry, time.monotonic(), counts)
                except CacheUnavailable:
                    pass
            counts.miss += 1
            exchange.add_header_lines(_MISS)
            response = await next_handler(exchange)
            entry = _storable(response, policy)
            try:
                if entry is not None:
                    stored = store.put(key, entry)
                elif refresh:
                    stored = store.delete(key)  # what is there is stale: the backend says so
                else:
                    stored = None
                if shared and stored is not None:
                    await stored
                if locked:
                    await store.unlock(key)
            except CacheUnavailable:
                pass
            return response
        finally:
            if leader:
                del in_flight[key]
                fetched.set_result(None)

    return cached


def answer_at_once(route: RouteConfig, stage: StageConfig, resources: Resources) -> AtOnce | None:
    """For a route whose cache is in the worker's memory: its fresh hits, answered without awaiting anything.

    The gateway tries it before the route's chain (see
    :meth:`gwd.pipeline.gateway.Entry.answer_at_once`), so only for a route
    with no stage before its cache.  It declines (None) whatever the chain
    must decide: a method other than GET or HEAD, a client's refresh, a
    request that must not share entries, a missing or stale entry.
    """
    store = resources.cache_store
    policy = None if route.cache_disabled else route.cache or stage.cache
    if policy is None or not isinstance(store, MemoryStore):
        return None
    counts = resources.cache_results[stage.name, str(route.key)]  # made by build()
    prefix = f"{stage.name}\0{route.key}\0"

    def fresh_hit(exchange: Exchange) -> PassThroughResponse | None:
        if exchange.method not in _CACHEABLE_METHODS:
            return None
        headers = exchange.headers
        cache_control = headers.get(hdrs.CACHE_CONTROL)
        if cache_control is not None and _REFRESH.search(cache_control) is not None:
            return None
        key = cache_key(exchange, policy, prefix)
        if key is None:
            return None
        now = time.monotonic()
        entry = store.get(key, now)
        return None if entry is None else _hit(exchange, entry, now, counts)

    return fresh_hit


def _hit(exchange: Exchange, entry: CachedResponse, now: float, counts: CacheCounts) -> PassThroughResponse:
    counts.hit += 1
    exchange.add_header_lines(_HIT % (now - entry.stored_at))
    exchange.response_length = 0 if exchange.method == "HEAD" else len(entry.body)
    return PassThroughResponse(entry.status, entry.header_lines, True, entry.body)


def cache_key(
    exchange: Exchange, policy: CachePolicy, prefix: str, key_authorises_refresh: bool = False
) -> str | None:
    """The request's cache key under ``policy``, or None when it must not share cached responses.

    Keys start with ``prefix``, ``STAGE\\0ROUTE\\0``, which is what a flush drops.
    """
    headers = exchange.headers
    identity = ""
    authorization = headers.get(hdrs.AUTHORIZATION)
    api_key = None if key_authorises_refresh else headers.get(API_KEY_HEADER)
    if authorization is not None or api_key is not None:
        if not policy.per_identity:
            return None
        identity = hashlib.sha256(repr((authorization, api_key)).encode()).hexdigest()
    key = f"{prefix}{exchange.raw_path}\0{headers.get(hdrs.ACCEPT_ENCODING, '')}\0{identity}"
    if policy.query:
        query = exchange.url.query
        for name in policy.query:
            key += "\0" + "&".join(sorted(query.getall(name, ())))
    for name in policy.headers:
        key += "\0" + ",".join(headers.getall(name, ()))
    return key


def flush_prefixes(stages: list[str], stage: str | None, route: str | None) -> list[str]:
    """The key prefixes (see :func:`cache_key`) of a flush of ``stage`` and ``route`` (None: all)."""
    if route is None:
        return [""] if stage is None else [f"{stage}\0"]
    return [f"{name}\0{route}\0" for name in ([stage] if stage is not None else stages)]


class CacheCounts:
    """What one stage's route's look-ups found, kept for the metrics endpoint."""

    __slots__ = ("hit", "miss", "bypass")

    def __init__(self) -> None:
        self.hit = 0
        self.miss = 0
        self.bypass = 0


def _storable(response: web.StreamResponse, policy: CachePolicy) -> CachedResponse | None:
    """What the cache keeps of ``response``, or None when it must not be kept."""
    if response.status not in policy.statuses:
        return None
    if isinstance(response, PassThroughResponse):
        lines, dated, body = response.backend_lines, response.dated, response.payload
    elif type(response) is web.Response and isinstance(response.body, bytes):
        # A mock integration's response.
        headers = response.headers
        lines = b"".join(f"{name}: {value}\r\n".encode("latin-1") for name, value in headers.items())
        if "Content-Type" not in headers:
            lines += b"Content-Type: application/octet-stream\r\n"  # what aiohttp sends for it
        dated, body = False, response.body
    else:
        return None  # streamed: too large, or of unknown length
    ttl = policy.ttl
    for line in lines.split(b"\r\n"):
        name, _, value = line.partition(b":")
        name = name.lower()
        if name == b"set-cookie":
            return None
        if name == b"cache-control":
            value = value.lower()
            if _UNCACHEABLE.search(value):
                return None
            if policy.respect_backend:
                # A shared cache takes s-maxage over max-age (RFC 9111 §5.2.2.10).
                found = _S_MAXAGE.search(value) or _MAX_AGE.search(value)
                if found:
                    ttl = min(ttl, float(found.group(1)))
    if ttl <= 0:
        return None
    if not dated:
        # Keep the time the response was made, as a shared cache must (RFC 9111 §4).
        lines += date_line()
    now = time.monotonic()
    return CachedResponse(response.status, lines, body, now, now + ttl)
