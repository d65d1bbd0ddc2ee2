"""Assembles each route's chain of stages, once per (stage, route) at config load.

Order, outermost first, as the request meets them:

    resource policy / request limits -> authorization -> throttle and quota
    -> response cache -> integration -> response mapping

Route matching, request ids, error rendering and the access log wrap every
chain and live in :mod:`gwd.pipeline.gateway`.  Each stage is a module with
one builder, ``build(route, stage, next_handler) -> Handler``, that
validates and precomputes what it needs and returns ``next_handler``
unchanged when the route does not use it, so an unused stage costs nothing
per request.  A new stage is one entry in ``MIDDLEWARE``.
"""

from __future__ import annotations

from typing import Callable

from gwd.config import Config, HttpIntegration, MockIntegration, RouteConfig, StageConfig
from gwd.pipeline import mock, proxy
from gwd.pipeline.types import Handler
from gwd.pipeline.upstream import UpstreamPools

Middleware = Callable[[RouteConfig, StageConfig, Handler], Handler]

MIDDLEWARE: tuple[Middleware, ...] = ()
"""Stages that wrap the integration, outermost first (see the module docstring)."""


def build_route_handler(route: RouteConfig, stage: StageConfig, config: Config, pools: UpstreamPools) -> Handler:
    """The complete handler for one route served under one stage.

    ``pools`` holds the worker's backend connections, shared by every route.
    """
    integration = route.integration
    if isinstance(integration, MockIntegration):
        handler = mock.build(integration, route.key, stage)
    elif isinstance(integration, HttpIntegration):
        handler = proxy.build(integration, route.key, stage, pools, config.server.trusted_proxies)
    else:  # config validation admits no other type
        raise TypeError(f"no integration builder for {type(integration).__name__}")
    for middleware in reversed(MIDDLEWARE):
        handler = middleware(route, stage, handler)
    return handler
