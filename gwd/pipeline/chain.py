"""Assembles each route's chain of stages, once per (stage, route) at config load.

Order, outermost first, as the request meets them:

    resource policy / request limits -> authorization -> throttle and quota
    -> response cache -> integration -> response mapping

Route matching, request ids, error rendering and the access log wrap every
chain and live in :mod:`gwd.pipeline.gateway`.  Each stage is a module with
one builder, ``build(route, stage, resources, next_handler) -> Handler``, that
validates and precomputes what it needs and returns ``next_handler``
unchanged when the route does not use it, so an unused stage costs nothing
per request.  A stage that needs no waiting returns what the next handler
returns (see :data:`gwd.pipeline.types.Handler`), so a chain of such stages
in front of a cache hit or a mock answers without a task.  A new stage is
one entry in ``MIDDLEWARE``.
"""

from __future__ import annotations

from typing import Callable

from gwd.config import HttpIntegration, MockIntegration, RouteConfig, StageConfig
from gwd.pipeline import apikeys, authorization, cache, mock, policy, proxy, throttle
from gwd.pipeline.resources import Resources
from gwd.pipeline.types import Handler

Middleware = Callable[[RouteConfig, StageConfig, Resources, Handler], Handler]

MIDDLEWARE: tuple[Middleware, ...] = (policy.build, authorization.build, apikeys.build, throttle.build, cache.build)
"""Stages that wrap the integration, outermost first (see the module docstring)."""


def build_route_handler(route: RouteConfig, stage: StageConfig, resources: Resources) -> Handler:
    """The complete handler for one route served under one stage."""
    integration = route.integration
    if isinstance(integration, MockIntegration):
        handler = mock.build(integration, route.key, stage)
    elif isinstance(integration, HttpIntegration):
        handler = proxy.build(integration, route.key, stage, resources, authorization.injected_header_names(resources, route))
    else:  # config validation admits no other type
        raise TypeError(f"no integration builder for {type(integration).__name__}")
    for middleware in reversed(MIDDLEWARE):
        handler = middleware(route, stage, resources, handler)
    return handler
