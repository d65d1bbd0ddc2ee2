"""A real HTTP server for authorizer tests: answers each request with a handler's JSON, counting requests."""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Callable

import orjson
from aiohttp import web
from support import free_port


class JsonServer:
    """``handler(request body as JSON or None) -> (status, JSON document)``, served on 127.0.0.1 in a thread."""

    def __init__(self, handler: Callable[[Any], tuple[int, Any]], delay: float = 0.0) -> None:
        self.handler = handler
        self.delay = delay
        self.port = free_port()
        self.requests: list[Any] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    @property
    def fetches(self) -> int:
        return len(self.requests)

    def __enter__(self) -> JsonServer:
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("JSON server did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def _run(self, ready: threading.Event) -> None:
        self._loop = asyncio.new_event_loop()
        self._loop.run_until_complete(self._serve(ready))

    async def _serve(self, ready: threading.Event) -> None:
        self._stop = asyncio.Event()
        runner = web.ServerRunner(web.Server(self._handle))
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", self.port).start()
        ready.set()
        await self._stop.wait()
        await runner.cleanup()

    async def _handle(self, request: web.BaseRequest) -> web.Response:
        body = await request.read()
        document = orjson.loads(body) if body else None
        self.requests.append(document)
        if self.delay:
            await asyncio.sleep(self.delay)
        status, answer = self.handler(document)
        return web.Response(status=status, body=orjson.dumps(answer), content_type="application/json")


class JwksServer(JsonServer):
    """Serves ``key_set()`` (called on every fetch, so a test can rotate keys)."""

    def __init__(self, key_set: Callable[[], dict]) -> None:
        super().__init__(lambda _: (200, key_set()))
