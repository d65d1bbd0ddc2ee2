"""Where the throttle stage's token buckets live: this daemon's shared memory, or Redis.

Both answer the same two calls, ``take`` (the tokens left, or minus the
seconds until a token is back when none is left) and ``give_back``: the
memory backend at once, the Redis backend as coroutines (its
``asynchronous`` is True), so the memory path, the common one, costs no
coroutine per check.  The memory backend is the daemon's
:class:`~gwd.stores.buckets.BucketTable`: one limit across its workers.  The Redis
backend makes a limit one limit across every daemon using the same Redis:
each check is one round trip running an atomic Lua script, with Redis's
clock, and buckets expire once they would be full again, so Redis holds only
active clients.  With Redis, API-key quotas are counted there too (one limit
for all daemons); with memory, in the state directory's SQLite.  When Redis
cannot be reached, ``fail_open`` decides: serve (and log) or raise
:class:`LimitsUnavailable` (the throttle stage answers 503); see
:mod:`gwd.stores.outage` for when Redis is tried again.
"""

from __future__ import annotations

import logging

import redis.asyncio
import redis.exceptions

from gwd.config.model import Quota
from gwd.stores.buckets import BucketTable
from gwd.stores.keystore import ApiKey, period_start, utc_today
from gwd.stores.outage import TIMEOUT, RedisOutage

log = logging.getLogger("gwd.throttle")

_TAKE = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'updated')
local tokens = tonumber(state[1])
local updated = tonumber(state[2])
if tokens == nil then
    tokens = burst
    updated = now
end
tokens = math.min(burst, tokens + math.max(0, now - updated) * rate)
local allowed = 0
if tokens >= 1 then
    tokens = tokens - 1
    allowed = 1
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'updated', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens) / rate * 1000) + 1000)
return {allowed, tostring(tokens)}
"""

_COUNT = """
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
if used >= tonumber(ARGV[1]) then
    return 0
end
redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('HINCRBY', KEYS[2], ARGV[2], 1)
return 1
"""

# A period's counter outlives the period by a day, then Redis drops it.
_PERIOD_SECONDS = {"day": 2 * 86400, "week": 8 * 86400, "month": 32 * 86400}

_GIVE_BACK = """
local tokens = tonumber(redis.call('HGET', KEYS[1], 'tokens'))
if tokens ~= nil then
    redis.call('HSET', KEYS[1], 'tokens', tostring(math.min(tonumber(ARGV[1]), tokens + 1)))
end
return 0
"""


def usage_key(key_id: str) -> str:
    """The Redis hash of a key's per-day request counts."""
    return f"gwd:usage:{key_id}"


LEASE_SHARE = 100
"""A worker takes at most 1/LEASE_SHARE of a bucket's burst from the shared table at once."""
MAX_LEASES = 4096
"""Buckets a worker holds leased tokens of; all are dropped when it holds this many."""


class _Lease:
    """Tokens one worker took from a shared bucket ahead of the requests that use them."""

    __slots__ = ("tokens", "shared_left")

    def __init__(self, tokens: int, shared_left: float) -> None:
        self.tokens = tokens
        # What the shared bucket had left when these were taken (for RateLimit's "r").
        self.shared_left = shared_left


class LimitsUnavailable(Exception):
    """Redis cannot be reached and the limits do not fail open."""


