"""A worker process: one uvloop event loop serving the pipeline on its listening sockets.

This module joins the two halves of gwd: it takes a forked process from the
supervisor and runs the HTTP pipeline in it.  The supervisor never imports
it; the CLI hands :func:`run_worker` to the supervisor.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import socket

import uvloop
from setproctitle import setproctitle

from gwd.config.model import Address, Config
from gwd.http.refused import ConnectionCount, connection_limit
from gwd.http.server import HttpServer, Limits
from gwd.http.tlsaccept import TlsListener
from gwd.pipeline.gateway import Gateway
from gwd.stores.buckets import BucketTable
from gwd.stores.health import HealthTable
from gwd.stores.invocations import InvocationSlots
from gwd.supervisor import HANDLED_SIGNALS, QUICK_DRAIN_TIMEOUT, WORKER_BOOT_ERROR
from gwd.telemetry.accesslog import AccessLog
from gwd.tls import choose_by_name, listener_context

log = logging.getLogger("gwd.worker")

PARENT_CHECK_INTERVAL = 0.25
HEARTBEAT_INTERVAL = 1.0
"""How often a worker tells the supervisor its loop runs (more often when ``worker_timeout`` is short)."""
DRAIN_GRACE = 1.0
"""While draining, how long keep-alive connections are still served (with ``Connection: close``)
before idle ones are closed, and how long a just-accepted connection has to send its request."""
ORPHAN_DRAIN_TIMEOUT = 1.0


def run_worker(
    config: Config,
    listeners: dict[Address, socket.socket],
    slot: int,
    ready_fd: int,
    supervisor_pid: int,
    *,
    buckets: BucketTable,
    invocations: InvocationSlots,
    health: HealthTable,
) -> int:
    """Serve until told to stop; return the process's exit code.

    Writes one byte to ``ready_fd`` once it accepts connections, then one
    byte a heartbeat while the event loop runs.  ``buckets`` (the throttle
    table), ``invocations`` (running function invocations and upstream
    requests) and ``health`` (upstream targets' health) are the shared
    tables the CLI created before the supervisor forked.
    """
    setproctitle(f"gwd: worker {slot}")
    # Reloading and resizing are the supervisor's job; a worker must not die
    # (or stop, SIGTTIN's default) of a signal sent to the whole group, nor of
    # a SIGUSR1 when it has no access log to reopen.
    for signum in (signal.SIGHUP, signal.SIGTTIN, signal.SIGTTOU, signal.SIGUSR1):
        signal.signal(signum, signal.SIG_IGN)
    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    worker = Worker(config, listeners, supervisor_pid, buckets, invocations, health)
    try:
        # One run of the loop from start to exit: uvloop listens for signals
        # only while it runs, and one that came between two runs would wait
        # there until the next signal.
        return loop.run_until_complete(worker.run(slot, ready_fd))
    finally:
        loop.close()


def _beat(loop: asyncio.AbstractEventLoop, fd: int, interval: float) -> None:
    """Write a heartbeat byte now and every ``interval``: it comes only from a loop that runs."""
    try:
        os.write(fd, b"H")
    except BlockingIOError:
        pass  # the supervisor is behind reading; the bytes already queued say the same
    except BrokenPipeError:
        return  # the supervisor is gone, and the parent check drains this worker
    loop.call_later(interval, _beat, loop, fd, interval)


class Worker:
    """Serves one config on its listening sockets (its slot's own, or ones shared with its siblings)."""

    __slots__ = (
        "_config",
        "_listeners",
        "_supervisor_pid",
        "_access_log",
        "_gateway",
        "_server",
        "_listening",
        "_stop",
        "_drain_timeout",
        "_buckets",
        "_invocations",
        "_health",
    )

    def __init__(
        self,
        config: Config,
        listeners: dict[Address, socket.socket],
        supervisor_pid: int,
        buckets: BucketTable,
        invocations: InvocationSlots,
        health: HealthTable,
    ) -> None:
        self._config = config
        self._buckets = buckets
        self._invocations = invocations
        self._health = health
        self._listeners = listeners
        self._supervisor_pid = supervisor_pid
        self._access_log: AccessLog | None = None
        self._gateway: Gateway | None = None
        self._server: HttpServer | None = None
        self._listening: list[asyncio.AbstractServer | TlsListener] = []
        self._stop: asyncio.Event | None = None
        self._drain_timeout = config.server.drain_timeout

    async def run(self, slot: int, ready_fd: int) -> int:
        """Start, say so down ``ready_fd``, beat, serve until drained; the exit code."""
        try:
            await self.start()
        except Exception:
            log.exception("worker %d failed to start", slot)
            return WORKER_BOOT_ERROR
        # Everything built so far lives as long as the worker: keep the cyclic
        # collector from rescanning it on every full collection (+5% req/s proxying).
        gc.collect()
        gc.freeze()
        os.write(ready_fd, b"R")
        timeout = self._config.server.worker_timeout
        if timeout:
            os.set_blocking(ready_fd, False)
            _beat(asyncio.get_running_loop(), ready_fd, min(HEARTBEAT_INTERVAL, timeout / 5))
        else:
            os.close(ready_fd)
        await self.serve_until_drained()
        return 0

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, self.request_stop, self._config.server.drain_timeout)
        quick = min(QUICK_DRAIN_TIMEOUT, self._config.server.drain_timeout)
        loop.add_signal_handler(signal.SIGINT, self.request_stop, quick)
        # SIGQUIT also comes from the kernel when the supervisor dies (see gwd.supervisor).
        loop.add_signal_handler(signal.SIGQUIT, self._check_parent, quick)
        if self._config.log.access != "off":
            self._access_log = AccessLog(self._config.log.access)
            loop.add_signal_handler(signal.SIGUSR1, self._access_log.reopen)
        # The supervisor forked this process with its signals blocked: a stop
        # sent meanwhile is delivered now, to the handlers above.
        signal.pthread_sigmask(signal.SIG_UNBLOCK, HANDLED_SIGNALS)
        self._gateway = Gateway(self._config, self._access_log, self._buckets, self._invocations, self._health)
        server_config = self._config.server
        tls = server_config.tls
        context = listener_context(tls.cert, tls.key, tls.client_ca, tls.client_auth) if tls is not None else None
        if context is not None and any(domain.tls is not None for domain in self._config.domains):
            # The listener's client-certificate rules hold whichever certificate a domain presents.
            named = {
                domain.name: listener_context(domain.tls.cert, domain.tls.key, tls.client_ca, tls.client_auth)
                for domain in self._config.domains
                if domain.tls is not None
            }
            choose_by_name(context, named)
        limits = Limits(
            server_config.header_timeout, server_config.keepalive_timeout, server_config.body_timeout, server_config.max_body
        )
        self._server = server = HttpServer(limits, ConnectionCount(connection_limit(server_config.max_connections)))
        for address, listener in self._listeners.items():
            # A socket of this worker's own takes connections from here on; a shared one takes this config's backlog.
            listener.listen(server_config.backlog)
            factory = server.factory(self._gateway.entry(address))
            if context is None:
                self._listening.append(await loop.create_server(factory, sock=listener, backlog=server_config.backlog))
            else:
                self._listening.append(TlsListener(listener, factory, context, server_config.header_timeout))
        loop.call_later(PARENT_CHECK_INTERVAL, self._check_parent)

    def request_stop(self, drain_timeout: float) -> None:
        assert self._stop is not None
        if not self._stop.is_set():
            self._drain_timeout = drain_timeout
            self._stop.set()

    def _check_parent(self, quit_drain_timeout: float | None = None) -> None:
        """Leave with the supervisor: an orphan would hold the port with nobody managing it.

        Called every ``PARENT_CHECK_INTERVAL`` and on SIGQUIT, which is
        either a quick stop or the kernel saying the supervisor died.
        """
        assert self._stop is not None
        if self._stop.is_set():
            return  # already draining
        if os.getppid() != self._supervisor_pid:
            log.warning("supervisor %d is gone; draining and exiting", self._supervisor_pid)
            self.request_stop(min(ORPHAN_DRAIN_TIMEOUT, self._drain_timeout))
        elif quit_drain_timeout is not None:
            self.request_stop(quit_drain_timeout)
        else:
            asyncio.get_running_loop().call_later(PARENT_CHECK_INTERVAL, self._check_parent)

    async def serve_until_drained(self) -> None:
        """Serve until a stop is requested, then drain.

        Stop accepting; for a short grace keep serving connections, each
        response closing its connection; then close idle connections, give
        in-flight requests the rest of the drain timeout, and cancel what is
        left.
        """
        assert self._stop is not None and self._gateway is not None and self._server is not None
        await self._stop.wait()
        self._gateway.draining()
        server = self._server
        for listening in self._listening:
            listening.close()
        server.start_draining()
        loop = asyncio.get_running_loop()
        drain_deadline = loop.time() + self._drain_timeout
        grace_deadline = loop.time() + min(DRAIN_GRACE, self._drain_timeout)
        while server.connections and loop.time() < grace_deadline:
            await asyncio.sleep(0.05)
        server.close_idle()
        while server.busy() and loop.time() < drain_deadline:
            await asyncio.sleep(0.05)
        server.abort_all()
        server.close()
        await self._gateway.close()
        if self._access_log is not None:
            self._access_log.close()
