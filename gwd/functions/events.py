"""The event a function integration's handler gets: AWS API Gateway's, payload 1.0 or 2.0.

Field for field what AWS builds for a Lambda proxy integration: 2.0 as an
HTTP API sends it (lower-cased, comma-joined headers, ``cookies`` apart,
absent collections left out), 1.0 as a REST API sends it (header and query
values last-wins beside their multi-value lists, empty collections
``null``).  What a route fixes (its resource, route key, stage variables)
is worked out once per route at config load.  Where gwd has no AWS value
it says so plainly: ``accountId`` is :data:`ACCOUNT_ID`, ``apiId`` is
:data:`API_ID`, ``domainName`` is the request's ``Host`` without its port.
"""

from __future__ import annotations

import base64
import os
from typing import Any, Callable
from urllib.parse import parse_qsl

from gwd.authorizers.jwtauth import scopes_of
from gwd.config.model import DEFAULT_ROUTE, DEFAULT_STAGE, RouteConfig, StageConfig
from gwd.http.message import valid_text
from gwd.mapping.binary import BinaryTypes
from gwd.pipeline.clientip import Networks, client_address
from gwd.pipeline.exchange import Exchange
from gwd.telemetry.accesslog import clf_time

ACCOUNT_ID = "000000000000"
"""AWS's twelve-digit account id, which a self-hosted gateway has none of."""
API_ID = "gwd"
REGION = os.environ.get("AWS_REGION", "us-east-1")
"""The region in a function's ARN: the daemon's ``AWS_REGION``, else AWS's default one."""

EventBuilder = Callable[[Exchange, bytes], dict[str, Any]]

_TEXT_TYPES = frozenset({"application/json", "application/javascript", "application/xml", "application/x-javascript"})


def event_builder(
    payload_format: str,
    route: RouteConfig,
    stage: StageConfig,
    authorizer_kind: str | None,
    trusted: Networks,
    binary: BinaryTypes | None = None,
) -> EventBuilder:
    """What builds one route's events under one stage: ``authorizer_kind`` is "jwt", "request" or None.

    With the API's ``binary`` media types, a payload 1.0 body is base64 when
    its type is one of them and text otherwise, as a REST API sends it.
    """
    if payload_format == "1.0":
        builder = _Version1(route, stage, authorizer_kind, trusted)
        builder.binary = binary if binary else None
        return builder.build
    return _Version2(route, stage, authorizer_kind, trusted).build


def rest_request_context(route: RouteConfig, stage: StageConfig, authorizer_kind: str | None, trusted: Networks) -> Callable[[Exchange], dict[str, Any]]:
    """What builds a REST API's ``requestContext`` for one route (``$context`` of its mapping templates)."""
    return _Version1(route, stage, authorizer_kind, trusted).request_context


def is_text(content_type: str | None) -> bool:
    """Whether a body of this type travels as text (else base64), by AWS's rule for HTTP APIs."""
    if not content_type:
        return False
    media = content_type.partition(";")[0].strip().lower()
    return media.startswith("text/") or media in _TEXT_TYPES or media.endswith(("+json", "+xml"))


def body_field(body: bytes, content_type: str | None) -> tuple[str, bool]:
    """The body as the event carries it, and whether that is base64."""
    if is_text(content_type):
        try:
            return body.decode("utf-8"), False
        except UnicodeDecodeError:
            pass
    return base64.b64encode(body).decode("ascii"), True


def _rest_body_field(body: bytes, binary: bool) -> tuple[str, bool]:
    """A REST API's body field: base64 for a binary media type, else text (base64 still when it is not UTF-8)."""
    if not binary:
        try:
            return body.decode("utf-8"), False
        except UnicodeDecodeError:
            pass
    return base64.b64encode(body).decode("ascii"), True


def _domain(exchange: Exchange) -> str:
    host = exchange.request.headers.readable(b"host") or API_ID
    if host.startswith("["):
        return host.partition("]")[0] + "]"
    return host.partition(":")[0]