class MemoryLimiter:
    """Buckets in the daemon's shared memory, taken from a lease at a time for large bursts.

    A bucket whose burst is under ``2 * LEASE_SHARE`` is checked in the
    shared table on every request: exact.  A larger one is taken from up to
    ``burst // LEASE_SHARE`` tokens at a time; the worker keeps the rest for
    its next requests on that key.  Every admitted request still holds a
    token taken from the one shared bucket, so the daemon never admits more
    than the bucket gives out; the cost is that tokens one worker holds are
    not available to the others, at most ``burst / LEASE_SHARE`` per worker
    and key (1% of the burst), and that a worker's RateLimit ``r`` is its
    own view.  A never-triggering limit then costs a shared-table check per
    hundred or more requests instead of one per request.
    """

    __slots__ = ("_table", "_leases")

    asynchronous = False

    def __init__(self, table: BucketTable) -> None:
        self._table = table
        self._leases: dict[bytes, _Lease] = {}

    def take(self, key: bytes, rate: float, burst: float) -> float:
        """The tokens left (>= 0) when the request may pass, else minus the seconds until a token is back."""
        lease = self._leases.get(key)
        if lease is not None and lease.tokens:
            lease.tokens -= 1
            return lease.shared_left + lease.tokens
        taken, left = self._table.take(key, rate, burst, max(1, int(burst) // LEASE_SHARE))
        if not taken:
            return -left
        if taken > 1:
            if lease is None:
                if len(self._leases) >= MAX_LEASES:
                    self._leases.clear()
                self._leases[key] = _Lease(taken - 1, left)
            else:
                lease.tokens, lease.shared_left = taken - 1, left
        return left + taken - 1

    def give_back(self, key: bytes, burst: float) -> None:
        """Return a token that a later check made unused: to this worker's lease if it has one."""
        lease = self._leases.get(key)
        if lease is not None:
            lease.tokens += 1
        else:
            self._table.give_back(key, burst)

    async def close(self) -> None:
        pass


class RedisLimiter:
    """Buckets in Redis, shared by every daemon that points at it."""

    __slots__ = ("_url", "_client", "_take", "_give_back", "_count", "_fail_open", "_outage")

    asynchronous = True

    def __init__(self, url: str, fail_open: bool) -> None:
        self._url = url
        self._client = redis.asyncio.Redis.from_url(
            url, socket_timeout=TIMEOUT, socket_connect_timeout=TIMEOUT, retry_on_timeout=False
        )
        self._take = self._client.register_script(_TAKE)
        self._give_back = self._client.register_script(_GIVE_BACK)
        self._count = self._client.register_script(_COUNT)
        self._fail_open = fail_open
        while_down = "serving without limits" if fail_open else "answering 503"
        self._outage = RedisOutage(log, f"Redis at {url}", while_down, "; limits are shared again")

    async def take(self, key: bytes, rate: float, burst: float) -> float:
        if self._outage.ongoing():
            self._refuse_unless_fail_open()
            return burst
        try:
            allowed, tokens = await self._take(keys=[b"gwd:" + key], args=[rate, burst])
        except (redis.exceptions.RedisError, OSError) as exc:
            self._outage.failed(exc)
            self._refuse_unless_fail_open()
            return burst
        self._outage.answered()
        if allowed:
            return float(tokens)
        return (float(tokens) - 1.0) / rate

    async def give_back(self, key: bytes, burst: float) -> None:
        try:
            await self._give_back(keys=[b"gwd:" + key], args=[burst])
        except (redis.exceptions.RedisError, OSError) as exc:
            self._outage.failed(exc)

    async def consume_quota(self, key: ApiKey, quota: Quota) -> bool:
        """Count one request of ``key`` unless its quota period is used up; shared through Redis.

        Each key also has a per-day count, ``gwd:usage:KEY_ID`` (a hash of
        ISO day -> requests), which ``gwd usage`` reads.
        """
        if self._outage.ongoing():
            self._refuse_unless_fail_open()
            return True
        today = utc_today()
        start = period_start(quota.period, today)
        counter = f"gwd:quota:{key.id}:{quota.period}:{start.isoformat()}"
        try:
            allowed = await self._count(
                keys=[counter, usage_key(key.id)], args=[quota.limit, today.isoformat(), _PERIOD_SECONDS[quota.period]]
            )
        except (redis.exceptions.RedisError, OSError) as exc:
            self._outage.failed(exc)
            self._refuse_unless_fail_open()
            return True
        return bool(allowed)

    async def close(self) -> None:
        await self._client.aclose()

    def _refuse_unless_fail_open(self) -> None:
        """Redis is unavailable: carry on without it (fail_open), or refuse."""
        if not self._fail_open:
            raise LimitsUnavailable(self._url)
