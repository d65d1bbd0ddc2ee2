"""Mock integration: a fixed response from config, with ``{param}`` substitution.

The body template is rendered against the stage's variables and split into
literal parts and parameter slots at config load, and the header lines are
encoded then; a request only joins parts.  A mock without ``delay`` answers
without waiting.  An optional ``delay`` simulates a slow backend.
"""

from __future__ import annotations

import asyncio

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

    if len(parts) == 1 and not delay:
        constant = parts[0].encode()

        def respond_constant(exchange: Exchange) -> Response:
            return Response(status, lines, constant)

        return respond_constant

    def render(exchange: Exchange) -> Response:
        params = exchange.path_params
        # Odd indexes hold parameter names, even ones literal text.
        text = "".join(params[part] if i % 2 else part for i, part in enumerate(parts))
        return Response(status, lines, text.encode())

    if not delay:
        return render

    async def respond_later(exchange: Exchange) -> Response:
        await asyncio.sleep(delay)
        return render(exchange)

    return respond_later
