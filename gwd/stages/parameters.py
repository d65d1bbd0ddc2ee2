"""Parameter mapping: headers, query string, path and status changed on the way to and from an HTTP integration.

Innermost of the stages.  ``request_parameters`` append, overwrite or
remove the backend request's headers and query-string parameters,
overwrite its path (``overwrite:path``) or a path parameter the ``uri``
uses (``integration.request.path.NAME``); ``response_parameters`` do the
same to the response's headers and status (``overwrite:statuscode``).
Values are parsed at config load (:mod:`gwd.config.parameters`) into
literal text and look-ups; stage variables are resolved when the route is
built.  A value whose sources are all missing is empty, and an empty
header or query value is not sent.  The body is never touched (it still
streams), so a route with only request rules answers without a coroutine
of its own.
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable
from urllib.parse import quote, urlencode

from gwd.config.model import HttpIntegration, RouteConfig, StageConfig
from gwd.http.message import Headers, Response, header_value, lines_without
from gwd.pipeline.exchange import Exchange
from gwd.pipeline.handler import Handler
from gwd.pipeline.resources import Resources

Source = Callable[[Exchange, Response | None], str | None]


def build(route: RouteConfig, stage: StageConfig, resources: Resources, next_handler: Handler) -> Handler:
    """The route's handler with its parameter mapping around it (unwrapped without one)."""
    integration = route.integration
    parameters = integration.parameters if isinstance(integration, HttpIntegration) else None
    if parameters is None:
        return next_handler
    request_rules = [(rule, _value(rule.value, stage)) for rule in parameters.request]
    response_rules = [(rule, _value(rule.value, stage)) for rule in parameters.response]
    header_rules = [(rule, value) for rule, value in request_rules if rule.kind == "header"]
    query_rules = [(rule, value) for rule, value in request_rules if rule.kind == "querystring"]
    path_rules = [(rule, value) for rule, value in request_rules if rule.kind == "path"]

    def map_request(exchange: Exchange) -> None:
        request = exchange.request
        headers = None
        if header_rules:
            lines = list(request.headers.lines)
            for rule, value in header_rules:
                text = value(exchange, None)
                lowered = rule.name.lower().encode()
                if rule.action != "append":
                    lines = [(name, raw) for name, raw in lines if name.lower() != lowered]
                if rule.action != "remove" and text:
                    lines.append((rule.name.encode("latin-1"), text.encode("utf-8", "replace")))
            headers = Headers(lines)
        query = None
        if query_rules:
            items = request.query_items()
            for rule, value in query_rules:
                text = value(exchange, None)
                if rule.action != "append":
                    items = [(name, raw) for name, raw in items if name != rule.name]
                if rule.action != "remove" and text:
                    items.append((rule.name, text))
            query = urlencode(items, quote_via=quote)
        for rule, value in path_rules:
            text = value(exchange, None) or ""
            if rule.name:
                exchange.path_params[rule.name] = text  # a path parameter the uri's template uses
            else:
                exchange.integration_path = text if text.startswith("/") else "/" + text
        if headers is not None or query is not None:
            exchange.request = request.with_head(headers, query)

    def map_response(exchange: Exchange, response: Response) -> Response:
        # Every value is read from the response as the integration gave it, then applied.
        for rule, text in [(rule, value(exchange, response)) for rule, value in response_rules]:
            if rule.kind == "statuscode":
                if text and text.isdigit() and 100 <= int(text) <= 599:
                    response.status = int(text)
                continue
            lowered = rule.name.lower().encode()
            if rule.action != "append":
                response.header_lines = lines_without(response.header_lines, lowered)
            if rule.action != "remove" and text:
                response.header_lines += rule.name.encode("latin-1") + b": " + header_value(text) + b"\r\n"
        return response

    async def later(exchange: Exchange, answer: Awaitable[Response]) -> Response:
        return map_response(exchange, await answer)

    def mapped(exchange: Exchange) -> Response | Awaitable[Response]:
        map_request(exchange)
        answer = next_handler(exchange)
        if not response_rules:
            return answer
        return map_response(exchange, answer) if isinstance(answer, Response) else later(exchange, answer)

    return mapped


def _value(parts: tuple[str, ...], stage: StageConfig) -> Source:
    """A rule's value as one function of the exchange (and, on the response side, the response)."""
    sources: list[str | Source] = []
    for part in parts:
        if not part.startswith("$"):
            sources.append(part)
        elif part.startswith("$stageVariables."):
            sources.append(stage.variables.get(part[len("$stageVariables.") :], ""))
        else:
            sources.append(_source(part[1:]))
    if all(isinstance(source, str) for source in sources):
        constant = "".join(sources)  # type: ignore[arg-type]
        return lambda exchange, response: constant

    def joined(exchange: Exchange, response: Response | None) -> str | None:
        return "".join(s if isinstance(s, str) else (s(exchange, response) or "") for s in sources)

    return joined


def _source(name: str) -> Source:
    """The look-up of one ``$`` reference (without its ``$``)."""
    kind, _, rest = name.partition(".")
    if kind == "request":
        where, _, key = rest.partition(".")
        if where == "header":
            lowered = key.lower().encode()
            return lambda exchange, response: exchange.request.headers.text(lowered)
        if where == "querystring":
            return lambda exchange, response: next(iter(exchange.request.query_values(key)), None)
        if where == "path" and key:
            return lambda exchange, response: exchange.path_params.get(key)
        return lambda exchange, response: exchange.request.path
    if kind == "response":
        if rest == "statuscode":
            return lambda exchange, response: str(response.status) if response is not None else None
        lowered = rest.partition(".")[2].lower().encode()
        return lambda exchange, response: _header_text(response, lowered)
    return _context(rest)


def _context(name: str) -> Source:
    simple: dict[str, Callable[[Exchange], Any]] = {
        "requestId": lambda exchange: exchange.request_id,
        "stage": lambda exchange: exchange.stage,
        "httpMethod": lambda exchange: exchange.method,
        "path": lambda exchange: exchange.request.decoded_path(),
        "identity.sourceIp": lambda exchange: exchange.request.remote,
        "identity.userAgent": lambda exchange: exchange.request.headers.text(b"user-agent"),
        "authorizer.principalId": lambda exchange: exchange.principal_id,
    }
    if name in simple:
        look = simple[name]
        return lambda exchange, response: _text(look(exchange))
    key = name.removeprefix("authorizer.").removeprefix("claims.")
    return lambda exchange, response: _text((exchange.claims or {}).get(key))


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else str(value)


def _header_text(response: Response | None, lowered: bytes) -> str | None:
    value = response.header_value(lowered) if response is not None else None
    return value.decode("utf-8", "replace") if value is not None else None
