"""API-key stage: routes with ``api_key_required`` need a valid ``x-api-key``.

Each worker keeps the active keys in memory, by the SHA-256 of their value,
and re-reads them when the key database changes (checked every
``POLL_INTERVAL``), so ``gwd keys create`` and ``gwd keys revoke`` take
effect on a running daemon within a second.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from typing import Awaitable, Callable

from gwd.config.model import API_KEY_HEADER, Quota, RouteConfig, StageConfig
from gwd.http.message import Response
from gwd.pipeline.errors import GatewayError
from gwd.pipeline.exchange import Exchange
from gwd.pipeline.handler import Handler
from gwd.pipeline.resources import Resources
from gwd.stores.keystore import ApiKey, CacheFlush, KeyStore, hash_value

log = logging.getLogger("gwd.apikeys")

POLL_INTERVAL = 0.25
FORBIDDEN = GatewayError(403, "Forbidden", response_type="INVALID_API_KEY")


class KeyCache:
    """A worker's copy of the active keys; it also hands on ``gwd cache flush`` requests.

    ``on_cache_flush`` is called with each flush requested after the worker
    started, within ``POLL_INTERVAL`` of the request.
    """

    __slots__ = ("_store", "_keys", "_version", "_poll_handle", "_last_flush", "on_cache_flush")

    def __init__(self, state_dir: str) -> None:
        self._store = KeyStore(state_dir)
        self._keys = self._store.active_by_hash()
        self._version = self._store.version()
        self._last_flush = self._store.last_cache_flush()
        self.on_cache_flush: Callable[[CacheFlush], None] | None = None
        self._poll_handle = asyncio.get_running_loop().call_later(POLL_INTERVAL, self._poll)

    def lookup(self, value: str) -> ApiKey | None:
        return self._keys.get(hash_value(value))

    def consume_quota(self, key: ApiKey, quota: Quota) -> bool:
        """Count a request against the key's quota; False when the period's quota is used up."""
        try:
            return self._store.consume_quota(key.id, quota.period, quota.limit)
        except sqlite3.Error as exc:
            # Counting must not take the gateway down with the disk: serve, and say so.
            log.error("cannot count quota usage of key %s: %s; request let through", key.id, exc)
            return True

    def _poll(self) -> None:
        try:
            version = self._store.version()
            if version != self._version:
                self._keys = self._store.active_by_hash()
                self._version = version
                for flush in self._store.cache_flushes_after(self._last_flush):
                    self._last_flush = flush.id
                    if self.on_cache_flush is not None:
                        self.on_cache_flush(flush)
                        self._store.cache_flush_applied(flush.id)  # `gwd cache flush` waits to hear it
        except sqlite3.Error as exc:
            # Keep serving with the keys already known; try again next time.
            log.error("cannot read the API key database: %s", exc)
        self._poll_handle = asyncio.get_running_loop().call_later(POLL_INTERVAL, self._poll)

    def close(self) -> None:
        self._poll_handle.cancel()
        self._store.close()


def build(route: RouteConfig, stage: StageConfig, resources: Resources, next_handler: Handler) -> Handler:
    """Wrap ``next_handler`` with the key check, or return it as it is when the route needs no key."""
    if not route.api_key_required:
        return next_handler
    keys = resources.keys
    assert keys is not None, "the gateway opens the key cache when a route needs keys"
    plans = resources.usage_plans  # a key on a plan opens only its plan's API; a key on none, any

    def require_key(exchange: Exchange) -> Response | Awaitable[Response]:
        value = exchange.request.headers.text(API_KEY_HEADER)
        key = keys.lookup(value) if value else None
        if key is None or (key.plan is not None and key.plan not in plans):
            raise FORBIDDEN
        exchange.api_key = key
        return next_handler(exchange)

    return require_key
