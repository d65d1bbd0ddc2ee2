"""A real HTTP backend for proxy tests: an aiohttp server in a thread, recording what reached it."""

from __future__ import annotations

import asyncio
import hashlib
import ssl
import threading
from dataclasses import dataclass, field

from aiohttp import web
from multidict import CIMultiDict
from support import free_port


@dataclass
class Received:
    method: str
    raw_path: str
    headers: list[tuple[str, str]]
    body: bytes
    body_sha256: str
    body_length: int
    peer: tuple[str, int]
    client_cert_serial: str | None = None  # the client certificate's serial (hex) on a TLS backend that asks for one

    def header(self, name: str) -> str | None:
        values = [v for k, v in self.headers if k.lower() == name.lower()]
        return values[-1] if values else None

    def header_names(self) -> set[str]:
        return {k.lower() for k, _ in self.headers}


def pattern(n: int) -> bytes:
    """n deterministic, non-repeating-looking bytes."""
    block = bytes(range(256)) * 256
    return (block * (n // len(block) + 1))[:n]


@dataclass
class Backend:
    port: int = field(default_factory=free_port)
    received: list[Received] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    slow_started: list[str] = field(default_factory=list)  # /slow/ requests that reached the handler
    keep_body: bool = True
    ssl_context: ssl.SSLContext | None = None  # serve HTTPS with it

    def __enter__(self) -> Backend:
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("backend did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    @property
    def url(self) -> str:
        return f"{'https' if self.ssl_context else 'http'}://127.0.0.1:{self.port}"

    def _run(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._loop.run_until_complete(self._serve())

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        server = web.Server(self._handle, handler_cancellation=True)
        runner = web.ServerRunner(server)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", self.port, ssl_context=self.ssl_context).start()
        self._ready.set()
        await self._stop.wait()
        await runner.cleanup()

    async def _record(self, request: web.BaseRequest) -> Received:
        digest = hashlib.sha256()
        kept = bytearray()
        length = 0
        async for chunk in request.content.iter_any():
            digest.update(chunk)
            length += len(chunk)
            if self.keep_body:
                kept += chunk
        received = Received(
            request.method,
            request.raw_path,
            [(k, v) for k, v in request.headers.items()],
            bytes(kept),
            digest.hexdigest(),
            length,
            request.transport.get_extra_info("peername")[:2],
            (request.transport.get_extra_info("peercert") or {}).get("serialNumber"),
        )
        self.received.append(received)
        return received

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        path = request.path
        if path.startswith("/slow/"):
            self.slow_started.append(path)
            try:
                await asyncio.sleep(float(path.rsplit("/", 1)[1]))
            except asyncio.CancelledError:
                self.cancelled.append(path)
                raise
            return web.Response(text="slow done")
        received = await self._record(request)
        if path.startswith("/delayed/"):
            await asyncio.sleep(float(path.rsplit("/", 1)[1]))
            return web.json_response({"delayed": True})
        if path == "/with-headers":
            # ?h=Name:Value, repeatable: a response carrying those headers.
            headers = [tuple(item.split(":", 1)) for item in request.query.getall("h", ())]
            return web.Response(text="with headers", headers=CIMultiDict(headers))
        if path.startswith("/status/"):
            code = int(path.rsplit("/", 1)[1])
            headers = {"X-Backend": "yes"}
            if code in (301, 302):
                headers["Location"] = "http://127.0.0.1:1/elsewhere"
            return web.Response(status=code, headers=headers, body=None if code in (204, 304) else b"status body")
        if path == "/mirror":
            return web.Response(body=received.body, content_type="application/octet-stream")
        if path.startswith("/bytes/"):
            size = int(path.rsplit("/", 1)[1])
            response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
            response.content_length = size
            await response.prepare(request)
            await _write_pattern(response, size)
            await response.write_eof()
            return response
        if path.startswith("/chunked/"):
            size = int(path.rsplit("/", 1)[1])
            response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
            response.enable_chunked_encoding()
            await response.prepare(request)
            await _write_pattern(response, size)
            await response.write_eof()
            return response
        if path.startswith("/trickle/"):
            # 64 KiB pieces, one every 20 ms: a stream still under way when a client gives up on it.
            pieces = int(path.rsplit("/", 1)[1])
            response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
            response.enable_chunked_encoding()
            await response.prepare(request)
            for _ in range(pieces):
                await response.write(pattern(65536))
                await asyncio.sleep(0.02)
            await response.write_eof()
            return response
        if path == "/with-cors":
            # A backend with CORS headers of its own, which a gateway policy replaces.
            headers = {"Access-Control-Allow-Origin": "*", "Access-Control-Allow-Methods": "DELETE"}
            return web.json_response({"cors": "backend"}, headers=headers)
        if path == "/gzip":
            return web.Response(body=b"\x1f\x8b not really gzip", headers={"Content-Encoding": "gzip"})
        if path == "/hop-by-hop":
            return web.Response(
                text="ok",
                headers={"Connection": "X-Internal", "X-Internal": "secret", "Keep-Alive": "timeout=5", "X-Kept": "1"},
            )
        if path == "/upload-digest":
            return web.json_response({"length": received.body_length, "sha256": received.body_sha256})
        return web.json_response({"method": request.method, "path": request.raw_path})


async def _write_pattern(response: web.StreamResponse, size: int) -> None:
    block = pattern(65536)
    sent = 0
    while sent < size:
        piece = block[: min(len(block), size - sent)]
        await response.write(piece)
        sent += len(piece)
