"""The one contract every pipeline stage shares."""

from __future__ import annotations

from typing import Awaitable, Callable, Union

from gwd.http.message import Response
from gwd.pipeline.exchange import Exchange

Handler = Callable[[Exchange], Union[Response, Awaitable[Response]]]
"""Serves an exchange: a stage does its part, then calls the next handler or raises GatewayError.

A handler that needs no waiting returns the :class:`Response` itself (a
cache hit, a mock, a refusal), so the request is answered without a task;
one that must wait returns an awaitable of it.  A stage that only looks at
the request before the next handler returns what the next handler
returned, whichever it is.
"""
