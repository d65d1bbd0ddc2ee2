"""A backend in a process of its own (so a test can SIGKILL it): answers every request with its port, after a delay.

    python tests/target_backend.py PORT [DELAY_SECONDS [HEALTH_STATUS]]

``GET /healthz`` answers HEALTH_STATUS (200 by default) at once, and
``GET /health-checks`` how many health checks came: ``{"checks": N}``.
"""

from __future__ import annotations

import asyncio
import sys

from aiohttp import web


async def main(port: int, delay: float, health_status: int) -> None:
    checks = 0

    async def answer(request: web.BaseRequest) -> web.Response:
        nonlocal checks
        if request.path == "/healthz":
            checks += 1
            return web.Response(status=health_status, text="health")
        if request.path == "/health-checks":
            return web.json_response({"checks": checks})
        if delay:
            await asyncio.sleep(delay)
        return web.json_response({"port": port})

    runner = web.ServerRunner(web.Server(answer))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    print("ready", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    arguments = sys.argv[1:] + ["0", "200"][len(sys.argv) - 2 :]
    asyncio.run(main(int(arguments[0]), float(arguments[1]), int(arguments[2])))
