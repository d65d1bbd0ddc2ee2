"""A worker's metrics: counted in plain dicts, added to the shared files once a second.

prometheus-client's multiprocess values are memory-mapped writes under a
lock; several per request would cost more than the counting itself.  Here a
request costs one tuple appended to a queue; every ``BATCH`` requests, and
at each flush, the queue is counted into plain dicts and lists in one tight
loop (on the proxy benchmark that halved what metrics cost, 3.6% -> 2.0%
of req/s, against counting each request as it finished), and
:meth:`RequestMetrics.flush` adds the counts since the last flush (see
:mod:`gwd.telemetry.prometheus` for what that means when a worker dies).  Labels stay
few and bounded: the route key template, never the raw path; unknown
methods as ``OTHER``; unmatched requests as route ``$unmatched``.
"""

from __future__ import annotations

import asyncio
import logging
from bisect import bisect_left
from collections import Counter, defaultdict
from typing import Any

from gwd.config.model import HTTP_METHODS
from gwd.pipeline.exchange import Exchange
from gwd.pipeline.resources import Resources
from gwd.stores.cachestore import MemoryStore
from gwd.stores.keystore import ApiKey
from gwd.telemetry.prometheus import DURATION_BUCKETS, FLUSH_INTERVAL, WorkerMetrics

log = logging.getLogger("gwd.metrics")

UNMATCHED = "$unmatched"
BATCH = 256  # requests queued before they are counted: about 0.1 ms of counting at a time (94 µs in a loop)
_SLOTS = len(DURATION_BUCKETS) + 1  # bucket counts, the last one +Inf

# What counting one request needs: its route's counts (None when unmatched), API, stage, method, status,
# seconds, integration milliseconds and error, and API key.
_Finished = tuple["RouteCounts | None", str, str, str, int, float, "float | None", "str | None", "ApiKey | None"]


