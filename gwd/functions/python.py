"""Running a Python handler inside the worker, as AWS's Python runtime would run it.

Each handler's module is imported once per worker at config load (a reload
starts new workers, which import the files afresh), with its ``code_dir``
first on ``sys.path``.  An ``async def`` handler is awaited on the event
loop; a plain one runs in the worker's thread pool (``server.function_threads``
threads), so a handler that blocks never stalls the other requests.

A worker's handlers share one interpreter, so what AWS gives each function
of its own is layered here: ``os.environ`` looks first in the running
invocation's variables (a context variable, which follows the handler into
its thread and its tasks), then in the process's own; ``print`` output of a
running handler goes to the daemon log, line by line, with the function's
name and the request id; so do log records of the handler's own loggers.
Child processes a handler starts get the process's environment only.
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import inspect
import io
import logging
import os
import queue
import sys
import threading
from collections.abc import Callable, Iterator, MutableMapping
from typing import Any

from gwd.config.handlers import import_handler
from gwd.config.model import FunctionIntegration
from gwd.functions.context import LambdaContext, function_arn, log_stream_name

log = logging.getLogger("gwd.function")


class FunctionFailed(Exception):
    """The handler raised (its traceback is in the daemon log with the request id).

    ``error_type`` and ``error_message`` are what AWS reports as
    ``errorType`` and ``errorMessage``: what a non-proxy integration's
    ``selection_pattern`` is matched against.
    """

    def __init__(self, error_type: str, error_message: str, detail: str = "") -> None:
        super().__init__(f"{error_type}: {error_message}{detail}")
        self.error_type = error_type
        self.error_message = error_message


class FunctionTimedOut(Exception):
    """The handler did not finish within the function's timeout."""


class HandlerRun:
    """One running handler: its function, request id and environment, and a line of output not yet ended."""

    __slots__ = ("function", "request_id", "environment", "_partial")

    def __init__(self, function: str, request_id: str, environment: dict[str, str]) -> None:
        self.function = function
        self.request_id = request_id
        self.environment = environment
        self._partial = ""

    def write(self, text: str) -> None:
        lines = (self._partial + text).split("\n")
        self._partial = lines.pop()
        for line in lines:
            log.info("%s %s: %s", self.function, self.request_id, line)

    def end(self) -> None:
        if self._partial:
            self.write("\n")


_RUNNING: contextvars.ContextVar[HandlerRun | None] = contextvars.ContextVar("gwd_function_invocation", default=None)


class _LayeredEnviron(MutableMapping[str, str]):
    """``os.environ`` with the running invocation's variables over the process's; changes go to the process's."""

    def __init__(self, base: MutableMapping[str, str]) -> None:
        self._base = base

    def _layer(self) -> dict[str, str]:
        invocation = _RUNNING.get()
        return invocation.environment if invocation is not None else {}

    def __getitem__(self, key: str) -> str:
        layer = self._layer()
        return layer[key] if key in layer else self._base[key]

    def __setitem__(self, key: str, value: str) -> None:
        self._base[key] = value

    def __delitem__(self, key: str) -> None:
        del self._base[key]

    def __iter__(self) -> Iterator[str]:
        layer = self._layer()
        yield from layer
        yield from (key for key in self._base if key not in layer)

    def __len__(self) -> int:
        return len(self._layer().keys() | self._base.keys())

    def copy(self) -> dict[str, str]:
        return dict(self)


class _Output(io.TextIOBase):
    """``sys.stdout``: every line to the daemon log, a running handler's with its function and request id.

    Nothing reaches the real stream, which may be the access log's (``access = "stdout"``):
    a line printed by a thread a handler left running must not land among its JSON lines.
    """

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self._outside = HandlerRun("stdout", "-", {})  # what is printed outside any invocation

    def write(self, text: str) -> int:
        (_RUNNING.get() or self._outside).write(text)
        return len(text)

    def flush(self) -> None:
        self._stream.flush()

    def fileno(self) -> int:
        return self._stream.fileno()

    def isatty(self) -> bool:
        return False

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self._stream, "encoding", "utf-8")


def _install() -> None:
    """Layer ``os.environ``, ``sys.stdout`` and log records, once per worker process."""
    if isinstance(os.environ, _LayeredEnviron):
        return
    os.environ = _LayeredEnviron(os.environ)  # type: ignore[assignment]
    sys.stdout = _Output(sys.stdout)
    make_record = logging.getLogRecordFactory()

    def record(*args: Any, **kwargs: Any) -> logging.LogRecord:
        made = make_record(*args, **kwargs)
        invocation = _RUNNING.get()
        if invocation is not None and not made.name.startswith("gwd"):
            made.msg = f"{invocation.function} {invocation.request_id}: {made.msg}"
        return made

    logging.setLogRecordFactory(record)


