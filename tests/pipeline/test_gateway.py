"""The pipeline entry in-process: unexpected exceptions become a clean 500, logged with the request id."""

from __future__ import annotations

import asyncio
import logging

import aiohttp
from aiohttp.test_utils import RawTestServer

from gwd.buckets import BucketTable
from gwd.config import load_config
from gwd.pipeline import chain
from gwd.pipeline.gateway import Gateway


async def _fetch_with_failing_integration(monkeypatch) -> tuple[int, bytes, str]:
    async def broken(exchange):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(chain.mock, "build", lambda integration, key, stage: broken)
    gateway = Gateway(load_config(None), access_log=None, buckets=BucketTable(64))
    server = RawTestServer(gateway.handle, host="127.0.0.1")
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(server.make_url("/hello"), headers={"X-Request-Id": "boom-1"}) as response:
                return response.status, await response.read(), response.headers["X-Request-Id"]
    finally:
        await server.close()


def test_unexpected_exception_is_a_500_without_traceback(monkeypatch, caplog):
    caplog.set_level(logging.ERROR, logger="gwd.pipeline")
    status, body, request_id = asyncio.run(_fetch_with_failing_integration(monkeypatch))
    assert status == 500
    assert body == b'{"message":"Internal Server Error"}'
    assert request_id == "boom-1"
    assert b"secret" not in body and b"Traceback" not in body
    logged = [r for r in caplog.records if r.name == "gwd.pipeline"]
    assert logged and "boom-1" in logged[0].getMessage()
    assert logged[0].exc_info and "secret internals" in str(logged[0].exc_info[1])
