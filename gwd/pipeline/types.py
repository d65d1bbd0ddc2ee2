"""The one contract every pipeline stage shares."""

from __future__ import annotations

from typing import Awaitable, Callable

from aiohttp import web

from gwd.pipeline.exchange import Exchange

Handler = Callable[[Exchange], Awaitable[web.StreamResponse]]
"""Serves an exchange: a stage does its part, then calls the next handler or raises GatewayError."""
