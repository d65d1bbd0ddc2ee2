"""The throttle stage counts refusals per stage, route and reason, for the metrics endpoint."""

from __future__ import annotations

import asyncio

from gwd.config.model import ClientLimit, Limit, MockIntegration, RouteConfig, StageConfig
from gwd.config.values import parse_route_key
from gwd.http.message import Headers, Request
from gwd.http.upstream import UpstreamPools
from gwd.integrations import mock
from gwd.pipeline.errors import GatewayError
from gwd.pipeline.exchange import Exchange
from gwd.pipeline.resources import Resources
from gwd.stages import throttle
from gwd.stores.buckets import BucketTable
from gwd.stores.limiters import MemoryLimiter


async def _run() -> tuple[list[int], Resources]:
    route = RouteConfig(
        parse_route_key("GET /x"),
        MockIntegration(200, (("content-type", "application/json"),), "{}", 0.0),
        throttle=Limit(0.001, 3),
        client_throttle=ClientLimit(0.001, 2, "header:X-Client"),
    )
    stage = StageConfig("$default", {})
    resources = Resources(UpstreamPools(1), MemoryLimiter(BucketTable(64)), (), None, {}, max_body=1024, body_timeout=5.0, api="pets")
    handler = throttle.build(route, stage, resources, mock.build(route, stage, resources))

    statuses = []
    for client in (b"a", b"a", b"a", b"b", b"b"):
        request = Request("GET", b"/x", "1.1", Headers([(b"Host", b"gwd"), (b"X-Client", client)]))
        try:
            # Memory buckets and a mock: the chain answers without waiting.
            statuses.append(handler(Exchange(request, "id", False, 0.0, 0.0)).status)
        except GatewayError as error:
            statuses.append(error.status)
    return statuses, resources


def test_refusals_are_counted_by_reason():
    statuses, resources = asyncio.run(_run())
    # Client a: 2 pass, the third is refused by its own bucket. Client b: 1 passes
    # (the route's burst of 3 is then spent), the next is refused by the route.
    assert statuses == [200, 200, 429, 200, 429]
    assert resources.throttled == {("pets", "$default", "GET /x", "client"): 1, ("pets", "$default", "GET /x", "route"): 1}
