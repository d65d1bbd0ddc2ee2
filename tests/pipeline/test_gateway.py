"""The pipeline entry in-process: unexpected exceptions become a clean 500, logged with the request id."""

from __future__ import annotations

import asyncio
import logging

from gwd.config.model import MockIntegration
from gwd.config.reader import load_config
from gwd.http.message import Headers, Request, Response
from gwd.pipeline import chain
from gwd.pipeline.gateway import Gateway
from gwd.stores.buckets import BucketTable
from gwd.stores.health import HealthTable
from gwd.stores.invocations import InvocationSlots


async def _answer_with_failing_integration(monkeypatch) -> Response:
    async def broken(exchange):
        raise RuntimeError("secret internals")

    monkeypatch.setitem(chain.INTEGRATIONS, MockIntegration, lambda route, stage, resources: broken)
    config = load_config(None)
    gateway = Gateway(config, access_log=None, buckets=BucketTable(64), invocations=InvocationSlots(), health=HealthTable())
    try:
        entry = gateway.entry(config.listen_addresses[0])
        request = Request("GET", b"/hello", "1.1", Headers([(b"Host", b"gwd"), (b"X-Request-Id", b"boom-1")]))
        answer = entry.respond(request)
        assert not isinstance(answer, Response)  # the integration is a coroutine: answered later
        return await answer
    finally:
        await gateway.close()


def test_unexpected_exception_is_a_500_without_traceback(monkeypatch, caplog):
    caplog.set_level(logging.ERROR, logger="gwd.pipeline")
    response = asyncio.run(_answer_with_failing_integration(monkeypatch))
    assert response.status == 500
    assert response.body == b'{"message":"Internal Server Error"}'
    assert b"X-Request-Id: boom-1\r\n" in response.extra_lines
    assert b"secret" not in response.body and b"Traceback" not in response.body
    logged = [r for r in caplog.records if r.name == "gwd.pipeline"]
    assert logged and "boom-1" in logged[0].getMessage()
    assert logged[0].exc_info and "secret internals" in str(logged[0].exc_info[1])


async def _answer_mock() -> tuple[Response | object, Response | object]:
    config = load_config(None)
    gateway = Gateway(config, access_log=None, buckets=BucketTable(64), invocations=InvocationSlots(), health=HealthTable())
    try:
        entry = gateway.entry(config.listen_addresses[0])
        found = entry.respond(Request("GET", b"/hello", "1.1", Headers([(b"Host", b"gwd")])))
        unknown = entry.respond(Request("PROPFIND", b"/hello", "1.1", Headers([(b"Host", b"gwd")])))
        return found, unknown
    finally:
        await gateway.close()


def test_a_mock_answers_without_waiting_and_an_unknown_method_is_501():
    found, unknown = asyncio.run(_answer_mock())
    assert isinstance(found, Response) and found.status == 200
    assert b"Server: gwd\r\n" in found.extra_lines
    assert isinstance(unknown, Response) and unknown.status == 501
