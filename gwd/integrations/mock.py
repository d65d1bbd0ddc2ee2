"""Mock integration: a fixed response from config, with ``{param}`` substitution.

The body template is rendered against the stage's variables and split into
literal parts and parameter slots at config load, and the header lines are
encoded then; a request only joins parts.  A mock without ``delay`` answers
without waiting.  An optional ``delay`` simulates a slow backend.

A mock with request templates answers as AWS's mock integration does: the
template's output is JSON whose ``statusCode`` is the status (else the
configured one), for the route's integration responses to select by.
"""

from __future__ import annotations

import asyncio

import orjson

from gwd.config.model import MockIntegration, RouteConfig, StageConfig
from gwd.config.values import substitute_stage_variables
from gwd.http.message import Response
from gwd.pipeline.exchange import Exchange
from gwd.pipeline.handler import Handler
from gwd.pipeline.params import split_params
from gwd.pipeline.resources import Resources

DEFAULT_CONTENT_TYPE = b"Content-Type: application/octet-stream\r\n"
"""What a mock's body is said to be when its headers name no type."""


def build(route: RouteConfig, stage: StageConfig, resources: Resources) -> Handler:
    """A handler answering every request with the configured response."""
    integration = route.integration
    assert isinstance(integration, MockIntegration)
    body = substitute_stage_variables(integration.body, stage)
    parts = split_params(body, route.key.param_names)
    status = integration.status
    lines = b"".join(f"{name}: {value}\r\n".encode("latin-1") for name, value in integration.headers)
    if not any(name.lower() == "content-type" for name, _ in integration.headers):
        lines += DEFAULT_CONTENT_TYPE
    delay = integration.delay
    templated = integration.mapping is not None and bool(integration.mapping.request_templates)

    if len(parts) == 1 and not delay and not templated:
        constant = parts[0].encode()

        def respond_constant(exchange: Exchange) -> Response:
            return Response(status, lines, constant)

        return respond_constant

    def render(exchange: Exchange) -> Response:
        params = exchange.path_params
        # Odd indexes hold parameter names, even ones literal text.
        text = "".join(params[part] if i % 2 else part for i, part in enumerate(parts))
        return Response(_chosen_status(exchange, status) if templated else status, lines, text.encode())

    if not delay:
        return render

    async def respond_later(exchange: Exchange) -> Response:
        await asyncio.sleep(delay)
        return render(exchange)

    return respond_later


def _chosen_status(exchange: Exchange, configured: int) -> int:
    """The ``statusCode`` of the request template's output (all here, as the mapping stage left it), else ``configured``."""
    body = exchange.request.body.take_complete()
    try:
        chosen = orjson.loads(body).get("statusCode") if body else None
    except (orjson.JSONDecodeError, AttributeError):
        chosen = None
    return chosen if type(chosen) is int and 100 <= chosen <= 599 else configured
