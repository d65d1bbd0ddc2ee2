"""Mock integration: a fixed response from config, with ``{param}`` substitution.

The body template is rendered against the stage's variables and split into
literal parts and parameter slots at config load; a request only joins
parts.  An optional ``delay`` simulates a slow backend.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from gwd.config import MockIntegration, RouteKey, StageConfig, substitute_stage_variables
from gwd.pipeline.exchange import Exchange
from gwd.pipeline.templates import split_params
from gwd.pipeline.types import Handler


def build(integration: MockIntegration, key: RouteKey, stage: StageConfig) -> Handler:
    """A handler answering every request with the configured response."""
    body = substitute_stage_variables(integration.body, stage)
    parts = split_params(body, key.param_names)
    status = integration.status
    headers = integration.headers
    delay = integration.delay

    if len(parts) == 1 and not delay:
        constant = parts[0].encode()

        async def respond_constant(exchange: Exchange) -> web.StreamResponse:
            return web.Response(status=status, body=constant, headers=headers)

        return respond_constant

    async def respond_templated(exchange: Exchange) -> web.StreamResponse:
        if delay:
            await asyncio.sleep(delay)
        params = exchange.path_params
        # Odd indexes hold parameter names, even ones literal text.
        text = "".join(params[part] if i % 2 else part for i, part in enumerate(parts))
        return web.Response(status=status, body=text.encode(), headers=headers)

    return respond_templated

