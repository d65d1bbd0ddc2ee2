"""Authorization stage: a route that names an authorizer lets in only what it allows.

JWT: no token or an invalid one is ``401 {"message":"Unauthorized"}`` (with
``WWW-Authenticate: Bearer``), a valid token without the route's scopes is
``403 {"message":"Forbidden"}``, and no keys to check with is ``503``.
Custom (request) authorizer, as AWS: a missing identity source is 401, a
deny 403, a failure 500 or 503.  Either way the claims or context reach the exchange: the
subject or principal for the access log (``principalId``) and the throttle
key (``claim:NAME``), and the values the authorizer maps to headers for the
backend.  Those header names are removed from what the client sent, so a
client cannot forge them.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson

from gwd.authorizers.jwtauth import JwtVerifier, KeysUnavailable, TokenRejected, bearer_token, scopes_of
from gwd.authorizers.requestauth import AuthorizerFailed, RequestAuthorizerClient
from gwd.config.model import RouteConfig, StageConfig
from gwd.http.message import Response
from gwd.pipeline.errors import GatewayError
from gwd.pipeline.exchange import Exchange
from gwd.pipeline.handler import Handler
from gwd.pipeline.resources import Resources

log = logging.getLogger("gwd.authorizer")

UNAUTHORIZED = GatewayError(401, "Unauthorized", {"WWW-Authenticate": "Bearer"}, response_type="UNAUTHORIZED")
FORBIDDEN = GatewayError(403, "Forbidden", response_type="ACCESS_DENIED")
UNAVAILABLE = GatewayError(503, "Service Unavailable", response_type="AUTHORIZER_FAILURE")
FAILED = GatewayError(500, "Internal Server Error", response_type="AUTHORIZER_FAILURE")


def build(route: RouteConfig, stage: StageConfig, resources: Resources, next_handler: Handler) -> Handler:
    """Wrap ``next_handler`` with the route's authorizer, or return it when the route names none."""
    if route.authorizer is None:
        return next_handler
    authorizer = resources.authorizers[route.authorizer]
    if isinstance(authorizer, JwtVerifier):
        return _jwt(authorizer, frozenset(route.scopes), next_handler)
    return _request(authorizer, stage.name, str(route.key), next_handler)


def _jwt(verifier: JwtVerifier, required: frozenset[str], next_handler: Handler) -> Handler:
    header = verifier.config.header
    header_name = header.lower().encode("latin-1")
    claim_headers = verifier.config.claim_headers

    async def authorize(exchange: Exchange) -> Response:
        token = bearer_token(exchange.request.headers.text(header_name), header)
        if token is None:
            raise UNAUTHORIZED
        try:
            claims = await verifier.verify(token)
        except TokenRejected as exc:
            log.info("request %s: token refused by %s: %s", exchange.request_id, verifier.config.name, exc)
            raise UNAUTHORIZED from None
        except KeysUnavailable as exc:
            log.error("request %s: authorizer %s: %s", exchange.request_id, verifier.config.name, exc)
            raise UNAVAILABLE from None
        if required and not required <= scopes_of(claims):
            raise FORBIDDEN
        exchange.claims = claims
        subject = claims.get("sub")
        exchange.principal_id = subject if isinstance(subject, str) else None
        if claim_headers:
            exchange.backend_header_lines += _header_lines(claims, claim_headers)
        response = next_handler(exchange)
        return response if isinstance(response, Response) else await response

    return authorize


def _request(client: RequestAuthorizerClient, stage: str, route_key: str, next_handler: Handler) -> Handler:
    context_headers = client.config.context_headers

    async def authorize(exchange: Exchange) -> Response:
        request = exchange.request
        identity = client.identity(request)
        if identity is None:
            raise UNAUTHORIZED
        context = {"requestId": exchange.request_id, "routeKey": route_key, "stage": stage}
        try:
            decision = await client.decide(request, identity, context)
        except AuthorizerFailed as exc:
            log.error("request %s: authorizer %s failed: %s", exchange.request_id, client.config.name, exc)
            raise (UNAVAILABLE if exc.status == 503 else FAILED) from None
        if not decision.allowed:
            raise FORBIDDEN
        exchange.claims = decision.context
        exchange.principal_id = decision.principal_id
        if context_headers:
            try:
                exchange.backend_header_lines += _header_lines(decision.context, context_headers)
            except ValueError as exc:
                log.error("request %s: authorizer %s: %s", exchange.request_id, client.config.name, exc)
                raise FAILED from None
        response = next_handler(exchange)
        return response if isinstance(response, Response) else await response

    return authorize


def _header_lines(values: dict[str, Any], mapping: tuple[tuple[str, str], ...]) -> bytes:
    """``Header: value`` lines for the mapped values present; ValueError for a value that could split a header."""
    lines = b""
    for source, header in mapping:
        value = values.get(source)
        if value is None:
            continue
        text = value if isinstance(value, str) else orjson.dumps(value).decode()
        if "\r" in text or "\n" in text or "\0" in text:
            raise ValueError(f"{source!r} holds a line break; not sent as header {header}")
        # A lone surrogate (JSON can carry one) is no UTF-8: it is sent as a \uXXXX escape.
        lines += f"{header}: {text}\r\n".encode("utf-8", "backslashreplace")
    return lines
