"""Mock integration: a fixed response from config, with ``{param}`` substitution.

The body template is rendered against the stage's variables and split into
literal parts and parameter slots at config load; a request only joins
parts.  An optional ``delay`` simulates a slow backend.
"""

from __future__ import annotations

import asyncio
import re

from aiohttp import web

from gwd.config import STAGE_VARIABLE, MockIntegration, RouteKey, StageConfig
from gwd.pipeline.exchange import Exchange
from gwd.pipeline.types import Handler


def build(integration: MockIntegration, key: RouteKey, stage: StageConfig) -> Handler:
    """A handler answering every request with the configured response."""
    body = STAGE_VARIABLE.sub(lambda m: stage.variables[m.group(1)], integration.body)
    parts = _split_template(body, key.param_names)
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


def _split_template(body: str, param_names: tuple[str, ...]) -> list[str]:
    """``"a {x} b"`` -> ``["a ", "x", " b"]``: only the route's own parameters are slots.

    Other braces (JSON objects) are left as they are.
    """
    if not param_names:
        return [body]
    pattern = re.compile("\\{(" + "|".join(re.escape(name) for name in param_names) + ")\\}")
    return pattern.split(body)
