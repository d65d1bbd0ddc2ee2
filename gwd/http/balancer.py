"""Choosing a target of an upstream for each request, and keeping requests off the targets that fail.

One :class:`Balancer` per upstream per worker, shared by every route that
names it.  What it knows is the worker's own: requests in flight per
target, consecutive failures, ejections.  Only ``max_requests`` is counted
across workers (in the daemon's shared slots, as function concurrency is).

- ``round_robin`` is nginx's smooth weighted round robin: over any run of
  picks each target's share is its weight's, without bursts to one target.
- ``least_requests`` takes the target with the fewest requests in flight
  for its weight, starting the scan where the last one ended so ties rotate.
- ``consistent_hash`` places each target on a ring at 100 points per unit of
  weight (BLAKE2b of its address, the same in every worker and daemon; CRC-32
  left some targets a fraction of their share, its outputs for similar
  inputs being alike): a
  key goes to the first target clockwise of its hash, so a target leaving
  moves only its own keys.  A target with more than 1.25 times the average
  requests in flight passes the key on clockwise (bounded loads).

Passive outlier detection: ``eject_after`` consecutive failures of a
target eject it for ``eject_for``, doubled for each ejection since its last
success (at most 10 times), never more than ``max_ejected_percent`` of the
targets at once and never the last one.  With ``slow_start``, a target
back from ejection takes a share of its weight growing from 5% to all of
it over that time (round robin and least requests; a hash ring cannot
share a key).  A retry budget gives each request
``budget`` of a retry token (from a floor of ``RETRY_FLOOR``); a retry
takes a whole one, and tokens never pile up past the floor: in an outage
retries are at most ``RETRY_FLOOR`` plus ``budget`` of the requests.
"""

from __future__ import annotations

import bisect
import math
import hashlib
import time
from typing import TYPE_CHECKING

from gwd.config.model import UpstreamConfig

if TYPE_CHECKING:
    from gwd.stores.invocations import InvocationSlots

RING_POINTS = 100
"""Ring points per unit of weight for consistent_hash."""
LOAD_FACTOR = 1.25
"""consistent_hash: a target past this times the average in-flight load passes keys on."""
RETRY_FLOOR = 10.0
"""Retry tokens a worker starts with and always gets back to: the first retries of a quiet upstream are free."""
MIN_SHARE = 0.05
"""Slow start: the share of its weight a target has the moment its ejection ends."""
MAX_BACKOFF = 10
"""An ejection lasts at most this many times ``eject_for``."""


def _ring_hash(data: bytes) -> int:
    """A point on the consistent-hash ring: 64 well-mixed bits, the same in every process."""
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


class TargetState:
    """One target as a worker sees it; also its counts since the last metrics flush."""

    __slots__ = (
        "name", "weight", "share", "current", "inflight", "unhealthy", "failures", "ejected_until", "ejections", "requests", "errors", "retries",
        "ejected_total",
    )

    def __init__(self, name: str, weight: int) -> None:
        self.name = name  # "host:port"
        self.weight = weight
        self.share = float(weight)  # the weight it has now: less while it ramps up after an ejection (slow start)
        self.current = 0.0  # smooth weighted round robin's running weight
        self.inflight = 0
        self.unhealthy = False  # the daemon's active health checks found it failing
        self.failures = 0  # consecutive
        self.ejected_until = 0.0  # time.monotonic(); 0: not ejected
        self.ejections = 0  # since its last success: each doubles the next ejection
        self.requests = 0  # counts for the metrics, reset by each flush
        self.errors = 0
        self.retries = 0
        self.ejected_total = 0

    def reset_counts(self) -> None:
        """After a metrics flush wrote them."""
        self.requests = self.errors = self.retries = self.ejected_total = 0

    @property
    def healthy(self) -> bool:
        """Neither ejected now nor failing its health checks."""
        return not self.unhealthy and self.ejected_until <= time.monotonic()


