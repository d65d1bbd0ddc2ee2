"""Gateway responses: the API's own status, headers and body for the errors gwd itself answers.

Every :class:`~gwd.pipeline.errors.GatewayError` names its AWS response
type (``THROTTLED``, ``INVALID_API_KEY``, ``INTEGRATION_TIMEOUT``, ...).
The config's ``[gateway_responses.TYPE]`` for that type is used, else the
one for the types it stands in for (``MISSING_AUTHENTICATION_TOKEN`` for
an unmatched route), else ``DEFAULT_4XX`` or ``DEFAULT_5XX`` by the
error's status; with none of them configured the error's own JSON body is
sent as ever.  A template sees ``$context.error.message``,
``.messageString`` (the message as a quoted JSON string),
``.responseType``, ``$context.requestId`` and the request's basics.
Everything but the render is looked up once per type at config load.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson

from gwd.config.model import ApiConfig, GatewayResponseConfig
from gwd.config.validation import RESPONSE_TYPES
from gwd.http.message import Response
from gwd.mapping.variables import UTIL
from gwd.mapping.vtl import MappingTemplate, RenderError
from gwd.pipeline.errors import GatewayError
from gwd.pipeline.exchange import Exchange

log = logging.getLogger("gwd.gateway")

STANDS_FOR = {"RESOURCE_NOT_FOUND": ("MISSING_AUTHENTICATION_TOKEN",)}
"""Types whose configuration also serves another one: AWS's REST APIs call an unmatched route MISSING_AUTHENTICATION_TOKEN."""
_JSON = b"Content-Type: application/json\r\n"


class _Configured:
    """One configured gateway response, compiled."""

    __slots__ = ("status", "header_lines", "template", "response_type")

    def __init__(self, config: GatewayResponseConfig) -> None:
        self.response_type = config.response_type
        self.status = config.status
        self.header_lines = b"".join(f"{name}: {value}\r\n".encode("latin-1") for name, value in config.headers)
        self.template = MappingTemplate(config.template.text, config.template.source) if config.template is not None else None


class GatewayResponses:
    """Renders gateway errors by an API's ``[gateway_responses]`` (None: the errors' own bodies)."""

    __slots__ = ("_by_type", "_stage_variables", "_any")

    def __init__(self, config: ApiConfig | None) -> None:
        entries = config.gateway_responses if config is not None else ()
        configured = {entry.response_type: _Configured(entry) for entry in entries}
        self._by_type: dict[tuple[str, bool], _Configured | None] = {}
        for response_type in RESPONSE_TYPES:
            for server_error in (False, True):
                choices = (response_type, *STANDS_FOR.get(response_type, ()), "DEFAULT_5XX" if server_error else "DEFAULT_4XX")
                self._by_type[response_type, server_error] = next((configured[c] for c in choices if c in configured), None)
        self._stage_variables = {stage.name: dict(stage.variables) for stage in config.stages} if config is not None else {}
        self._any = bool(configured)

    def render(self, error: GatewayError, exchange: Exchange) -> Response:
        """The client's response for ``error``: the configured one for its type, else the error's own."""
        configured = self._by_type.get((error.response_type, error.status >= 500)) if self._any else None
        if configured is None:
            return error.render()
        status = configured.status or error.status
        if configured.template is None:
            return Response(status, error.header_lines + configured.header_lines, error.body, close=error.close)
        try:
            body = configured.template.render(self._variables(error, exchange)).encode()
        except RenderError as exc:
            log.error("request %s: gateway response %s failed: %s", exchange.request_id, configured.response_type, exc)
            return error.render()
        return Response(status, _JSON + error.extra_lines + configured.header_lines, body, close=error.close)

    def _variables(self, error: GatewayError, exchange: Exchange) -> dict[str, Any]:
        message = str(error)
        request = exchange.request
        context = {
            "requestId": exchange.request_id,
            "extendedRequestId": exchange.request_id,
            "httpMethod": exchange.method,
            "path": request.decoded_path(),
            "resourcePath": exchange.route_key.partition(" ")[2] if " " in exchange.route_key else exchange.route_key,
            "stage": exchange.stage,
            "identity": {"sourceIp": request.remote, "userAgent": request.headers.text(b"user-agent")},
            "error": {"message": message, "messageString": orjson.dumps(message).decode(), "responseType": error.response_type},
        }
        return {"context": context, "stageVariables": self._stage_variables.get(exchange.stage, {}), "util": UTIL}