class RequestMetrics:
    """Counts since the last flush; ``inflight`` is kept by the gateway."""

    __slots__ = (
        "_metrics",
        "_resources",
        "_per_key",
        "_dirty",
        "_unmatched",
        "_keys",
        "_throttled_seen",
        "_cache_seen",
        "_evictions_seen",
        "_flush_handle",
        "inflight",
        "_pending",
        "_failing",
    )

    def __init__(self, resources: Resources, per_key: bool) -> None:
        self._metrics = WorkerMetrics()
        self._resources = resources
        self._per_key = per_key
        self._dirty: list[RouteCounts] = []  # the routes counted since the last flush
        self._unmatched: dict[tuple[str, str], RouteCounts] = {}  # by API and stage
        self._keys: dict[str, int] = {}
        self._throttled_seen: Counter[tuple[str, str, str, str]] = Counter()
        self._cache_seen: dict[tuple[str, str, str], tuple[int, int, int]] = {}
        self._evictions_seen = 0
        self._flush_handle = asyncio.get_running_loop().call_later(FLUSH_INTERVAL, self._flush_periodically)
        self.inflight = 0
        self._pending: list[_Finished] = []  # answered requests not yet counted
        self._failing = False  # the last flush could not write (it was logged)

    def counts_for(self, api: str, stage: str, route: str) -> RouteCounts:
        """The counts of one route under one API stage, made at config load (the gateway keeps them with the route)."""
        return RouteCounts(api, stage, route)

    def record(self, exchange: Exchange, status: int, seconds: float) -> None:
        """Count one answered request: queue what counting needs, count the queue when it is full."""
        pending = self._pending
        pending.append(
            (
                exchange.route_counts,
                exchange.api,
                exchange.stage,
                exchange.method,
                status,
                seconds,
                exchange.integration_latency,
                exchange.integration_error,
                exchange.api_key,
            )
        )
        if len(pending) >= BATCH:
            self._count()

    def _count(self) -> None:
        """Count the queued requests."""
        pending, self._pending = self._pending, []
        dirty = self._dirty
        per_key = self._per_key
        for counts, api, stage, method, status, seconds, latency, error, api_key in pending:
            if counts is None:
                where = (UNMATCHED if api == "-" else api, UNMATCHED if stage == "-" else stage)
                counts = self._unmatched.get(where)
                if counts is None:
                    counts = self._unmatched[where] = RouteCounts(*where, UNMATCHED)
            if not counts.dirty:
                counts.dirty = True
                dirty.append(counts)
            # The method as parsed (llhttp knows a fixed set); the flush names the unusual ones OTHER.
            counts.requests[method, status] += 1
            counts.durations[bisect_left(DURATION_BUCKETS, seconds)] += 1
            counts.duration_sum += seconds
            if latency is not None:
                latency /= 1000
                counts.integration[bisect_left(DURATION_BUCKETS, latency)] += 1
                counts.integration_sum += latency
            if error is not None:
                counts.errors[error] += 1
            if per_key and api_key is not None:
                key_id = str(api_key.id)
                self._keys[key_id] = self._keys.get(key_id, 0) + 1

    def close(self) -> None:
        """Flush for the last time (a worker's graceful exit)."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        self.flush()

    def _flush_periodically(self) -> None:
        # Scheduled first: nothing a flush raises may end the chain.
        self._flush_handle = asyncio.get_running_loop().call_later(FLUSH_INTERVAL, self._flush_periodically)
        self.flush()

    def flush(self) -> None:
        """Add what was counted since the last flush to the shared files.

        Every series a flush writes is looked up first, which is where
        prometheus-client creates and grows its files; only when all of them
        exist are the counts added, so a flush that fails (out of descriptors
        or disk) adds nothing, keeps every count, and the next one adds them
        all.  The failure is logged once, and so is the recovery.
        """
        self._count()
        try:
            additions, histograms, settings = self._series_to_write()
        except Exception as exc:
            if not self._failing:
                self._failing = True
                log.error(
                    "metrics: cannot write this worker's counts (%s: %s); they are kept for the next flush",
                    type(exc).__name__,
                    exc,
                )
            return
        if self._failing:
            self._failing = False
            log.warning("metrics: this worker's counts are written again; none were lost")
        for child, amount in additions:
            child.inc(amount)
        for child, buckets, total in histograms:
            _add_histogram(child, buckets, total)
        for child, value in settings:
            child.set(value)
        for counts in self._dirty:
            counts.reset()
        self._dirty = []
        for function in self._resources.function_counts.values():
            function.reset()
        for balancer in self._resources.balancers.values():
            for target in balancer.targets:
                target.reset_counts()
        self._keys = {}
        resources = self._resources
        for labels, total in resources.throttled.items():
            self._throttled_seen[labels] = total
        for where, counts in resources.cache_results.items():
            self._cache_seen[where] = (counts.hit, counts.miss, counts.bypass)
        self._evictions_seen = getattr(resources.cache_store, "evictions", 0)

    def _series_to_write(self) -> tuple[list[tuple[Any, float]], list[tuple[Any, list[int], float]], list[tuple[Any, float]]]:
        """What a flush adds: (series, amount) to increase, histogram series with their buckets and sum, gauges to set."""
        metrics = self._metrics
        additions: list[tuple[Any, float]] = []
        histograms: list[tuple[Any, list[int], float]] = []
        for counts in self._dirty:
            where = (counts.api, counts.stage, counts.route)
            for (method, status), count in counts.requests.items():
                label = method if method in HTTP_METHODS else "OTHER"
                additions.append((metrics.requests.labels(*where, label, str(status)), count))
            histograms.append((metrics.request_duration.labels(*where), counts.durations, counts.duration_sum))
            if any(counts.integration):
                histograms.append((metrics.integration_duration.labels(*where), counts.integration, counts.integration_sum))
            for kind, count in counts.errors.items():
                additions.append((metrics.integration_errors.labels(*where, kind), count))
        for key_id, count in self._keys.items():
            additions.append((metrics.api_key_requests.labels(key_id), count))
        resources = self._resources
        for labels, total in resources.throttled.items():
            if total != self._throttled_seen[labels]:
                additions.append((metrics.throttled.labels(*labels), total - self._throttled_seen[labels]))
        for where, counts in resources.cache_results.items():
            now = (counts.hit, counts.miss, counts.bypass)
            before = self._cache_seen.get(where, (0, 0, 0))
            for result, new, old in zip(("hit", "miss", "bypass"), now, before):
                if new != old:
                    additions.append((metrics.cache_requests.labels(*where, result), new - old))
        evictions = getattr(resources.cache_store, "evictions", 0)
        if evictions != self._evictions_seen:
            additions.append((metrics.cache_evictions, evictions - self._evictions_seen))
        settings: list[tuple[Any, float]] = [(metrics.inflight, self.inflight)]
        for name, function in resources.function_counts.items():
            for outcome, count in function.outcomes.items():
                if count:
                    additions.append((metrics.function_invocations.labels(name, outcome), count))
            if any(function.durations):
                histograms.append((metrics.function_duration.labels(name), function.durations, function.duration_sum))
            if function.cold_starts:
                additions.append((metrics.function_cold_starts.labels(name), function.cold_starts))
            settings.append((metrics.function_concurrency.labels(name), function.running))
        store = resources.cache_store
        if isinstance(store, MemoryStore):
            settings += [(metrics.cache_entries, len(store)), (metrics.cache_bytes, store.stored_bytes)]
        for backend, count in resources.pools.connection_counts().items():
            settings.append((metrics.upstream_connections.labels(backend), count))
        for balancer in resources.balancers.values():
            for target in balancer.targets:
                where = (balancer.name, target.name)
                settings.append((metrics.target_healthy.labels(*where), 1 if target.healthy else 0))
                settings.append((metrics.target_inflight.labels(*where), target.inflight))
                for series, count in (
                    (metrics.target_requests, target.requests),
                    (metrics.target_errors, target.errors),
                    (metrics.target_ejections, target.ejected_total),
                    (metrics.target_retries, target.retries),
                ):
                    if count:
                        additions.append((series.labels(*where), count))
        return additions, histograms, settings


class RouteCounts:
    """One (API, stage, route)'s counts since the last flush."""

    __slots__ = (
        "api",
        "stage",
        "route",
        "requests",
        "durations",
        "duration_sum",
        "integration",
        "integration_sum",
        "errors",
        "dirty",
    )

    def __init__(self, api: str, stage: str, route: str) -> None:
        self.api = api
        self.stage = stage
        self.route = route
        self.requests: defaultdict[tuple[str, int], int] = defaultdict(int)  # (method, status) -> requests
        self.durations = [0] * _SLOTS  # requests per bucket, the last one +Inf
        self.duration_sum = 0.0  # seconds
        self.integration = [0] * _SLOTS  # integration times per bucket
        self.integration_sum = 0.0
        self.errors: defaultdict[str, int] = defaultdict(int)  # integration error kind -> requests
        self.dirty = False  # counted since the last flush (then it is in RequestMetrics._dirty)

    def reset(self) -> None:
        self.requests.clear()
        self.durations = [0] * _SLOTS
        self.duration_sum = 0.0
        self.integration = [0] * _SLOTS
        self.integration_sum = 0.0
        self.errors.clear()
        self.dirty = False


def _add_histogram(child: object, buckets: list[int], total: float) -> None:
    """Add per-bucket counts and a sum to a prometheus-client histogram child in one go.

    Its public ``observe`` takes one value at a time; its buckets are the
    (non-cumulative) ``_buckets`` values and ``_sum``, which this fills directly.
    """
    values = child._buckets  # type: ignore[attr-defined]
    for index, count in enumerate(buckets):
        if count:
            values[index].inc(count)
    child._sum.inc(total)  # type: ignore[attr-defined]
