"""Active health checks of upstream targets: run by one worker of the daemon, their results read by all.

Every worker ticks every ``TICK`` seconds.  The worker leading the
:class:`~gwd.stores.health.HealthTable` (the first to take its lock; the
kernel frees it when that worker exits, and a draining worker gives it up)
sends each checked target a ``GET`` of its upstream's path once per
``interval``, counts consecutive passes and failures, and writes a
target's state when a threshold turns it.  Every worker copies the states
into its balancers, so a target the checker finds unhealthy stops getting
requests within one tick of the result, in every worker.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time

from gwd.config.model import HealthCheck, UpstreamConfig, UpstreamTarget
from gwd.http.balancer import Balancer
from gwd.http.upstream import client_tls
from gwd.stores.health import HEALTHY, UNHEALTHY, HealthTable, target_row_name

log = logging.getLogger("gwd.health")

TICK = 0.25
"""Seconds between two looks at the table (and, for the leader, at which checks are due)."""


class _Checked:
    """One target of one upstream under active checks."""

    __slots__ = ("upstream", "target", "index", "check", "row", "passes", "failures", "due", "running", "context", "server_name")

    def __init__(self, upstream: UpstreamConfig, index: int, check: HealthCheck, table: HealthTable) -> None:
        self.upstream = upstream.name
        self.target: UpstreamTarget = upstream.targets[index]
        self.index = index
        self.check = check
        self.row = table.row(target_row_name(upstream.name, str(self.target), check.path))
        self.passes = 0
        self.failures = 0
        self.due = 0.0  # time.monotonic() of the next check
        self.running = False
        self.context, self.server_name = client_tls(upstream.scheme, self.target.host, upstream.tls)


class HealthChecker:
    """A worker's part in the daemon's active health checks."""

    __slots__ = ("_table", "_balancers", "_checked", "_handle", "_tasks")

    def __init__(self, upstreams: tuple[UpstreamConfig, ...], table: HealthTable, balancers: dict[str, Balancer]) -> None:
        self._table = table
        self._balancers = balancers
        self._checked = [
            _Checked(upstream, index, upstream.health, table)
            for upstream in upstreams
            if upstream.health is not None
            for index in range(len(upstream.targets))
        ]
        self._tasks: set[asyncio.Task[None]] = set()
        self._handle: asyncio.TimerHandle | None = asyncio.get_running_loop().call_soon(self._tick) if self._checked else None

    def _tick(self) -> None:
        self._handle = asyncio.get_running_loop().call_later(TICK, self._tick)
        now = time.monotonic()
        if self._table.lead():
            for checked in self._checked:
                if not checked.running and now >= checked.due:
                    checked.running = True
                    checked.due = now + checked.check.interval
                    task = asyncio.get_running_loop().create_task(self._check(checked))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
        for checked in self._checked:
            self._balancers[checked.upstream].set_unhealthy(checked.index, self._table.state(checked.row) == UNHEALTHY)

    async def _check(self, checked: _Checked) -> None:
        try:
            passed, why = await _probe(checked)
        finally:
            checked.running = False
        state = self._table.state(checked.row)
        check = checked.check
        if passed:
            checked.passes, checked.failures = checked.passes + 1, 0
            if state != HEALTHY and checked.passes >= check.healthy_threshold:
                self._table.set(checked.row, HEALTHY, time.time(), why)
                if state == UNHEALTHY:
                    log.warning("upstream %s: target %s is healthy again", checked.upstream, checked.target)
        else:
            checked.passes, checked.failures = 0, checked.failures + 1
            if state != UNHEALTHY and checked.failures >= check.unhealthy_threshold:
                self._table.set(checked.row, UNHEALTHY, time.time(), why)
                log.warning("upstream %s: target %s is unhealthy: %s", checked.upstream, checked.target, why)

    def stop(self) -> None:
        """Stop checking and let another worker lead (this one drains)."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        for task in self._tasks:
            task.cancel()
        self._table.step_down()


async def _probe(checked: _Checked) -> tuple[bool, str]:
    """One check: (passed, why not)."""
    target, check = checked.target, checked.check
    host = f"[{target.host}]" if ":" in target.host else target.host
    try:
        async with asyncio.timeout(check.timeout):
            reader, writer = await asyncio.open_connection(
                target.host, target.port, ssl=checked.context, server_hostname=checked.server_name
            )
            try:
                writer.write(
                    f"GET {check.path} HTTP/1.1\r\nHost: {host}:{target.port}\r\nUser-Agent: gwd-health\r\n"
                    "Connection: close\r\n\r\n".encode()
                )
                line = await reader.readline()
            finally:
                writer.close()
    except TimeoutError:
        return False, f"no answer within {check.timeout:g}s"
    except (OSError, ssl.SSLError) as exc:
        return False, str(exc) or type(exc).__name__
    parts = line.split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
        return False, "not an HTTP response"
    status = int(parts[1])
    return status in check.expect_status, f"status {status}"
