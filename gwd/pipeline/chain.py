"""Assembles each route's handler, once per (stage, route) at config load.

The integration answers; the stages wrap it, outermost first, in the order
the request meets them:

    compression -> resource policy / request limits -> authorization -> API key
    -> throttle and quota -> request validation -> response cache -> mapping
    -> parameter mapping -> integration

What a stage and an integration promise is written in :mod:`gwd.stages`
and :mod:`gwd.integrations`.  Route matching, request ids, error rendering,
the access log and metrics wrap every chain, in :mod:`gwd.pipeline.gateway`.
"""

from __future__ import annotations

from typing import Callable

from gwd.config.model import AwsIntegration, FunctionIntegration, HttpIntegration, MockIntegration, RouteConfig, StageConfig
from gwd.integrations import aws, function, mock, proxy
from gwd.pipeline.handler import Handler
from gwd.pipeline.resources import Resources
from gwd.stages import apikeys, authorization, cache, compression, mapping, parameters, policy, throttle, validation

Stage = Callable[[RouteConfig, StageConfig, Resources, Handler], Handler]
Integration = Callable[[RouteConfig, StageConfig, Resources], Handler]

STAGES: tuple[Stage, ...] = (
    compression.build, policy.build, authorization.build, apikeys.build, throttle.build, validation.build, cache.build, mapping.build,
    parameters.build,
)
"""The stages that wrap the integration, outermost first."""

INTEGRATIONS: dict[type, Integration] = {
    MockIntegration: mock.build,
    HttpIntegration: proxy.build,
    FunctionIntegration: function.build,
    AwsIntegration: aws.build,
}
"""Each integration's builder, by the type of its config."""


def build_route_handler(route: RouteConfig, stage: StageConfig, resources: Resources) -> Handler:
    """The complete handler for one route served under one stage."""
    handler = INTEGRATIONS[type(route.integration)](route, stage, resources)
    for wrap in reversed(STAGES):
        handler = wrap(route, stage, resources, handler)
    return handler
