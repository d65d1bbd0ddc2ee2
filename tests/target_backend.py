"""A backend in a process of its own (so a test can SIGKILL it): answers every request with its port, after a delay.

    python tests/target_backend.py PORT [DELAY_SECONDS]
"""

from __future__ import annotations

import asyncio
import sys

from aiohttp import web


async def main(port: int, delay: float) -> None:
    async def answer(request: web.BaseRequest) -> web.Response:
        if delay:
            await asyncio.sleep(delay)
        return web.json_response({"port": port})

    runner = web.ServerRunner(web.Server(answer))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    print("ready", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), float(sys.argv[2]) if len(sys.argv) > 2 else 0.0))
