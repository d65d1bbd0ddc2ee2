"""The pre-fork supervisor: the listening sockets, N worker processes, signals.

It knows processes, sockets and config files, and nothing of HTTP: what a
worker does is the ``run_worker`` callable it is given.

Signal handlers only queue the signal; the main loop does the work.

- SIGTERM: stop accepting, let workers drain (``drain_timeout``), exit 0.
- SIGINT, SIGQUIT: the same, with at most 1 s for in-flight requests.
- SIGHUP: re-read the config; if it is valid, start a new generation of
  workers and, once every one of them accepts, drain the old generation.
  If it is invalid, log why and keep serving the old config.
- SIGUSR1: forwarded to workers, which reopen their access log files.
- SIGTTIN, SIGTTOU: one worker more, one fewer (until the next reload).

A worker that dies is replaced at once; one that keeps dying young is
restarted with exponentially growing delays, so a broken deployment does
not become a fork storm.  A serving worker killed by a signal is replaced
at once unless that keeps happening.  A worker whose event loop is stuck is
not dead, so each worker also writes a heartbeat byte down its pipe; one
silent for ``worker_timeout`` is killed and replaced.  The kernel sends a
worker SIGQUIT when the supervisor dies.
"""

from __future__ import annotations

import ctypes
import logging
import os
import resource
import select
import signal
import socket
import sys
import time
import traceback
from dataclasses import dataclass, field
from typing import Callable, Protocol

from setproctitle import setproctitle

from gwd.config.model import Address, Config, ConfigError
from gwd.sdnotify import activated_sockets, notify, watchdog_interval
from gwd.sockets import Listeners

log = logging.getLogger("gwd.supervisor")

STABLE_AFTER = 10.0
"""A worker that lived this long before dying restarts without delay."""
REPEATED_KILLS = 3
KILLS_WINDOW = 60.0
"""A serving worker killed by a signal restarts without delay, unless that happened REPEATED_KILLS times in KILLS_WINDOW s."""
BACKOFF_FIRST = 0.5
BACKOFF_MAX = 30.0
KILL_MARGIN = 2.0
"""Seconds past a worker's drain timeout before it is killed outright."""
QUICK_DRAIN_TIMEOUT = 1.0
"""The drain SIGINT and SIGQUIT ask for, of supervisor and workers alike (at most ``server.drain_timeout``)."""
BOOT_TIMEOUT = 60.0
"""How long a new worker has to start accepting: longer, a reload is abandoned and a first worker killed."""
WORKER_BOOT_ERROR = 3
"""Exit code a worker uses when it cannot start (see :mod:`gwd.worker`)."""
PR_SET_PDEATHSIG = 1
"""prctl(2): the signal a process gets when its parent dies."""
HANDLED_SIGNALS = (
    signal.SIGTERM,
    signal.SIGINT,
    signal.SIGQUIT,
    signal.SIGHUP,
    signal.SIGUSR1,
    signal.SIGCHLD,
    signal.SIGTTIN,
    signal.SIGTTOU,
)
"""The signals the supervisor queues; a new worker starts with them blocked and at their default actions."""


class WorkerMain(Protocol):
    """Runs a worker in the forked child and returns its exit code.

    It is called with :data:`HANDLED_SIGNALS` blocked and at their default
    actions, so a signal sent to the new process waits until the worker
    unblocks them, once it handles them itself.
    """

    def __call__(
        self, config: Config, listeners: dict[Address, socket.socket], slot: int, ready_fd: int, supervisor_pid: int
    ) -> int: ...


class Service(Protocol):
    """Something the supervisor's loop also drives, such as the admin listener: it gets sockets ready to use."""

    def readable(self) -> list[int]: ...

    def writable(self) -> list[int]: ...

    def next_deadline(self) -> float | None: ...

    def on_readable(self, fd: int) -> None: ...

    def on_writable(self, fd: int) -> None: ...

    def expire(self, now: float) -> None: ...

    def close(self) -> None: ...


class Events(Protocol):
    """What the supervisor reports as it happens (the metrics count it)."""

    def worker_exited(self, pid: int, restarted_because: str | None) -> None: ...

    def workers_ready(self, count: int) -> None: ...

    def reloaded(self, succeeded: bool) -> None: ...