class Balancer:
    """Picks targets of one upstream; see the module's description."""

    __slots__ = (
        "name", "targets", "_pick", "_ring", "_ring_targets", "_next", "_every", "_quiet_from", "_slow_start", "_ramping", "_unhealthy", "_eject_after", "_eject_for", "_max_ejected",
        "_slots", "_slot_row", "_max_requests", "_retry_tokens", "_retry_share",
    )

    def __init__(self, config: UpstreamConfig, slots: InvocationSlots | None) -> None:
        """``slots``: the daemon's shared counts, for ``max_requests`` (None when it is 0)."""
        self.name = config.name
        self.targets = [TargetState(str(target), target.weight) for target in config.targets]
        self._pick = {"round_robin": self._round_robin, "least_requests": self._least_requests}.get(config.algorithm)
        self._ring: list[int] = []
        self._ring_targets: list[int] = []
        if config.algorithm == "consistent_hash":
            points = sorted(
                (_ring_hash(f"{target}#{n}".encode()), index)
                for index, target in enumerate(config.targets)
                for n in range(RING_POINTS * target.weight)
            )
            self._ring = [point for point, _ in points]
            self._ring_targets = [index for _, index in points]
        self._next = 0
        self._every = list(range(len(self.targets)))
        self._slow_start = config.slow_start
        # time.monotonic() from which no target is ejected or ramping up (the last known ejection's end + slow_start).
        self._quiet_from = 0.0
        self._ramping = False  # some target's share is below its weight (slow start)
        self._unhealthy = 0  # targets the health checks take out
        self._eject_after = config.eject_after
        self._eject_for = config.eject_for
        self._max_ejected = min(len(self.targets) - 1, len(self.targets) * config.max_ejected_percent // 100)
        self._max_requests = config.max_requests
        self._slots = slots if config.max_requests else None
        self._slot_row = slots.row(f"upstream:{config.name}") if config.max_requests and slots is not None else 0
        self._retry_share = config.retries.budget if config.retries is not None else 0.0
        self._retry_tokens = RETRY_FLOOR

    def pick(self, key: bytes | None, tried: list[int]) -> int | None:
        """The index of the target for a request (``key`` for consistent_hash), skipping ``tried`` and ejected ones."""
        now = time.monotonic()
        if now >= self._quiet_from and not self._unhealthy:
            if self._ramping:
                self._ramp(now)
            eligible = self._every if not tried else [index for index in self._every if index not in tried]
        else:
            if self._slow_start:
                self._ramp(now)
            eligible = [
                index for index, target in enumerate(self.targets) if target.ejected_until <= now and index not in tried
            ]
            live = [index for index in eligible if not self.targets[index].unhealthy]
            # With every target failing its checks, the checks are more likely wrong than every backend: use them all.
            if live or len(self._every) > self._unhealthy:
                eligible = live
        if not eligible:
            return None
        if self._pick is not None:
            return self._pick(eligible)
        return self._hashed(key or b"", eligible)

    def _ramp(self, now: float) -> None:
        """Slow start: a target back from ejection has a share of its weight growing to all of it over ``slow_start``."""
        ramping = False
        for target in self.targets:
            since = now - target.ejected_until
            if target.ejected_until and 0 <= since < self._slow_start:
                target.share = target.weight * max(MIN_SHARE, since / self._slow_start)
                ramping = True
            else:
                target.share = target.weight
        self._ramping = ramping

    def _round_robin(self, eligible: list[int]) -> int:
        targets = self.targets
        total = 0.0
        best = eligible[0]
        for index in eligible:
            target = targets[index]
            target.current += target.share
            total += target.share
            if target.current > targets[best].current:
                best = index
        targets[best].current -= total
        return best

    def _least_requests(self, eligible: list[int]) -> int:
        targets = self.targets
        start = self._next % len(eligible)
        order = eligible[start:] + eligible[:start]
        best = min(order, key=lambda index: (targets[index].inflight + 1) / targets[index].share)
        self._next += 1
        return best

    def _hashed(self, key: bytes, eligible: list[int]) -> int:
        targets = self.targets
        load = sum(targets[index].inflight for index in eligible)
        cap = math.ceil(LOAD_FACTOR * (load + 1) / len(eligible))
        ring, owners = self._ring, self._ring_targets
        position = bisect.bisect(ring, _ring_hash(key))
        seen: set[int] = set()
        for step in range(len(ring)):
            index = owners[(position + step) % len(ring)]
            if index in seen or index not in eligible:
                continue
            if targets[index].inflight < cap:
                return index
            seen.add(index)
            if len(seen) == len(eligible):
                break
        return owners[position % len(ring)] if owners[position % len(ring)] in eligible else eligible[0]

    def admit(self) -> bool:
        """Count a request to the upstream against ``max_requests`` (daemon-wide); False: the circuit is open.

        Each request admitted earns the retry budget its share of a retry.
        """
        self._retry_tokens = min(self._retry_tokens + self._retry_share, RETRY_FLOOR)
        if self._slots is None:
            return True
        return self._slots.take(self._slot_row, self._max_requests)

    def release(self) -> None:
        """A request :meth:`admit` counted is over."""
        if self._slots is not None:
            self._slots.give_back(self._slot_row)

    def started(self, index: int) -> None:
        target = self.targets[index]
        target.inflight += 1
        target.requests += 1

    def succeeded(self, index: int) -> None:
        target = self.targets[index]
        target.inflight -= 1
        target.failures = 0
        target.ejections = 0

    def set_unhealthy(self, index: int, unhealthy: bool) -> None:
        """What the daemon's health checks last found; a target back from failing them ramps up as after an ejection."""
        target = self.targets[index]
        if target.unhealthy == unhealthy:
            return
        target.unhealthy = unhealthy
        self._unhealthy += 1 if unhealthy else -1
        if not unhealthy and self._slow_start:
            target.ejected_until = max(target.ejected_until, time.monotonic())
            self._quiet_from = max(self._quiet_from, target.ejected_until + self._slow_start)

    def abandoned(self, index: int) -> None:
        """An attempt ended for a reason of the client's (it went away, its body was refused): counts for nothing."""
        self.targets[index].inflight -= 1

    def failed(self, index: int) -> None:
        """An attempt on the target failed (no connection, a broken one, a timeout or a 5xx): maybe eject it."""
        target = self.targets[index]
        target.inflight -= 1
        target.errors += 1
        target.failures += 1
        if not self._eject_after or target.failures < self._eject_after:
            return
        now = time.monotonic()
        if sum(1 for t in self.targets if t.ejected_until > now) >= self._max_ejected:
            return
        target.ejected_until = now + self._eject_for * min(2**target.ejections, MAX_BACKOFF)
        self._quiet_from = max(self._quiet_from, target.ejected_until + self._slow_start)
        target.ejections += 1
        target.ejected_total += 1
        target.failures = 0

    def may_retry(self, index: int) -> bool:
        """Whether the budget has a retry left; if so it is taken (and counted for the target retried from)."""
        if self._retry_tokens < 1:
            return False
        self._retry_tokens -= 1
        self.targets[index].retries += 1
        return True
