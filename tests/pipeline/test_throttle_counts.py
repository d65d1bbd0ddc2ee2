"""The throttle stage counts refusals per stage, route and reason, for the metrics endpoint."""

from __future__ import annotations

import asyncio

import aiohttp
from aiohttp.test_utils import RawTestServer

from gwd.buckets import BucketTable
from gwd.config import ClientLimit, Limit, MockIntegration, RouteConfig, StageConfig, parse_route_key
from gwd.pipeline import mock, throttle
from gwd.pipeline.errors import GatewayError
from gwd.pipeline.exchange import Exchange
from gwd.pipeline.limiters import MemoryLimiter
from gwd.pipeline.resources import Resources
from gwd.pipeline.upstream import UpstreamPools


async def _run() -> tuple[list[int], Resources]:
    route = RouteConfig(
        parse_route_key("GET /x"),
        MockIntegration(200, (("content-type", "application/json"),), "{}", 0.0),
        throttle=Limit(0.001, 3),
        client_throttle=ClientLimit(0.001, 2, "header:X-Client"),
    )
    stage = StageConfig("$default", {})
    resources = Resources(UpstreamPools(1), MemoryLimiter(BucketTable(64)), (), None, {})
    handler = throttle.build(route, stage, resources, mock.build(route.integration, route.key, stage))

    async def serve(request):
        try:
            url = request.rel_url
            exchange = Exchange(
                request.method, request.headers, request.version, url, url.raw_path, request.remote, "id", False, False
            )
            exchange.request = request
            return await handler(exchange)
        except GatewayError as error:
            return error.render()

    server = RawTestServer(serve, host="127.0.0.1")
    await server.start_server()
    statuses = []
    async with aiohttp.ClientSession() as session:
        for client in ("a", "a", "a", "b", "b"):
            async with session.get(server.make_url("/x"), headers={"X-Client": client}) as response:
                statuses.append(response.status)
    await server.close()
    return statuses, resources


def test_refusals_are_counted_by_reason():
    statuses, resources = asyncio.run(_run())
    # Client a: 2 pass, the third is refused by its own bucket. Client b: 1 passes
    # (the route's burst of 3 is then spent), the next is refused by the route.
    assert statuses == [200, 200, 429, 200, 429]
    assert resources.throttled == {("$default", "GET /x", "client"): 1, ("$default", "GET /x", "route"): 1}
