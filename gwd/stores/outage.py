"""What a Redis-backed store does while Redis is down, written once for the limiter and the response cache.

After a failure the store leaves Redis alone for ``RETRY_INTERVAL`` (no
timeout per request in between) and then tries again, so it reconnects by
itself; an outage is logged once when it starts and once when it ends.
"""

from __future__ import annotations

import logging
import time

import redis.exceptions

RETRY_INTERVAL = 1.0
TIMEOUT = 0.25
"""Seconds one Redis call may take before it counts as a failure."""


def describe_redis_failure(exc: BaseException) -> str:
    """What went wrong with Redis, in words: a timeout's exception often has no text of its own."""
    if isinstance(exc, (TimeoutError, redis.exceptions.TimeoutError)):
        return f"timed out after {TIMEOUT * 1000:g} ms"
    return str(exc) or type(exc).__name__


class RedisOutage:
    """Whether a store's Redis is to be skipped now, and the two log lines of an outage."""

    __slots__ = ("_log", "_subject", "_while_down", "_when_back", "_until")

    def __init__(self, log: logging.Logger, subject: str, while_down: str, when_back: str = "") -> None:
        self._log = log
        self._subject = subject
        self._while_down = while_down
        self._when_back = when_back
        self._until = 0.0

    def ongoing(self) -> bool:
        """True within ``RETRY_INTERVAL`` of the last failure: do not call Redis."""
        return time.monotonic() < self._until

    def failed(self, exc: BaseException) -> None:
        if not self._until:
            self._log.error("%s failed (%s); %s until it answers", self._subject, describe_redis_failure(exc), self._while_down)
        self._until = time.monotonic() + RETRY_INTERVAL

    def answered(self) -> None:
        if self._until:
            self._until = 0.0
            self._log.warning("%s answers again%s", self._subject, self._when_back)