@dataclass(slots=True, eq=False)
class Generation:
    """The workers started for one loaded config."""

    number: int
    config: Config
    listeners: Listeners
    started_at: float
    workers: int
    """How many workers to keep: the config's count, changed by SIGTTIN and SIGTTOU."""
    failures: dict[int, int] = field(default_factory=dict)
    kills: dict[int, list[float]] = field(default_factory=dict)
    """When each slot's serving workers were killed by a signal, within the last KILLS_WINDOW."""
    respawn_at: dict[int, float] = field(default_factory=dict)
    announced_ready: bool = False


@dataclass(slots=True, eq=False)
class WorkerProcess:
    pid: int
    slot: int
    generation: Generation
    started_at: float
    ready_fd: int
    heard_at: float
    """When the worker last wrote down its pipe (its readiness byte or a heartbeat)."""
    ready: bool = False
    kill_at: float | None = None
    stuck: bool = False


class Supervisor:
    """Runs workers for a config and keeps them running until told to stop."""

    def __init__(
        self,
        config: Config,
        load_config: Callable[[], Config],
        run_worker: WorkerMain,
        events: Events | None = None,
    ) -> None:
        self._load_config = load_config
        self._run_worker = run_worker
        self._events = events
        self._services: list[Service] = []
        self._ready_workers = -1
        self._reloads = 0
        self._watchdog_interval = watchdog_interval()
        self._watchdog_due = 0.0
        _raise_descriptor_limit()
        # With socket activation, systemd's socket serves server.listen (it stays open across restarts).
        activated = activated_sockets()
        inherited = {config.server.listen: activated[0]} if activated else {}
        server = config.server
        listeners = Listeners(config.listen_addresses, server.backlog, server.reuse_port, server.workers, inherited=inherited)
        self._current = Generation(1, config, listeners, time.monotonic(), server.workers)
        self._generations = 1
        """Generations started so far: a reload superseded before it completed still used its number."""
        self._pending: Generation | None = None
        self._workers: dict[int, WorkerProcess] = {}
        self._signals: list[int] = []
        self._stopping = False
        self._wakeup_read, self._wakeup_write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    def add_service(self, service: Service) -> None:
        """Drive ``service`` from the main loop until the supervisor exits (then close it)."""
        self._services.append(service)

    @property
    def config(self) -> Config:
        """The config being served (the last one a reload accepted)."""
        return self._current.config

    @property
    def ready(self) -> bool:
        """Every worker of the config being served accepts connections, and no stop is under way."""
        generation = self._current
        ready = sum(1 for w in self._workers.values() if w.generation is generation and w.ready and w.kill_at is None)
        return not self._stopping and ready == generation.workers

    def run(self) -> int:
        """The main loop; returns the exit code once every worker is gone."""
        setproctitle(f"gwd: supervisor {self._current.config.source}")
        self._install_signal_handlers()
        server = self._current.config.server
        scheme = "https" if server.tls is not None else "http"
        log.info(
            "listening on %s with %d worker(s) (config %s, pid %d)",
            ", ".join(f"{scheme}://{address}" for address in self._current.listeners.addresses),
            server.workers,
            self._current.config.source,
            os.getpid(),
        )
        while True:
            self._handle_signals()
            self._reap_workers()
            now = time.monotonic()
            self._kill_overdue_workers(now)
            self._kill_stuck_workers(now)
            if self._stopping:
                if not self._workers:
                    break
            else:
                self._spawn_due_workers(now)
                self._announce_readiness()
                self._advance_reload(now)
                self._ping_watchdog(now)
            self._report_ready_workers()
            self._wait(self._next_deadline(now) - now)
        for service in self._services:
            service.close()
        log.info("all workers exited; bye")
        return 0

    def _report_ready_workers(self) -> None:
        if self._events is None:
            return
        count = sum(1 for w in self._workers.values() if w.ready and w.kill_at is None)
        if count != self._ready_workers:
            self._ready_workers = count
            self._events.workers_ready(count)

    # Signals

    def _install_signal_handlers(self) -> None:
        signal.set_wakeup_fd(self._wakeup_write)
        for signum in HANDLED_SIGNALS:
            signal.signal(signum, self._queue_signal)

    def _queue_signal(self, signum: int, frame: object) -> None:
        self._signals.append(signum)

    def _handle_signals(self) -> None:
        while self._signals:
            signum = self._signals.pop(0)
            if signum == signal.SIGTERM:
                self._stop(self._current.config.server.drain_timeout, signal.SIGTERM)
            elif signum in (signal.SIGINT, signal.SIGQUIT):
                self._stop(min(QUICK_DRAIN_TIMEOUT, self._current.config.server.drain_timeout), signum)
            elif signum == signal.SIGHUP:
                self._reload()
            elif signum == signal.SIGUSR1:
                log.info("SIGUSR1: telling workers to reopen their log files")
                self._signal_workers(list(self._workers.values()), signal.SIGUSR1)
            elif signum == signal.SIGTTIN:
                self._resize(+1)
            elif signum == signal.SIGTTOU:
                self._resize(-1)

    # Workers

    def _spawn_worker(self, generation: Generation, slot: int) -> None:
        try:
            listeners = generation.listeners.for_slot(slot)
        except OSError as exc:
            log.error("cannot start worker %d: %s", slot, exc)
            self._schedule_respawn(generation, slot, time.monotonic(), lived=0.0)
            return
        ready_read, ready_write = os.pipe2(os.O_CLOEXEC)
        os.set_blocking(ready_read, False)
        supervisor_pid = os.getpid()
        # Blocked across the fork: until the child has handlers of its own, a
        # signal sent to it would run the supervisor's handler there and be lost.
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED_SIGNALS)
        try:
            pid = os.fork()
        except OSError as exc:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            os.close(ready_read)
            os.close(ready_write)
            log.error("cannot fork worker %d: %s", slot, exc)
            self._schedule_respawn(generation, slot, time.monotonic(), lived=0.0)
            return
        if pid == 0:
            os.close(ready_read)
            self._become_worker(generation, slot, listeners, ready_write, supervisor_pid)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        os.close(ready_write)
        now = time.monotonic()
        self._workers[pid] = WorkerProcess(pid, slot, generation, now, ready_read, heard_at=now)
        generation.respawn_at.pop(slot, None)
        log.info("started worker %d (pid %d, generation %d)", slot, pid, generation.number)

    def _become_worker(
        self, generation: Generation, slot: int, listeners: dict[Address, socket.socket], ready_fd: int, supervisor_pid: int
    ) -> None:
        """In the forked child: drop the supervisor's state, run the worker, never return."""
        code = WORKER_BOOT_ERROR
        try:
            signal.set_wakeup_fd(-1)
            for signum in HANDLED_SIGNALS:
                signal.signal(signum, signal.SIG_DFL)
            _stop_quickly_when_orphaned(supervisor_pid)
            for service in self._services:
                service.close()  # the admin listener is the supervisor's alone
            os.close(self._wakeup_read)
            os.close(self._wakeup_write)
            for worker in self._workers.values():
                if worker.ready_fd >= 0:
                    os.close(worker.ready_fd)
            # Only its own: a sibling's socket held open here would keep taking connections after that sibling is gone.
            own = {id(sock) for sock in listeners.values()}
            for held in (self._current, self._pending):
                for sock in held.listeners if held is not None else ():
                    if id(sock) not in own:
                        sock.close()
            code = self._run_worker(generation.config, listeners, slot, ready_fd, supervisor_pid)
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)

    def _spawn_due_workers(self, now: float) -> None:
        generation = self._current
        running = {w.slot for w in self._workers.values() if w.generation is generation and w.kill_at is None}
        for slot in range(1, generation.workers + 1):
            if slot not in running and generation.respawn_at.get(slot, 0.0) <= now:
                self._spawn_worker(generation, slot)

    def _announce_readiness(self) -> None:
        """Say once when the first generation is fully up: the moment a service is "started"."""
        generation = self._current
        if generation.announced_ready:
            return
        ready = sum(1 for w in self._workers.values() if w.generation is generation and w.ready)
        if ready == generation.workers:
            generation.announced_ready = True
            log.info("ready: %d worker(s) accepting connections", ready)
            notify("READY=1", self._status())

    def _status(self) -> str:
        generation = self._current
        return f"STATUS={generation.workers} workers, config {generation.config.source}, {self._reloads} reloads"

    def _ping_watchdog(self, now: float) -> None:
        """WATCHDOG=1 while the loop runs and every worker that should be up is."""
        if self._watchdog_interval is None or now < self._watchdog_due or self._stopping:
            return
        self._watchdog_due = now + self._watchdog_interval
        generation = self._current
        up = sum(1 for w in self._workers.values() if w.generation is generation and w.ready and w.kill_at is None)
        if up == generation.workers:
            notify("WATCHDOG=1")

    def _reap_workers(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            # waitpid(-1) reaps any child; only workers are tracked.
            worker = self._workers.pop(pid, None)
            if worker is not None:
                self._worker_exited(worker, status)

    def _worker_exited(self, worker: WorkerProcess, status: int) -> None:
        if worker.ready_fd >= 0:
            self._read_ready(worker)
            if worker.ready_fd >= 0:
                os.close(worker.ready_fd)
                worker.ready_fd = -1
        reason = _describe_exit(status)
        now = time.monotonic()
        generation = worker.generation
        if self._events is not None:
            if worker.stuck:
                restarted_because: str | None = "timeout"
            elif worker.kill_at is None and not self._stopping and generation is self._current:
                restarted_because = _restart_reason(status)
            else:
                restarted_because = None
            self._events.worker_exited(worker.pid, restarted_because)
        if worker.kill_at is not None or self._stopping:
            log.info("worker %d (pid %d) %s", worker.slot, worker.pid, reason)
        elif generation is self._pending:
            log.error("new worker %d (pid %d) %s before the reload completed; reload abandoned", worker.slot, worker.pid, reason)
            self._abandon_reload(now)
            self._report_reload(False)
        elif generation is self._current:
            lived = now - worker.started_at
            if worker.ready and os.WIFSIGNALED(status) and self._killed_rarely(generation, worker.slot, now):
                # Killed from outside (an operator, the OOM killer): not a crash loop, however young.
                lived = max(lived, STABLE_AFTER)
            delay = self._schedule_respawn(generation, worker.slot, now, lived)
            if delay:
                # Until the restart the slot's own sockets would only queue connections nobody takes.
                pending = self._pending.listeners if self._pending else None
                generation.listeners.release_slot(worker.slot, keep=pending, returning=True)
            log.warning(
                "worker %d (pid %d) %s after %.1fs; restarting it %s",
                worker.slot,
                worker.pid,
                reason,
                now - worker.started_at,
                f"in {delay:g}s" if delay else "now",
            )

    def _killed_rarely(self, generation: Generation, slot: int, now: float) -> bool:
        """Note a kill of ``slot``'s worker; whether it is fewer than REPEATED_KILLS in KILLS_WINDOW."""
        kills = [at for at in generation.kills.get(slot, []) if now - at < KILLS_WINDOW]
        kills.append(now)
        generation.kills[slot] = kills
        return len(kills) < REPEATED_KILLS

    def _schedule_respawn(self, generation: Generation, slot: int, now: float, lived: float) -> float:
        failures = 1 if lived >= STABLE_AFTER else generation.failures.get(slot, 0) + 1
        generation.failures[slot] = failures
        delay = 0.0 if failures == 1 else min(BACKOFF_FIRST * 2 ** (failures - 2), BACKOFF_MAX)
        generation.respawn_at[slot] = now + delay
        return delay

    def _retire(self, workers: list[WorkerProcess], signum: int, drain_timeout: float, now: float) -> None:
        """Ask workers to drain and exit; kill them if they are still there after the drain timeout."""
        for worker in workers:
            deadline = now + drain_timeout + KILL_MARGIN
            worker.kill_at = deadline if worker.kill_at is None else min(worker.kill_at, deadline)
        self._signal_workers(workers, signum)

    def _signal_workers(self, workers: list[WorkerProcess], signum: int) -> None:
        for worker in workers:
            try:
                os.kill(worker.pid, signum)
            except ProcessLookupError:
                pass  # exited; the reaper will see it

    def _kill_overdue_workers(self, now: float) -> None:
        for worker in self._workers.values():
            if worker.kill_at is not None and now >= worker.kill_at:
                log.warning("worker %d (pid %d) did not finish draining in time; killing it", worker.slot, worker.pid)
                worker.kill_at = float("inf")
                self._signal_workers([worker], signal.SIGKILL)

    def _not_listening_since(self, then: float) -> None:
        """The supervisor read no heartbeats since ``then`` (loading a config, which imports handlers): that silence is its own."""
        deaf = time.monotonic() - then
        for worker in self._workers.values():
            worker.heard_at += deaf

    def _kill_stuck_workers(self, now: float) -> None:
        """SIGKILL a worker silent too long: past ``worker_timeout`` once ready, :data:`BOOT_TIMEOUT` before."""
        for worker in self._workers.values():
            if worker.kill_at is not None:
                continue  # already leaving, on its own deadline
            timeout = worker.generation.config.server.worker_timeout if worker.ready else BOOT_TIMEOUT
            if timeout and now - worker.heard_at > timeout:
                log.error(
                    "worker %d (pid %d) sent no heartbeat for %.1fs (its event loop is stuck%s); killing it",
                    worker.slot,
                    worker.pid,
                    now - worker.heard_at,
                    "" if worker.ready else " starting up",
                )
                worker.stuck = True
                worker.kill_at = float("inf")
                self._signal_workers([worker], signal.SIGKILL)

    def _read_ready(self, worker: WorkerProcess) -> None:
        """Read the worker's pipe: its first byte says it accepts connections, the later ones are heartbeats."""
        try:
            data = os.read(worker.ready_fd, 4096)
        except BlockingIOError:
            return
        if data:
            worker.ready = True
            worker.heard_at = time.monotonic()
        else:
            os.close(worker.ready_fd)
            worker.ready_fd = -1

    # Stop and reload

    def _stop(self, drain_timeout: float, signum: int) -> None:
        now = time.monotonic()
        if not self._stopping:
            log.info("%s: stopping; in-flight requests have %gs to finish", signal.Signals(signum).name, drain_timeout)
            notify("STOPPING=1")
            self._stopping = True
            for generation in (self._current, self._pending):
                if generation is not None:
                    generation.listeners.close()
        self._retire(list(self._workers.values()), signum, drain_timeout, now)

    def _reload(self) -> None:
        if self._stopping:
            return
        log.info("SIGHUP: reloading %s", self._current.config.source)
        notify("RELOADING=1", f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}")
        loading = time.monotonic()
        try:
            config = self._load_config()
        except ConfigError as exc:
            self._not_listening_since(loading)
            for problem in exc.problems:
                log.error("%s", problem)
            log.error("reload failed: the config above has errors; still serving the previous config")
            self._report_reload(False)
            return
        self._not_listening_since(loading)
        now = time.monotonic()
        if self._pending is not None:
            log.warning("a newer SIGHUP supersedes the reload in progress")
            self._abandon_reload(now)
        if config.server.reuse_port != self._current.config.server.reuse_port:
            log.error("reload failed: server.reuse_port changes only with a restart; still serving the previous config")
            self._report_reload(False)
            return
        server = config.server
        try:
            # Sockets on addresses (and slots) the old config listened on too are kept.
            listeners = Listeners(
                config.listen_addresses, server.backlog, server.reuse_port, server.workers, reusable=self._current.listeners
            )
        except OSError as exc:
            log.error("reload failed: %s; still serving the previous config", exc)
            self._report_reload(False)
            return
        self._generations += 1
        self._pending = Generation(self._generations, config, listeners, now, config.server.workers)
        for slot in range(1, config.server.workers + 1):
            self._spawn_worker(self._pending, slot)

    def _resize(self, change: int) -> None:
        """SIGTTIN/SIGTTOU: keep one worker more or fewer (never none) until the next reload."""
        if self._stopping:
            return
        generation = self._current
        if generation.workers + change < 1:
            log.warning("SIGTTOU: already down to one worker; keeping it")
            return
        generation.workers += change
        log.info(
            "%s: %s to %d worker(s)",
            "SIGTTIN" if change > 0 else "SIGTTOU",
            "growing" if change > 0 else "shrinking",
            generation.workers,
        )
        if change < 0:
            generation.respawn_at = {s: t for s, t in generation.respawn_at.items() if s <= generation.workers}
            surplus = [
                w
                for w in self._workers.values()
                if w.generation is generation and w.slot > generation.workers and w.kill_at is None
            ]
            self._retire(surplus, signal.SIGTERM, generation.config.server.drain_timeout, time.monotonic())
            pending = self._pending.listeners if self._pending else None
            generation.listeners.release_slot(generation.workers + 1, keep=pending)
        notify(self._status())

    def _report_reload(self, succeeded: bool) -> None:
        """A reload ended: the service manager hears it is ready again (on the new or the old config)."""
        if succeeded:
            self._reloads += 1
        notify("READY=1", self._status())
        if self._events is not None:
            self._events.reloaded(succeeded)

    def _advance_reload(self, now: float) -> None:
        pending = self._pending
        if pending is None:
            return
        workers = [w for w in self._workers.values() if w.generation is pending]
        if len(workers) == pending.workers and all(w.ready for w in workers):
            old = self._current
            pending.announced_ready = True
            self._current, self._pending = pending, None
            retiring = [w for w in self._workers.values() if w.generation is old]
            self._retire(retiring, signal.SIGTERM, old.config.server.drain_timeout, now)
            old.listeners.close_unshared(pending.listeners)
            setproctitle(f"gwd: supervisor {pending.config.source}")
            self._report_reload(True)
            log.info(
                "reload complete: generation %d (%d workers) serving %s; %d old workers draining",
                pending.number,
                len(workers),
                pending.config.source,
                len(retiring),
            )
        elif now - pending.started_at > BOOT_TIMEOUT:
            log.error("reload abandoned: new workers not ready after %gs", BOOT_TIMEOUT)
            self._abandon_reload(now)
            self._report_reload(False)

    def _abandon_reload(self, now: float) -> None:
        pending, self._pending = self._pending, None
        assert pending is not None
        workers = [w for w in self._workers.values() if w.generation is pending]
        self._retire(workers, signal.SIGTERM, pending.config.server.drain_timeout, now)
        pending.listeners.close_unshared(self._current.listeners)

    # Waiting

    def _next_deadline(self, now: float) -> float:
        deadlines = [now + 1.0]
        if self._watchdog_interval is not None:
            deadlines.append(self._watchdog_due)
        deadlines += [w.kill_at for w in self._workers.values() if w.kill_at is not None]
        if not self._stopping:
            deadlines += self._current.respawn_at.values()
        return max(now, min(deadlines))

    def _wait(self, timeout: float) -> None:
        """Sleep until a signal, a worker's readiness byte, a service's socket, or the timeout."""
        waiting = {w.ready_fd: w for w in self._workers.values() if w.ready_fd >= 0}
        readers: dict[int, Service] = {fd: service for service in self._services for fd in service.readable()}
        writers: dict[int, Service] = {fd: service for service in self._services for fd in service.writable()}
        deadlines = [d for d in (service.next_deadline() for service in self._services) if d is not None]
        if deadlines:
            timeout = max(0.0, min(timeout, min(deadlines) - time.monotonic()))
        try:
            readable, writable, _ = select.select([self._wakeup_read, *waiting, *readers], list(writers), [], timeout)
        except InterruptedError:
            return
        for fd in readable:
            if fd == self._wakeup_read:
                _drain_pipe(fd)
            elif fd in waiting:
                self._read_ready(waiting[fd])
            else:
                readers[fd].on_readable(fd)
        for fd in writable:
            writers[fd].on_writable(fd)
        now = time.monotonic()
        for service in self._services:
            service.expire(now)


def _stop_quickly_when_orphaned(supervisor_pid: int) -> None:
    """Have the kernel send this new worker SIGQUIT (a quick drain) the moment the supervisor dies, SIGKILL included."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGQUIT, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
    except (OSError, AttributeError) as exc:
        log.warning("cannot ask to be told of the supervisor's death (%s); the worker polls for it instead", exc)
        return
    if os.getppid() != supervisor_pid:  # it died before the request took hold
        os.kill(os.getpid(), signal.SIGQUIT)


def _raise_descriptor_limit() -> None:
    """Lift the soft limit on open files to the hard one (workers inherit it): each client may need two descriptors."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError) as exc:
            log.warning("cannot raise the open-files limit from %d to %d: %s", soft, hard, exc)


def _drain_pipe(fd: int) -> None:
    try:
        while os.read(fd, 4096):
            pass
    except BlockingIOError:
        pass


def _restart_reason(status: int) -> str:
    """A worker's death as a metric label: "signal", "boot_error" or "exit" ("timeout" is decided before)."""
    code = os.waitstatus_to_exitcode(status)
    if code < 0:
        return "signal"
    return "boot_error" if code == WORKER_BOOT_ERROR else "exit"


def _describe_exit(status: int) -> str:
    """Why a worker ended, in words."""
    code = os.waitstatus_to_exitcode(status)
    if code == 0:
        return "exited"
    if code == WORKER_BOOT_ERROR:
        return "failed to start (see its error above)"
    if code > 0:
        return f"exited with code {code}"
    name = signal.Signals(-code).name
    if name == "SIGKILL":
        return "was killed by SIGKILL (perhaps out of memory)"
    return f"was killed by {name}"
