from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator

import pytest
from support import Daemon, RedisServer


@pytest.fixture
def start_daemon(tmp_path: Path) -> Callable[..., Daemon]:
    """Start ``gwd run`` with a config text; every daemon started is stopped at teardown."""
    started: list[Daemon] = []

    def start(
        config: str | None,
        workers: int | None = 2,
        wait: bool = True,
        extra_args: tuple[str, ...] = (),
        listen: bool = True,
        nofile: int | None = None,
    ) -> Daemon:
        directory = tmp_path / f"daemon{len(started)}"
        directory.mkdir()
        daemon = Daemon(directory, config, workers=workers, extra_args=extra_args, listen=listen, nofile=nofile)
        started.append(daemon)
        return daemon.start(wait=wait)

    yield start
    for daemon in started:
        daemon.stop()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A real redis-server for the test, killed at teardown."""
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()
