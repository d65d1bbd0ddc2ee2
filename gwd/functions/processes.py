"""Runtime processes: a function's handler run by any program that speaks the Lambda Runtime API.

Each worker keeps, per function, a pool of processes running the
function's ``command`` (gwd's Python or Node.js bootstrap by default, AWS's
``awslambdaric`` or any custom runtime as a ``command``).
An invocation goes to a process waiting for work, else waits in the
worker's queue while a new process starts (up to ``max_instances``; each
start is a cold start).  A process that dies is replaced; the invocation it
held gets a 502.  One that runs past the timeout is killed (its invocation
gets the 504).  Processes beyond ``min_instances`` idle for
``idle_timeout`` are retired.  Processes die with their worker
(``setpriv --pdeathsig``, when util-linux has it), and a worker's exit
stops them.  What they print goes to the daemon's log, line by line, with
the function's name and the request id of the invocation they hold.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import shutil
import signal
import time
from typing import Any, Callable

import orjson

from gwd.config.model import FunctionIntegration
from gwd.functions.context import function_arn
from gwd.functions.python import FunctionFailed, FunctionTimedOut
from gwd.functions.responses import MalformedResponse
from gwd.functions.runtimeapi import MAX_PAYLOAD, RuntimeApi
from gwd.http.message import Response
from gwd.http.refused import ConnectionCount
from gwd.http.server import HttpServer, Limits

log = logging.getLogger("gwd.function")

NODE_BOOTSTRAP = os.path.join(os.path.dirname(__file__), "bootstrap.mjs")
"""gwd's Node.js runtime for ``.js``, ``.mjs`` and ``.cjs`` handlers."""
PYTHON_BOOTSTRAP = os.path.join(os.path.dirname(__file__), "bootstrap.py")
"""gwd's Python runtime for ``.py`` handlers in runtime processes."""
RETIRE_CHECK_INTERVAL = 1.0
STOP_GRACE = 2.0
"""How long a retired or stopped process has between SIGTERM and SIGKILL."""
CRASH_WINDOW = 5.0
CRASH_LIMIT = 3
"""Processes that die within CRASH_WINDOW of their start without asking for work, this many in a row: the queued invocations fail at once."""
_PDEATHSIG = shutil.which("setpriv")
_API_LIMITS = Limits(header_timeout=10.0, keepalive_timeout=3600.0, body_timeout=30.0, max_body=MAX_PAYLOAD)


class ProcessDied(Exception):
    """The runtime process holding the invocation exited, or could not start."""


class Invocation:
    """One request's event, waiting for a process or held by one."""

    __slots__ = ("request_id", "payload", "deadline_ms", "timeout", "trace_id", "answer", "process")

    def __init__(self, request_id: str, payload: bytes, timeout: float, trace_id: str) -> None:
        self.request_id = request_id
        self.timeout = timeout
        self.payload = payload
        self.deadline_ms = int((time.time() + timeout) * 1000)
        self.trace_id = trace_id
        self.answer: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self.process: RuntimeProcess | None = None


