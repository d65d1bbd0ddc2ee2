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
misses for one key in a worker wait for the first one's look-up and fetch
(single flight) and take its entry, instead of all going to the store and
the backend; with Redis, one process of all the daemons fetches while the
others wait for its entry (a short lock).  When Redis cannot be reached,
requests bypass the cache (a burst still costs one fetch per worker).

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
from typing import Awaitable, Mapping

from gwd.config.model import API_KEY_HEADER, CachePolicy, RouteConfig, StageConfig
from gwd.http.message import Headers, Response, date_line
from gwd.pipeline.exchange import Exchange
from gwd.pipeline.handler import Handler
from gwd.pipeline.resources import Resources
from gwd.stores.cachestore import CachedResponse, CacheUnavailable, RedisStore

_CACHEABLE_METHODS = frozenset({"GET", "HEAD"})
LOCK_LEASE = 5.0
"""With Redis: how long other daemons wait for the one fetching an entry before fetching it themselves."""
_MISS = b"X-Cache: Miss\r\n"
_BYPASS = b"X-Cache: Bypass\r\n"
_HIT = b"X-Cache: Hit\r\nAge: %d\r\n"
_MAX_AGE = re.compile(rb"(?:^|,)\s*max-age\s*=\s*\"?(\d+)")
_S_MAXAGE = re.compile(rb"(?:^|,)\s*s-maxage\s*=\s*\"?(\d+)")
_REFRESH = re.compile(rb"(?:^|,)\s*(?:max-age\s*=\s*0|no-cache)\b", re.IGNORECASE)
_UNCACHEABLE = re.compile(rb"(?:^|,)\s*(no-store|no-cache|private)\b")


def build(route: RouteConfig, stage: StageConfig, resources: Resources, next_handler: Handler) -> Handler:
    """Wrap ``next_handler`` with the route's cache policy, or return it as it is when it has none.

    With the worker's memory store, a fresh hit is answered without waiting.
    """
    policy = None if route.cache_disabled else route.cache or stage.cache
    if policy is None:
        return next_handler
    store = resources.cache_store
    assert store is not None  # the gateway makes one when any route caches
    shared = isinstance(store, RedisStore)  # its calls are coroutines
    keys = resources.keys
    counts = resources.cache_results[resources.api, stage.name, str(route.key)] = CacheCounts()
    prefix = f"{resources.api}\0{stage.name}\0{route.key}\0"
    key_headers = tuple(name.lower().encode("latin-1") for name in policy.headers)
    in_flight: dict[str, asyncio.Future[CachedResponse | None]] = {}

    def pass_on(exchange: Exchange, result: bytes) -> Response | Awaitable[Response]:
        """The next handler's answer, counted and marked as a miss or a bypass (``result`` is ``_MISS`` or ``_BYPASS``)."""
        if result is _MISS:
            counts.miss += 1
        else:
            counts.bypass += 1
        exchange.add_header_lines(result)
        return next_handler(exchange)

    def may_refresh(headers: Headers) -> bool:
        """Whether this request's ``Cache-Control: max-age=0`` refreshes the entry (the policy's invalidation)."""
        if policy.invalidation == "allow":
            return True
        if policy.invalidation == "ignore" or keys is None:
            return False
        value = headers.text(API_KEY_HEADER)
        key = keys.lookup(value) if value else None
        return key is not None and "cache-invalidate" in key.permissions

    def cached(exchange: Exchange) -> Response | Awaitable[Response]:
        if exchange.method not in _CACHEABLE_METHODS:
            return pass_on(exchange, _BYPASS)
        headers = exchange.request.headers
        cache_control = headers.get(b"cache-control")
        refresh = cache_control is not None and _REFRESH.search(cache_control) is not None and may_refresh(headers)
        # A key that may refresh the entry only authorises that: it does not make the request its own.
        key = cache_key(exchange, policy, prefix, key_headers, key_authorises_refresh=refresh)
        if key is None:
            return pass_on(exchange, _BYPASS)
        if not shared and not refresh:
            now = time.monotonic()
            entry = store.get(key, now)
            if entry is not None:
                return _hit(exchange, entry, now, counts)
        return fetch(exchange, key, refresh)

    async def fetch(exchange: Exchange, key: str, refresh: bool) -> Response:
        """The stored entry, the one another request of this worker is fetching, or the backend's response.

        The first request for a key (the leader) looks in the store and
        fetches; the ones that come while it does wait for it and get its
        entry without asking the store, so a burst costs the store one look
        per worker and the backend one fetch, even while Redis is failing.
        """
        waiting = None if refresh else in_flight.get(key)
        if waiting is not None:
            entry = await asyncio.shield(waiting)
            if entry is not None:
                return _hit(exchange, entry, time.monotonic(), counts)
            # The leader's response was not one to store: this request goes to the backend itself.
            return await through(exchange, _MISS)
        if exchange.method == "HEAD":
            # Answered from a GET's entry, never the one fetching it (a HEAD's response has no body to store).
            try:
                entry = await look_up(key) if not refresh else None
            except CacheUnavailable:
                return await through(exchange, _BYPASS)
            if entry is not None:
                return _hit(exchange, entry, time.monotonic(), counts)
            return await through(exchange, _MISS)
        leader = key not in in_flight  # a refresh may overlap a fetch already under way
        if leader:
            fetched: asyncio.Future[CachedResponse | None] = asyncio.get_running_loop().create_future()
            in_flight[key] = fetched
        for_waiters: CachedResponse | None = None
        try:
            available, locked = True, False
            if not refresh:
                try:
                    entry = await look_up(key)
                    if entry is None and shared and leader:
                        entry, locked = await fetch_lock(key)
                except CacheUnavailable:
                    entry, available = None, False
                if entry is not None:
                    for_waiters = entry
                    return _hit(exchange, entry, time.monotonic(), counts)
            response = await through(exchange, _MISS if available else _BYPASS)
            for_waiters = _storable(response, policy)
            if available:
                await store_result(key, for_waiters, refresh, locked)
            return response
        finally:
            if leader:
                del in_flight[key]
                fetched.set_result(for_waiters)

    async def look_up(key: str) -> CachedResponse | None:
        entry = store.get(key, time.monotonic())
        return await entry if shared else entry

    async def fetch_lock(key: str) -> tuple[CachedResponse | None, bool]:
        """With Redis, one process of all the daemons fetches: (the entry another one stored, whether this one holds the lock)."""
        if not await store.lock(key, LOCK_LEASE):
            return await store.wait_for(key, LOCK_LEASE), False
        # Another process may have stored it and unlocked since this one looked.
        entry = await store.get(key, time.monotonic())
        if entry is None:
            return None, True
        await store.unlock(key)
        return entry, False

    async def store_result(key: str, entry: CachedResponse | None, refresh: bool, locked: bool) -> None:
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

    async def through(exchange: Exchange, result: bytes) -> Response:
        """:func:`pass_on`, awaited."""
        response = pass_on(exchange, result)
        return response if isinstance(response, Response) else await response

    return cached


