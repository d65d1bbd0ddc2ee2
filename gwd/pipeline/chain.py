"""Assembles each route's chain of stages, once per (stage, route) at config load.

Order, outermost first, as the request meets them:

    resource policy / request limits -> authorization -> throttle and quota
    -> response cache -> integration -> response mapping

Route matching, request ids, error rendering and the access log wrap every
chain and live in :mod:`gwd.pipeline.gateway`.  Each stage is a module with
one builder, ``build(route, stage, resources, next_handler) -> Handler``, that
validates and precomputes what it needs and returns ``next_handler``
unchanged when the route does not use it, so an unused stage costs nothing
per request.  A new stage is one entry in ``MIDDLEWARE``.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

from gwd.config import HttpIntegration, MockIntegration, RouteConfig, StageConfig
from gwd.pipeline import apikeys, authorization, cache, mock, policy, proxy, throttle
from gwd.pipeline.resources import Resources
from gwd.pipeline.types import AtOnce, Handler

Middleware = Callable[[RouteConfig, StageConfig, Resources, Handler], Handler]

MIDDLEWARE: tuple[Middleware, ...] = (policy.build, authorization.build, apikeys.build, throttle.build, cache.build)
"""Stages that wrap the integration, outermost first (see the module docstring)."""


class RouteChain(NamedTuple):
    """One route's handler under one stage, and what answers its requests at once, if anything may."""

    handler: Handler
    at_once: AtOnce | None


def build_route_handler(route: RouteConfig, stage: StageConfig, resources: Resources) -> RouteChain:
    """The complete handler for one route served under one stage."""
    integration = route.integration
    if isinstance(integration, MockIntegration):
        handler = mock.build(integration, route.key, stage)
    elif isinstance(integration, HttpIntegration):
        handler = proxy.build(integration, route.key, stage, resources, authorization.injected_header_names(resources, route))
    else:  # config validation admits no other type
        raise TypeError(f"no integration builder for {type(integration).__name__}")
    cached = handler
    for middleware in reversed(MIDDLEWARE):
        handler = middleware(route, stage, resources, handler)
        if middleware is cache.build:
            cached = handler  # the integration, wrapped in the cache stage when the route caches
    # A fresh hit may skip the chain only when no stage before the cache applies to the route.
    at_once = cache.answer_at_once(route, stage, resources) if handler is cached else None
    return RouteChain(handler, at_once)