class RuntimeProcess:
    """One runtime process, its Runtime API listener, and the invocation it holds."""

    __slots__ = (
        "_pool", "_listener", "port", "_child", "current", "_waiter", "idle_since", "started", "pid", "_api_server", "_last_request_id",
        "asked", "_handed_back",
    )

    def __init__(self, pool: ProcessPool) -> None:
        self._pool = pool
        self._listener: asyncio.AbstractServer | None = None
        self._api_server: HttpServer | None = None
        self.port = 0
        self._child: asyncio.subprocess.Process | None = None
        self.pid = 0
        self.current: Invocation | None = None
        # Output is read apart from the Runtime API: a line that comes after its invocation's answer is still its.
        self._last_request_id: str | None = None
        self._waiter: asyncio.Future[Invocation] | None = None
        self.idle_since = time.monotonic()
        self.started = time.monotonic()
        self.asked = False  # it has asked for work: its runtime and handler loaded
        self._handed_back: asyncio.Future[Invocation] | None = None  # the offer already given to another process

    async def start(self, command: list[str], environment: dict[str, str], cwd: str) -> None:
        loop = asyncio.get_running_loop()
        self._api_server = server = HttpServer(_API_LIMITS, ConnectionCount(64))
        api = RuntimeApi(self)
        self._listener = await loop.create_server(server.factory(api), "127.0.0.1", 0)
        self.port = self._listener.sockets[0].getsockname()[1]
        env = {**os.environ, **environment, "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{self.port}"}
        if _PDEATHSIG is not None:
            command = [_PDEATHSIG, "--pdeathsig", "KILL", "--", *command]
        self._child = await asyncio.create_subprocess_exec(
            *command,
            cwd=cwd,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,  # a signal to the daemon's group is the worker's to pass on
        )
        self.pid = self._child.pid
        self.started = time.monotonic()

    async def output(self) -> None:
        """Log what the process prints, line by line, until it closes its output."""
        assert self._child is not None and self._child.stdout is not None
        name = self._pool.config.name
        while True:
            try:
                line = await self._child.stdout.readline()
            except ValueError:  # a line longer than the stream's limit: take it in pieces
                line = await self._child.stdout.read(65536)
            if not line:
                return
            held = self._last_request_id or f"runtime {self.pid}"
            log.info("%s %s: %s", name, held, line.decode("utf-8", "replace").rstrip("\n"))

    async def wait(self) -> int:
        assert self._child is not None
        return await self._child.wait()

    async def next_invocation(self) -> Response:
        """``GET .../invocation/next``: the next invocation, once there is one."""
        if not self.asked:
            self.asked = True
            self._pool.started_one()
        if self.current is not None:
            # Asking for more without answering: what it held will never be answered.
            self._settle(ProcessDied("the runtime asked for the next invocation without answering this one"))
        invocation = self._pool.queued()
        if invocation is None:
            self.idle_since = time.monotonic()
            self._waiter = waiter = asyncio.get_running_loop().create_future()
            self._pool.waiting(self)
            try:
                invocation = await waiter
            except asyncio.CancelledError:
                self._hand_back(waiter)  # the connection went just as an invocation was handed over
                raise
            finally:
                self._waiter = None
                self._pool.not_waiting(self)
        self.current = invocation
        self._last_request_id = invocation.request_id
        invocation.process = self
        lines = (
            b"Content-Type: application/json\r\n"
            b"Lambda-Runtime-Aws-Request-Id: %s\r\nLambda-Runtime-Deadline-Ms: %d\r\n"
            b"Lambda-Runtime-Invoked-Function-Arn: %s\r\nLambda-Runtime-Trace-Id: %s\r\n"
            % (invocation.request_id.encode(), invocation.deadline_ms, self._pool.arn, invocation.trace_id.encode())
        )
        return Response(200, lines, invocation.payload)

    def offer(self, invocation: Invocation) -> bool:
        """Hand ``invocation`` to this process if it is waiting for one."""
        waiter = self._waiter
        if waiter is None or waiter.done():
            return False
        waiter.set_result(invocation)
        return True

    def holds(self, request_id: str | None) -> bool:
        return self.current is not None and self.current.request_id == request_id

    def answered(self, body: bytes, failed: bool, error_type: str | None) -> None:
        """``POST .../response`` or ``.../error`` for the invocation held."""
        if failed:
            failure = _failure(body, error_type)
            held = self.current.request_id if self.current is not None else "-"
            log.error("%s %s: the handler failed: %s", self._pool.config.name, held, failure)
            self._settle(failure)
        else:
            invocation = self.current
            self.current = None
            if invocation is not None and not invocation.answer.done():
                invocation.answer.set_result(body)

    def answered_too_large(self, most: int) -> None:
        """An answer past the Runtime API's limit: the client gets a 502, as on AWS."""
        self._settle(MalformedResponse(f"the answer is larger than {most} bytes"))

    def init_failed(self, body: bytes) -> None:
        """``POST .../init/error``: the runtime cannot run the handler; it is stopped."""
        log.error("%s: runtime %d cannot start: %s", self._pool.config.name, self.pid, _failure(body, None))
        self.kill()

    def _settle(self, error: Exception) -> None:
        invocation = self.current
        self.current = None
        if invocation is not None and not invocation.answer.done():
            invocation.answer.set_exception(error)

    def exited(self, code: int) -> None:
        """The process is gone: what it held fails, its listener closes."""
        self._settle(ProcessDied(f"the runtime process exited ({_exit_description(code)})"))
        if self._waiter is not None:
            self._hand_back(self._waiter)
            self._waiter.cancel()
        self.close_listener()

    def _hand_back(self, waiter: asyncio.Future[Invocation]) -> None:
        """An invocation offered to this process that it will never take goes to another."""
        if waiter.done() and not waiter.cancelled() and waiter is not self._handed_back:
            self._handed_back = waiter
            invocation = waiter.result()
            if invocation.process is None and not invocation.answer.done():
                self._pool.dispatch(invocation)

    def close_listener(self) -> None:
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        if self._api_server is not None:
            self._api_server.abort_all()
            self._api_server.close()
            self._api_server = None

    def kill(self) -> None:
        if self._child is not None and self._child.returncode is None:
            try:
                self._child.kill()
            except ProcessLookupError:
                pass

    def terminate(self) -> None:
        if self._child is not None and self._child.returncode is None:
            try:
                self._child.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
            asyncio.get_running_loop().call_later(STOP_GRACE, self.kill)


