"""Mapping: what makes an integration non-proxy, by AWS's REST API rules.

Innermost of the stages, right around the integration.  On the way in, the
request's body is read whole and, when a request template matches its
media type (``Content-Type``, ``application/json`` when absent), replaced
by the template's output; ``passthrough_behavior`` decides what happens to
a body no template matches (passed through, or ``415``).
``$context.requestOverride.header/querystring/path`` set in the template
change the integration's request.  On the way out, the integration's
answer picks an integration response: the first whose
``selection_pattern`` matches its whole status (or, for a function, the
``errorMessage`` it failed with), else the default one; that entry's
status, headers and response template (chosen by the client's
``Accept``) make the client's response, and
``$context.responseOverride`` in the template has the last word.

Everything is compiled when the route is built; a route without mapping
keys is not wrapped at all.  A template that fails to render answers
``500 {"message": "Internal server error"}`` with the reason in the
daemon log, as AWS does.
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
from functools import partial
from typing import Any, Awaitable, Callable, Iterator
from urllib.parse import urlencode

from gwd.config.model import IntegrationResponse, RouteConfig, StageConfig
from gwd.config.values import HEADER_NAME
from gwd.functions.events import rest_request_context
from gwd.http.message import BodyAborted, Headers, Request, Response, header_value, lines_without
from gwd.mapping.variables import UTIL, Input, Params
from gwd.mapping.vtl import MappingTemplate, RenderError
from gwd.pipeline.errors import BODY_TOO_LARGE, GatewayError, whole_body
from gwd.pipeline.exchange import Exchange
from gwd.pipeline.handler import Handler
from gwd.pipeline.resources import Resources

log = logging.getLogger("gwd.mapping")

UNSUPPORTED_MEDIA_TYPE = GatewayError(415, "Unsupported Media Type", response_type="UNSUPPORTED_MEDIA_TYPE")
TEMPLATE_FAILED = GatewayError(500, "Internal server error")
NO_VALID_ANSWER = GatewayError(502, "Bad Gateway", response_type="INTEGRATION_FAILURE")
NOT_BASE64 = GatewayError(400, "Bad Request", response_type="BAD_REQUEST_BODY")
MAX_ANSWER = 10 * 1024 * 1024
"""The most bytes of an integration's streamed answer read for its integration response."""
DEFAULT_MEDIA_TYPE = "application/json"


class _Selection:
    """One integration response, compiled."""

    __slots__ = ("pattern", "status", "templates", "literal_lines", "copied_headers", "content_handling")

    def __init__(self, entry: IntegrationResponse) -> None:
        self.pattern = re.compile(entry.selection_pattern, re.S) if entry.selection_pattern is not None else None
        self.status = entry.status
        self.content_handling = entry.content_handling
        self.templates = {media: MappingTemplate(source.text, source.source) for media, source in entry.templates}
        literal = [(name, value[1:-1]) for name, value in entry.headers if value.startswith("'")]
        self.literal_lines = b"".join(f"{name}: {value}\r\n".encode("latin-1") for name, value in literal)
        prefix = len("integration.response.header.")
        self.copied_headers = [(name, value[prefix:].lower().encode()) for name, value in entry.headers if not value.startswith("'")]

    def template_for(self, accept: str | None) -> tuple[str, MappingTemplate] | None:
        """The response template the client's ``Accept`` names, else the first one."""
        if not self.templates:
            return None
        for part in (accept or "").split(","):
            media = part.partition(";")[0].strip().lower()
            if media in self.templates:
                return media, self.templates[media]
        media = next(iter(self.templates))
        return media, self.templates[media]