def _scopes(claims: dict[str, Any]) -> list[str] | None:
    """A token's scopes, sorted, as the event lists them (None: it grants none)."""
    return sorted(scopes_of(claims)) or None


def _as_string(value: object) -> str:
    """A custom authorizer's context value as a REST API passes it: a string."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else str(value)


class _Builder:
    """What both payload formats take from the route and stage, at config load."""

    __slots__ = ("_route_key", "_stage", "_variables", "_authorizer", "_trusted")

    def __init__(self, route: RouteConfig, stage: StageConfig, authorizer_kind: str | None, trusted: Networks) -> None:
        self._route_key = str(route.key)
        self._stage = stage.name
        self._variables = dict(stage.variables) or None
        self._authorizer = authorizer_kind
        self._trusted = trusted


class _Version2(_Builder):
    """Events in payload format 2.0 (HTTP API)."""

    __slots__ = ()

    def build(self, exchange: Exchange, body: bytes) -> dict[str, Any]:
        request = exchange.request
        headers: dict[str, str] = {}
        cookies: list[str] = []
        for lowered, (_, raw) in zip(request.headers.names, request.headers.lines):
            value = raw.decode("utf-8", "replace")
            if lowered == b"cookie":
                cookies += [part.strip() for part in value.split(";") if part.strip()]
                continue
            name = lowered.decode("latin-1")
            headers[name] = f"{headers[name]},{value}" if name in headers else value
        started = exchange.started
        domain = _domain(exchange)
        context: dict[str, Any] = {
            "accountId": ACCOUNT_ID,
            "apiId": API_ID,
            "domainName": domain,
            "domainPrefix": domain.partition(".")[0],
            "http": {
                "method": exchange.method,
                "path": valid_text(request.decoded_path()),
                "protocol": f"HTTP/{request.version}",
                "sourceIp": client_address(request, self._trusted),
                "userAgent": headers.get("user-agent", ""),
            },
            "requestId": exchange.request_id,
            "routeKey": self._route_key,
            "stage": self._stage,
            "time": clf_time(started),
            "timeEpoch": int(started * 1000),
        }
        claims = exchange.claims
        if self._authorizer == "jwt" and claims is not None:
            context["authorizer"] = {"jwt": {"claims": claims, "scopes": _scopes(claims)}}
        elif self._authorizer == "request" and claims is not None:
            context["authorizer"] = {"lambda": claims}
        if exchange.client_cert is not None:
            context["authentication"] = {"clientCert": exchange.client_cert.as_event()}
        event: dict[str, Any] = {
            "version": "2.0",
            "routeKey": self._route_key,
            "rawPath": valid_text(request.path),
            "rawQueryString": valid_text(request.query),
        }
        if cookies:
            event["cookies"] = cookies
        event["headers"] = headers
        if request.query:
            query: dict[str, str] = {}
            for name, value in parse_qsl(valid_text(request.query), keep_blank_values=True):
                query[name] = f"{query[name]},{value}" if name in query else value
            event["queryStringParameters"] = query
        event["requestContext"] = context
        if exchange.path_params:
            event["pathParameters"] = exchange.path_params
        if self._variables is not None:
            event["stageVariables"] = self._variables
        if body:
            event["body"], event["isBase64Encoded"] = body_field(body, headers.get("content-type"))
        else:
            event["isBase64Encoded"] = False
        return event


class _Version1(_Builder):
    """Events in payload format 1.0 (REST API, Lambda proxy integration)."""

    __slots__ = ("_resource", "_prefix", "binary")

    def __init__(self, route: RouteConfig, stage: StageConfig, authorizer_kind: str | None, trusted: Networks) -> None:
        super().__init__(route, stage, authorizer_kind, trusted)
        self.binary: BinaryTypes | None = None
        key = self._route_key
        self._resource = key if route.key.method == DEFAULT_ROUTE else key.partition(" ")[2]
        self._prefix = "" if stage.name == DEFAULT_STAGE else "/" + stage.name  # what the path loses in "path"

    def build(self, exchange: Exchange, body: bytes) -> dict[str, Any]:
        request = exchange.request
        headers: dict[str, str] = {}
        multi_headers: dict[str, list[str]] = {}
        spelled: dict[bytes, str] = {}  # a header's name as the client first spelled it
        for lowered, (raw_name, raw) in zip(request.headers.names, request.headers.lines):
            name = spelled.setdefault(lowered, raw_name.decode("latin-1"))
            value = raw.decode("utf-8", "replace")
            headers[name] = value
            multi_headers.setdefault(name, []).append(value)
        query: dict[str, str] = {}
        multi_query: dict[str, list[str]] = {}
        for name, value in parse_qsl(valid_text(request.query), keep_blank_values=True) if request.query else ():
            query[name] = value
            multi_query.setdefault(name, []).append(value)
        full_path = valid_text(request.decoded_path())
        path = full_path
        if self._prefix and full_path.startswith(self._prefix):
            path = full_path[len(self._prefix) :] or "/"
        content_type = request.headers.readable(b"content-type")
        if not body:
            text, encoded = None, False
        elif self.binary is not None:
            text, encoded = _rest_body_field(body, self.binary.matches(content_type))
        else:
            text, encoded = body_field(body, content_type)
        return {
            "version": "1.0",
            "resource": self._resource,
            "path": path,
            "httpMethod": exchange.method,
            "headers": headers or None,
            "multiValueHeaders": multi_headers or None,
            "queryStringParameters": query or None,
            "multiValueQueryStringParameters": multi_query or None,
            "requestContext": self.request_context(exchange),
            "pathParameters": exchange.path_params or None,
            "stageVariables": self._variables,
            "body": text,
            "isBase64Encoded": encoded,
        }

    def request_context(self, exchange: Exchange) -> dict[str, Any]:
        """The event's ``requestContext``: what a REST API knows of the request besides its content."""
        request = exchange.request
        started = exchange.started
        domain = _domain(exchange)
        api_key = exchange.api_key
        client_cert = exchange.client_cert
        identity = {
            "accessKey": None,
            "accountId": None,
            "apiKey": request.headers.readable(b"x-api-key") if api_key is not None else None,
            "apiKeyId": str(api_key.id) if api_key is not None else None,
            "caller": None,
            "clientCert": client_cert.as_event() if client_cert is not None else None,
            "cognitoAuthenticationProvider": None,
            "cognitoAuthenticationType": None,
            "cognitoIdentityId": None,
            "cognitoIdentityPoolId": None,
            "principalOrgId": None,
            "sourceIp": client_address(request, self._trusted),
            "user": None,
            "userAgent": request.headers.readable(b"user-agent"),
            "userArn": None,
        }
        context: dict[str, Any] = {
            "accountId": ACCOUNT_ID,
            "apiId": API_ID,
            "domainName": domain,
            "domainPrefix": domain.partition(".")[0],
            "extendedRequestId": exchange.request_id,
            "httpMethod": exchange.method,
            "identity": identity,
            "path": valid_text(request.decoded_path()),
            "protocol": f"HTTP/{request.version}",
            "requestId": exchange.request_id,
            "requestTime": clf_time(started),
            "requestTimeEpoch": int(started * 1000),
            "resourceId": None,
            "resourcePath": self._resource,
            "stage": self._stage,
        }
        claims = exchange.claims
        if self._authorizer == "jwt" and claims is not None:
            context["authorizer"] = {"claims": claims, "scopes": _scopes(claims)}
        elif self._authorizer == "request" and claims is not None:
            context["authorizer"] = {"principalId": exchange.principal_id, **{k: _as_string(v) for k, v in claims.items()}}
        return context