class ProcessPool:
    """One function's runtime processes in one worker, and the invocations waiting for them."""

    def __init__(
        self,
        config: FunctionIntegration,
        command: list[str],
        environment: dict[str, str],
        min_instances: int,
        max_instances: int,
        idle_timeout: float,
        on_start: Callable[[], None],
    ) -> None:
        self.config = config
        self.arn = function_arn(config.name).encode()
        self._command = command
        self._environment = environment
        self._min = min_instances
        self._max = max_instances
        self._idle_timeout = idle_timeout
        self._on_start = on_start  # counts a cold start
        self._processes: list[RuntimeProcess] = []
        self._starting = 0
        self._idle: collections.deque[RuntimeProcess] = collections.deque()  # waiting for work, oldest first
        self._queue: collections.deque[Invocation] = collections.deque()
        self._crashes = 0  # processes in a row that died soon after starting
        self._closed = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._retire_handle: asyncio.TimerHandle | None = None

    def open(self) -> None:
        """Start the ``min_instances`` processes and the idle check (on the worker's running loop)."""
        loop = asyncio.get_running_loop()
        for _ in range(self._min):
            self._spawn()
        self._retire_handle = loop.call_later(RETIRE_CHECK_INTERVAL, self._retire_idle)

    async def invoke(self, event: dict[str, Any], request_id: str, trace_id: str) -> Any:
        """What the handler answered for ``event`` (decoded JSON); raises FunctionFailed, FunctionTimedOut or ProcessDied."""
        timeout = self.config.timeout
        invocation = Invocation(request_id, orjson.dumps(event), timeout, trace_id)
        self.dispatch(invocation)
        timer = asyncio.get_running_loop().call_later(timeout, _expire, invocation)
        try:
            body = await invocation.answer
        except FunctionTimedOut:
            self._abandon(invocation)
            raise
        except asyncio.CancelledError:
            self._abandon(invocation)
            raise
        finally:
            timer.cancel()
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            raise MalformedResponse(f"the runtime's answer is not JSON: {body[:60]!r}") from None

    def dispatch(self, invocation: Invocation) -> None:
        """Give ``invocation`` to a waiting process, else queue it (starting a process if one more may run)."""
        while self._idle:
            if self._idle.popleft().offer(invocation):
                return
        self._queue.append(invocation)
        if len(self._processes) + self._starting < self._max and self._starting < len(self._queue):
            self._spawn()

    def _abandon(self, invocation: Invocation) -> None:
        """The client stopped waiting (a timeout, or it went away): stop the process running it."""
        if invocation.process is not None and invocation.process.current is invocation:
            log.warning("%s %s: killing runtime %d", self.config.name, invocation.request_id, invocation.process.pid)
            invocation.process.kill()
        elif invocation in self._queue:
            self._queue.remove(invocation)

    def queued(self) -> Invocation | None:
        """The oldest invocation still waiting for a process, if any."""
        while self._queue:
            invocation = self._queue.popleft()
            if not invocation.answer.done():
                return invocation
        return None

    def started_one(self) -> None:
        self._crashes = 0  # a process got as far as asking for work

    def waiting(self, process: RuntimeProcess) -> None:
        self._idle.append(process)

    def not_waiting(self, process: RuntimeProcess) -> None:
        try:
            self._idle.remove(process)
        except ValueError:
            pass

    def _spawn(self) -> None:
        self._starting += 1
        task = asyncio.get_running_loop().create_task(self._run_process())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run_process(self) -> None:
        process = RuntimeProcess(self)
        try:
            await process.start(self._command, self._environment, self.config.code_dir)
        except OSError as exc:
            self._starting -= 1
            process.close_listener()
            log.error("%s: cannot start %s: %s", self.config.name, self._command[0], exc)
            self._crashed()
            return
        self._starting -= 1
        self._processes.append(process)
        self._on_start()
        output = asyncio.get_running_loop().create_task(process.output())
        code = await process.wait()
        await asyncio.wait([output], timeout=1.0)
        self._processes.remove(process)
        self.not_waiting(process)
        process.exited(code)
        if self._closed:
            return
        if code != 0 or process.current is not None:
            log.warning("%s: runtime %d %s", self.config.name, process.pid, _exit_description(code))
        if not process.asked and time.monotonic() - process.started < CRASH_WINDOW:
            self._crashed()
        if len(self._processes) + self._starting < max(self._min, min(self._max, len(self._queue))):
            self._spawn()

    def _crashed(self) -> None:
        """A process died before it asked for work: after a few in a row, fail what waits rather than loop."""
        self._crashes += 1
        if self._crashes < CRASH_LIMIT:
            return
        while self._queue:
            invocation = self._queue.popleft()
            if not invocation.answer.done():
                invocation.answer.set_exception(ProcessDied(f"{CRASH_LIMIT} runtime processes in a row died at start"))

    def _retire_idle(self) -> None:
        now = time.monotonic()
        surplus = len(self._processes) - self._min
        for process in list(self._idle):
            if surplus <= 0:
                break
            if now - process.idle_since >= self._idle_timeout:
                self.not_waiting(process)
                process.terminate()
                surplus -= 1
        self._retire_handle = asyncio.get_running_loop().call_later(RETIRE_CHECK_INTERVAL, self._retire_idle)

    def close(self) -> None:
        """Stop every process (the worker is leaving)."""
        self._closed = True
        if self._retire_handle is not None:
            self._retire_handle.cancel()
        for process in self._processes:
            process.terminate()
        for invocation in self._queue:
            if not invocation.answer.done():
                invocation.answer.set_exception(ProcessDied("the worker is stopping"))
        self._queue.clear()


def _expire(invocation: Invocation) -> None:
    if not invocation.answer.done():
        invocation.answer.set_exception(FunctionTimedOut(f"took longer than {invocation.timeout:g}s"))


def _failure(body: bytes, error_type: str | None) -> FunctionFailed:
    """A runtime's error document as FunctionFailed (its str: type, message and the stack trace's last line)."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return FunctionFailed(error_type or "Error", body[:200].decode("utf-8", "replace"))
    if not isinstance(document, dict):
        return FunctionFailed(error_type or "Error", f"{document!r:.200}")
    kind = str(document.get("errorType") or error_type or "Error")
    trace = document.get("stackTrace")
    detail = " (" + str(trace[-1]).strip() + ")" if isinstance(trace, list) and trace else ""
    return FunctionFailed(kind, str(document.get("errorMessage", "")), detail)


def _exit_description(code: int) -> str:
    if code < 0:
        return f"killed by {signal.Signals(-code).name}"
    return f"exited with code {code}"