def _hit(exchange: Exchange, entry: CachedResponse, now: float, counts: CacheCounts) -> Response:
    counts.hit += 1
    exchange.add_header_lines(_HIT % (now - entry.stored_at))
    return Response(entry.status, entry.header_lines, entry.body, dated=True)


def cache_key(
    exchange: Exchange,
    policy: CachePolicy,
    prefix: str,
    key_headers: tuple[bytes, ...],
    key_authorises_refresh: bool = False,
) -> str | None:
    """The request's cache key under ``policy``, or None when it must not share cached responses.

    ``key_headers`` are the policy's header names, lower-cased bytes.  Keys
    start with ``prefix``, ``API\\0STAGE\\0ROUTE\\0``, which is what a flush drops.
    """
    request = exchange.request
    headers = request.headers
    identity = ""
    authorization = headers.get(b"authorization")
    api_key = None if key_authorises_refresh else headers.get(API_KEY_HEADER)
    if authorization is not None or api_key is not None:
        if not policy.per_identity:
            return None
        identity = hashlib.sha256(repr((authorization, api_key)).encode()).hexdigest()
    key = f"{prefix}{exchange.raw_path}\0{headers.text(b'accept-encoding') or ''}\0{identity}"
    if policy.query:
        for name in policy.query:
            key += "\0" + "&".join(sorted(request.query_values(name)))
    for name in key_headers:
        key += "\0" + b",".join(headers.getall(name)).decode("utf-8", "surrogateescape")
    return key


def flush_prefixes(stages: Mapping[str, list[str]], stage: str | None, route: str | None) -> list[str]:
    """The key prefixes (see :func:`cache_key`) of a flush of ``stage`` and ``route`` (None: all) in every API.

    ``stages``: each API's stage names.
    """
    if stage is None and route is None:
        return [""]
    return [
        f"{api}\0{name}\0" + ("" if route is None else f"{route}\0")
        for api, names in stages.items()
        for name in names
        if stage is None or name == stage
    ]


class CacheCounts:
    """What one stage's route's look-ups found, kept for the metrics endpoint."""

    __slots__ = ("hit", "miss", "bypass")

    def __init__(self) -> None:
        self.hit = 0
        self.miss = 0
        self.bypass = 0


def _storable(response: Response, policy: CachePolicy) -> CachedResponse | None:
    """What the cache keeps of ``response``, or None when it must not be kept."""
    if response.status not in policy.statuses:
        return None
    if response.stream is not None or response.content_length != len(response.body):
        return None  # streamed (too large, or of unknown length), or a head alone
    lines, dated, body = response.header_lines, response.dated, response.body
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