class _Raised:
    """What a handler raised, carried out of its thread or await as a value: nothing it raises is taken for gwd's own signals."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


class PythonFunction:
    """One handler, imported, and how to call it."""

    __slots__ = ("config", "_handler", "_is_async", "_threads", "_arn", "_log_stream")

    def __init__(self, config: FunctionIntegration, environment: dict[str, str], threads: Threads) -> None:
        """Import the handler's module with ``environment`` in ``os.environ``; an import that fails raises."""
        _install()
        self.config = config
        token = _RUNNING.set(HandlerRun(config.name, "init", environment))
        try:
            module = import_handler(config.code_dir, config.module, config.file)
        finally:
            _RUNNING.reset(token)
        handler = getattr(module, config.function, None)
        if not callable(handler):
            raise TypeError(f"{config.file}: {config.function!r} is not a function")
        self._handler = handler
        self._is_async = inspect.iscoroutinefunction(handler)
        self._threads = threads
        self._arn = function_arn(config.name)
        self._log_stream = log_stream_name()

    async def invoke(self, event: dict[str, Any], request_id: str, environment: dict[str, str], done: Callable[[], None]) -> Any:
        """What the handler returns for ``event``; raises FunctionFailed or FunctionTimedOut.

        ``done`` is called, on the loop, once the handler has returned or
        raised: a plain handler past its timeout cannot be stopped and runs
        on until then.
        """
        context = LambdaContext(self.config, request_id, self._arn, self._log_stream)
        invocation = HandlerRun(self.config.name, request_id, environment)
        token = _RUNNING.set(invocation)
        try:
            if self._is_async:
                try:
                    outcome = await self._await_handler(event, context)
                finally:
                    done()
            else:
                outcome = await self._threads.run(self._call, event, context, self.config.timeout, done)
        finally:
            invocation.end()
            _RUNNING.reset(token)
        if outcome is _EXPIRED:
            raise FunctionTimedOut(f"took longer than {self.config.timeout:g}s")
        if isinstance(outcome, _Raised):
            error = outcome.error
            log.error("%s %s: the handler raised", self.config.name, request_id, exc_info=error)
            raise FunctionFailed(type(error).__name__, str(error))
        return outcome

    async def _await_handler(self, event: dict[str, Any], context: LambdaContext) -> Any:
        """Await an ``async def`` handler in the request's own task, cancelling it at the timeout (no task of its own)."""
        task = asyncio.current_task()
        assert task is not None
        expired = False

        def expire() -> None:
            nonlocal expired
            expired = True
            task.cancel()

        timer = asyncio.get_running_loop().call_later(self.config.timeout, expire)
        try:
            return await self._handler(event, context)
        except asyncio.CancelledError:
            if not expired:
                raise  # the client went away, or the worker is stopping
            task.uncancel()
            return _EXPIRED
        except Exception as error:
            return _EXPIRED if expired else _Raised(error)
        finally:
            timer.cancel()

    def _call(self, event: dict[str, Any], context: LambdaContext) -> Any:
        try:
            return self._handler(event, context)
        except Exception as error:
            return _Raised(error)


_EXPIRED = object()
"""What an invocation that ran past its timeout comes to."""


class _Job:
    """One plain handler's call, queued for a thread; ``cancelled`` before it starts, it never will."""

    __slots__ = ("context", "call", "event", "lambda_context", "finished", "done", "started", "cancelled")

    def __init__(self, call: Callable[..., Any], event: Any, lambda_context: Any, finished: asyncio.Future[Any], done: Callable[[], None]) -> None:
        self.context = contextvars.copy_context()
        self.call = call
        self.event = event
        self.lambda_context = lambda_context
        self.finished = finished
        self.done = done
        self.started = False
        self.cancelled = False


class Threads:
    """Threads for plain handlers: a C queue in, and results back to the loop in batches.

    A result is queued and the loop woken only if no wake-up is pending
    already, so many results that finish together cost one wake-up, not
    one each (``concurrent.futures`` would wake the loop per call).  Threads
    start as calls need them, up to ``most``.
    """

    def __init__(self, most: int) -> None:
        self._most = most
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._results: collections.deque[tuple[_Job, Any]] = collections.deque()
        self._wake_pending = False
        self._threads: list[threading.Thread] = []
        self._counts = threading.Lock()  # guards the two counts below, which threads and the loop both change
        self._idle = 0  # threads waiting for a job
        self._queued = 0  # jobs put and not yet taken
        self._loop: asyncio.AbstractEventLoop | None = None

    async def run(self, call: Callable[..., Any], event: Any, lambda_context: Any, timeout: float, done: Callable[[], None]) -> Any:
        """``call(event, lambda_context)`` in a thread; ``_EXPIRED`` past ``timeout`` (``done`` once it has really ended)."""
        loop = self._loop = asyncio.get_running_loop()
        finished: asyncio.Future[Any] = loop.create_future()
        job = _Job(call, event, lambda_context, finished, done)
        with self._counts:
            self._queued += 1
            more = self._queued > self._idle and len(self._threads) < self._most
        if more:
            thread = threading.Thread(target=self._serve, name=f"gwd-function-{len(self._threads) + 1}", daemon=True)
            self._threads.append(thread)
            thread.start()
        self._jobs.put(job)
        timer = loop.call_later(timeout, _expire, job)
        try:
            return await finished
        except asyncio.CancelledError:
            if not job.started:
                job.cancelled = True
                done()
            raise
        finally:
            timer.cancel()

    def _serve(self) -> None:
        jobs = self._jobs
        while True:
            with self._counts:
                self._idle += 1
            job = jobs.get()
            with self._counts:
                self._idle -= 1
                self._queued -= 1
            if job is None:
                return
            if job.cancelled:
                continue
            job.started = True
            try:
                result = job.context.run(job.call, job.event, job.lambda_context)
            except BaseException as error:  # SystemExit and the like, which _call lets through
                result = _Raised(error)
            self._results.append((job, result))
            if not self._wake_pending:
                self._wake_pending = True
                assert self._loop is not None
                try:
                    self._loop.call_soon_threadsafe(self._deliver)
                except RuntimeError:
                    return  # the loop is closed: the worker has gone

    def _deliver(self) -> None:
        self._wake_pending = False  # first: a result queued from now on wakes the loop again
        results = self._results
        while results:
            job, result = results.popleft()
            job.done()
            if not job.finished.done():
                job.finished.set_result(result)

    def close(self) -> None:
        for _ in self._threads:
            self._jobs.put(None)


def _expire(job: _Job) -> None:
    """The call ran past its timeout: answer now; a call not started yet never runs."""
    if not job.started:
        job.cancelled = True
        job.done()
    if not job.finished.done():
        job.finished.set_result(_EXPIRED)
