"""The one contract every pipeline stage shares."""

from __future__ import annotations

from typing import TYPE_CHECKING, Awaitable, Callable

from aiohttp import web

from gwd.pipeline.exchange import Exchange

if TYPE_CHECKING:
    from gwd.pipeline.passthrough import PassThroughResponse

Handler = Callable[[Exchange], Awaitable[web.StreamResponse]]
"""Serves an exchange: a stage does its part, then calls the next handler or raises GatewayError."""

AtOnce = Callable[[Exchange], "PassThroughResponse | None"]
"""Answers an exchange without awaiting anything (a fresh cache hit), or declines with None."""
