"""Custom (request) authorizer: an HTTP endpoint or a Python function says allow or deny.

It gets an event in the shape of AWS's HTTP API authorizer payload 2.0
(route, path, headers, query, source IP, the identity source values) and
answers ``{"isAuthorized": true|false, "context": {...}, "principalId": ...}``
(AWS's simple response).  Decisions are remembered per identity (a digest
of the identity source values) for ``ttl``.  A request missing an identity
source is refused without asking.  Anything but a clear answer, in time,
is a failure, never an allow: unreachable or too slow is 503, a malformed
answer or a raising function is 500.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib
import inspect
import logging
import time
from dataclasses import dataclass
from typing import Any, Callable

import aiohttp
import orjson

from gwd.config.model import RequestAuthorizer
from gwd.http.message import Request, valid_text
from gwd.pipeline.clientip import Networks, client_address

log = logging.getLogger("gwd.authorizer")

DECISION_CACHE_SIZE = 10_000


class AuthorizerFailed(Exception):
    """No decision: ``status`` is 503 (unreachable, timed out) or 500 (a malformed answer, a raising function)."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    context: dict[str, Any]
    principal_id: str | None


class RequestAuthorizerClient:
    """One worker's client for one ``[[authorizers]]`` entry of type request."""

    def __init__(self, config: RequestAuthorizer, trusted_proxies: Networks) -> None:
        self.config = config
        self._trusted = trusted_proxies
        # (kind, name): "ip", "header" with the lower-cased name as bytes, or "query" with the parameter's name.
        self._sources: list[tuple[str, str | bytes]] = []
        for source in config.identity_sources:
            kind, _, name = source.partition(":")
            self._sources.append((kind, name.lower().encode("latin-1") if kind == "header" else name))
        self._function: Callable[[dict[str, Any]], Any] | None = None
        if config.function is not None:
            module_name, _, attribute = config.function.partition(":")
            self._function = getattr(importlib.import_module(module_name), attribute)
        self._session: aiohttp.ClientSession | None = None
        self._decisions: dict[bytes, tuple[Decision, float]] = {}  # identity digest -> (decision, expires, monotonic)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    def identity(self, request: Request) -> list[str] | None:
        """The identity source values, in config order; None when one is missing."""
        values = []
        for kind, name in self._sources:
            if kind == "ip":
                value: str | None = client_address(request, self._trusted)
            elif kind == "header":
                assert isinstance(name, bytes)
                value = request.headers.text(name)
            else:
                assert isinstance(name, str)
                found = request.query_values(name)
                value = found[0] if found else None
            if not value:
                return None
            values.append(value)
        return values

    async def decide(self, request: Request, identity: list[str], event_context: dict[str, Any]) -> Decision:
        """The (possibly remembered) decision for this identity."""
        digest = hashlib.sha256(b"\0".join(value.encode("utf-8", "surrogateescape") for value in identity)).digest()
        now = time.monotonic()
        remembered = self._decisions.get(digest)
        if remembered is not None and remembered[1] > now:
            return remembered[0]
        decision = await self._ask(_event(request, identity, event_context, self._trusted))
        if self.config.ttl > 0:
            if len(self._decisions) >= DECISION_CACHE_SIZE:
                self._decisions.clear()
            self._decisions[digest] = (decision, now + self.config.ttl)
        return decision

    async def _ask(self, event: dict[str, Any]) -> Decision:
        timeout = self.config.timeout
        if self._function is not None:
            try:
                if inspect.iscoroutinefunction(self._function):
                    answer = await asyncio.wait_for(self._function(event), timeout)
                else:
                    answer = await asyncio.wait_for(asyncio.to_thread(self._function, event), timeout)
            except asyncio.TimeoutError:
                raise AuthorizerFailed(503, f"function {self.config.function} took longer than {timeout:g}s") from None
            except Exception as exc:
                log.exception("authorizer %s: function %s raised", self.config.name, self.config.function)
                raise AuthorizerFailed(500, f"function raised {type(exc).__name__}") from None
            return _decision(answer)
        assert self.config.uri is not None
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout))
        try:
            async with self._session.post(
                self.config.uri, data=orjson.dumps(event), headers={"Content-Type": "application/json"}
            ) as response:
                body = await response.read()
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            raise AuthorizerFailed(503, f"{self.config.uri} unreachable: {exc or type(exc).__name__}") from None
        if response.status != 200:
            raise AuthorizerFailed(500, f"{self.config.uri} answered {response.status}")
        try:
            answer = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise AuthorizerFailed(500, f"{self.config.uri} answered no JSON") from None
        return _decision(answer)


def _decision(answer: object) -> Decision:
    if not isinstance(answer, dict) or not isinstance(answer.get("isAuthorized"), bool):
        raise AuthorizerFailed(500, 'the answer has no boolean "isAuthorized"')
    context = answer.get("context") or {}
    if not isinstance(context, dict):
        raise AuthorizerFailed(500, 'the answer\'s "context" is not an object')
    principal = answer.get("principalId")
    return Decision(answer["isAuthorized"], context, principal if isinstance(principal, str) else None)


def _event(request: Request, identity: list[str], context: dict[str, Any], trusted: Networks) -> dict[str, Any]:
    """AWS's HTTP API request-authorizer event (payload format 2.0), the parts gwd knows."""
    headers: dict[str, str] = {}
    for raw_name, raw_value in request.headers.lines:
        lowered = raw_name.decode("latin-1").lower()
        value = raw_value.decode("utf-8", "replace")
        headers[lowered] = f"{headers[lowered]},{value}" if lowered in headers else value
    query: dict[str, list[str]] = {}
    for name, value in request.query_items():
        query.setdefault(valid_text(name), []).append(valid_text(value))
    return {
        "version": "2.0",
        "type": "REQUEST",
        "routeKey": context["routeKey"],
        "rawPath": valid_text(request.path),
        "rawQueryString": valid_text(request.query),
        "identitySource": [valid_text(value) for value in identity],
        "headers": headers,
        "queryStringParameters": {name: ",".join(values) for name, values in query.items()} or None,
        "requestContext": {
            "requestId": context["requestId"],
            "routeKey": context["routeKey"],
            "stage": context["stage"],
            "http": {
                "method": request.method,
                "path": valid_text(request.decoded_path()),
                "protocol": f"HTTP/{request.version}",
                "sourceIp": client_address(request, trusted),
                "userAgent": request.headers.readable(b"user-agent") or "",
            },
        },
    }