def build(route: RouteConfig, stage: StageConfig, resources: Resources, next_handler: Handler) -> Handler:
    """The route's handler with its request templates and integration responses around it (unwrapped without them)."""
    mapping = route.integration.mapping
    if mapping is None:
        return next_handler
    request_templates = {media: MappingTemplate(source.text, source.source) for media, source in mapping.request_templates}
    passthrough = mapping.passthrough_behavior
    refuse_unmatched = passthrough == "never" or (passthrough == "when_no_templates" and bool(request_templates))
    selections = [_Selection(entry) for entry in mapping.responses]
    matching = [selection for selection in selections if selection.pattern is not None]
    default = next((selection for selection in selections if selection.pattern is None), None)
    request_context = rest_request_context(route, stage, resources.authorizer_kind(route), resources.trusted_proxies)
    stage_variables = dict(stage.variables)
    max_body = resources.max_body
    content_handling = mapping.content_handling
    binary = resources.binary_types

    def mapped(exchange: Exchange) -> Response | Awaitable[Response]:
        """At once when the body is all here and nothing maps the response, else as a coroutine."""
        request = exchange.request
        if (request.content_length or 0) > max_body:
            raise BODY_TOO_LARGE
        body = request.body.take_complete() if request.has_body else b""
        if body is None:
            return read_then_map(exchange)
        return map_request(exchange, body)

    async def read_then_map(exchange: Exchange) -> Response:
        body = await whole_body(exchange.request, max_body)
        answer = map_request(exchange, body)
        return answer if isinstance(answer, Response) else await answer

    def map_request(exchange: Exchange, body: bytes) -> Response | Awaitable[Response]:
        request = exchange.request
        if content_handling is not None:
            body = _converted(body, content_handling, binary.matches(request.headers.text(b"content-type")), NOT_BASE64)
        params = partial(_params, exchange)
        context = _Context(request_context, exchange)
        names: dict[str, Any] = {"context": context, "stageVariables": stage_variables, "util": UTIL}
        media = request.media_type() or DEFAULT_MEDIA_TYPE
        template = request_templates.get(media)
        if template is not None:
            names["input"] = Input(body.decode("utf-8", "replace"), params)
            output = _render(exchange, template, names).encode()
            exchange.request = _overridden(exchange, request, output, context.override("requestOverride"))
        elif refuse_unmatched:
            raise UNSUPPORTED_MEDIA_TYPE
        else:
            exchange.request = request.with_body(body)
        answer = next_handler(exchange)
        if not selections:
            return answer
        return map_response(exchange, request, answer, names, params)

    async def map_response(
        exchange: Exchange, request: Request, answer: Response | Awaitable[Response], names: dict[str, Any], params: Callable[[], Params]
    ) -> Response:
        response = answer if isinstance(answer, Response) else await answer
        key = exchange.function_error if exchange.function_error is not None else str(response.status)
        selection = next((s for s in matching if s.pattern.fullmatch(key)), default)  # type: ignore[union-attr]
        if selection is None:
            return response
        return await _selected(exchange, request, response, selection, names, params)

    return mapped


_AT_HAND = {
    "requestId": lambda exchange: exchange.request_id,
    "extendedRequestId": lambda exchange: exchange.request_id,
    "httpMethod": lambda exchange: exchange.method,
    "stage": lambda exchange: exchange.stage,
}
"""``$context`` fields a plain template gets without the whole context being built."""


class _Context(dict):
    """``$context``: the REST request context, built when a template first looks into it (many never do).

    A plain template asking only for the fields in ``_AT_HAND`` never has it built.
    """

    __slots__ = ("_build", "_exchange")

    def __init__(self, build: Callable[[Exchange], dict[str, Any]], exchange: Exchange) -> None:
        super().__init__()
        self._build: Callable[[Exchange], dict[str, Any]] | None = build
        self._exchange = exchange

    def _fill(self) -> None:
        build, self._build = self._build, None
        if build is not None:
            self.update(build(self._exchange))
            self["responseOverride"] = {"status": None, "header": {}}
            self["requestOverride"] = {"header": {}, "querystring": {}, "path": {}}

    def override(self, name: str) -> dict[str, Any]:
        """``requestOverride`` or ``responseOverride`` as a template left it (empty when none looked into $context)."""
        return {} if self._build is not None else super().get(name) or {}

    def __getitem__(self, key: Any) -> Any:
        self._fill()
        return super().__getitem__(key)

    def get(self, key: Any, default: Any = None) -> Any:
        if self._build is not None:
            at_hand = _AT_HAND.get(key)
            if at_hand is not None:
                return at_hand(self._exchange)
            self._fill()
        return super().get(key, default)

    def __contains__(self, key: object) -> bool:
        self._fill()
        return super().__contains__(key)

    def __iter__(self) -> Iterator[Any]:
        self._fill()
        return super().__iter__()

    def __len__(self) -> int:
        self._fill()
        return super().__len__()

    def keys(self) -> Any:
        self._fill()
        return super().keys()

    def items(self) -> Any:
        self._fill()
        return super().items()

    def values(self) -> Any:
        self._fill()
        return super().values()


async def _selected(
    exchange: Exchange, request: Request, response: Response, selection: _Selection, names: dict[str, Any], params: Callable[[], Params]
) -> Response:
    """The client's response from the integration's, by one integration response."""
    status = selection.status or response.status
    lines = response.header_lines
    body = response.body
    chosen = selection.template_for(request.headers.text(b"accept"))
    if chosen is not None and (response.stream is not None or response.content_length == len(body)):
        body = await _whole(exchange, response)
        media, template = chosen
        names["input"] = Input(body.decode("utf-8", "replace"), params)
        body = _render(exchange, template, names).encode()
        lines = lines_without(lines, b"content-type") + f"Content-Type: {media}\r\n".encode()
        override = names["context"].override("responseOverride")
        if override.get("status") is not None:
            try:
                status = int(override["status"])
            except (TypeError, ValueError):
                status = 0
            if not 100 <= status <= 599:
                log.error("request %s: $context.responseOverride.status is not a status: %r", exchange.request_id, override["status"])
                raise TEMPLATE_FAILED
        for name, value in (override.get("header") or {}).items():
            lines = lines_without(lines, str(name).lower().encode()) + _header_line(str(name), value)
    elif response.stream is not None:
        body = await _whole(exchange, response)
    if selection.content_handling is not None and chosen is None:
        try:
            body = _converted(body, selection.content_handling, True, NO_VALID_ANSWER)
        except GatewayError:
            log.error("request %s: the integration's answer is not base64 (content_handling = convert_to_binary)", exchange.request_id)
            raise
    if selection.copied_headers:
        for name, source in selection.copied_headers:
            value = response.header_value(source)
            if value is not None:
                lines = lines_without(lines, name.lower().encode()) + name.encode("latin-1") + b": " + value + b"\r\n"
    if selection.literal_lines:
        lines += selection.literal_lines
    mapped = Response(status, lines, body)
    if response.stream is None and response.content_length != len(response.body) and chosen is None:
        mapped.content_length = response.content_length  # a HEAD answer: the length the body would have
    return mapped


async def _whole(exchange: Exchange, response: Response) -> bytes:
    """The integration's whole body, read from its stream when it streams."""
    source = response.stream
    if source is None:
        return response.body
    parts, size, complete = [], 0, False
    try:
        while (chunk := await source.read()) is not None:
            size += len(chunk)
            if size > MAX_ANSWER:
                log.error("request %s: the integration's answer passed %d bytes", exchange.request_id, MAX_ANSWER)
                raise NO_VALID_ANSWER
            parts.append(chunk)
        complete = True
    except BodyAborted:
        raise NO_VALID_ANSWER from None
    finally:
        source.close(complete)
    response.stream = None
    return b"".join(parts)


def _converted(body: bytes, handling: str, binary: bool, failure: GatewayError) -> bytes:
    """``content_handling``: bytes to base64 text (only for a binary body), or base64 text to bytes."""
    if handling == "convert_to_text":
        return base64.b64encode(body) if binary else body
    try:
        return base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        raise failure from None


def _render(exchange: Exchange, template: MappingTemplate, names: dict[str, Any]) -> str:
    try:
        return template.render(names)
    except RenderError as exc:
        log.error("request %s: mapping template failed: %s", exchange.request_id, exc)
        exchange.integration_error = "template"
        raise TEMPLATE_FAILED from None


def _params(exchange: Exchange) -> Params:
    """``$input.params()``: path parameters, the query string and headers, last value of each name."""
    request = exchange.request
    headers = {name.decode("latin-1"): value.decode("utf-8", "replace") for name, value in request.headers.lines}
    return Params(dict(exchange.path_params), dict(request.query_items()), headers)


def _overridden(exchange: Exchange, request: Request, body: bytes, override: dict[str, Any]) -> Request:
    """The integration's request: the template's output as its body, with ``$context.requestOverride`` applied."""
    header_override = override.get("header") or {}
    query_override = override.get("querystring") or {}
    for name, value in (override.get("path") or {}).items():
        exchange.path_params[str(name)] = str(value)
    headers = None
    if header_override:
        replaced = {str(name).lower().encode() for name in header_override}
        headers = Headers([(name, value) for name, value in request.headers.lines if name.lower() not in replaced])
        for name, value in header_override.items():
            if HEADER_NAME.match(str(name)):
                headers.add(str(name).encode("latin-1"), _header_value(value))
    query = None
    if query_override:
        items = [(k, v) for k, v in request.query_items() if k not in query_override]
        query = urlencode(items + [(str(k), str(v)) for k, v in query_override.items()])
    return request.with_body(body, headers, query)


def _header_value(value: Any) -> bytes:
    return header_value("" if value is None else str(value))


def _header_line(name: str, value: Any) -> bytes:
    """A header line a template asked for (none when its name is not a header name)."""
    return name.encode("latin-1") + b": " + _header_value(value) + b"\r\n" if HEADER_NAME.match(name) else b""
