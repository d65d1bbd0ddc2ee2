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
import contextvars
import importlib
import importlib.util
import inspect
import io
import logging
import os
import sys
from collections.abc import Callable, Iterator, MutableMapping
from concurrent.futures import Future, ThreadPoolExecutor
from types import ModuleType
from typing import Any

from gwd.config.model import FunctionIntegration
from gwd.functions.context import LambdaContext, function_arn, log_stream_name

log = logging.getLogger("gwd.function")


class FunctionFailed(Exception):
    """The handler raised (its traceback is in the daemon log with the request id)."""


class FunctionTimedOut(Exception):
    """The handler did not finish within the function's timeout."""


class Invocation:
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


_RUNNING: contextvars.ContextVar[Invocation | None] = contextvars.ContextVar("gwd_function_invocation", default=None)


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
    """``sys.stdout``: a running handler's lines to the daemon log, anything else to the real stream."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        invocation = _RUNNING.get()
        if invocation is None:
            return self._stream.write(text)
        invocation.write(text)
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
    """What a handler raised, carried past ``wait_for`` (whose own TimeoutError must not be confused with it)."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


class PythonFunction:
    """One handler, imported, and how to call it."""

    __slots__ = ("config", "_handler", "_is_async", "_executor", "_arn", "_log_stream")

    def __init__(self, config: FunctionIntegration, environment: dict[str, str], executor: Callable[[], ThreadPoolExecutor]) -> None:
        """Import the handler's module with ``environment`` in ``os.environ``; an import that fails raises."""
        _install()
        self.config = config
        token = _RUNNING.set(Invocation(config.name, "init", environment))
        try:
            module = _import(config)
        finally:
            _RUNNING.reset(token)
        handler = getattr(module, config.function, None)
        if not callable(handler):
            raise TypeError(f"{config.file}: {config.function!r} is not a function")
        self._handler = handler
        self._is_async = inspect.iscoroutinefunction(handler)
        self._executor = executor
        self._arn = function_arn(config.name)
        self._log_stream = log_stream_name()

    async def invoke(self, event: dict[str, Any], request_id: str, environment: dict[str, str], done: Callable[[], None]) -> Any:
        """What the handler returns for ``event``; raises FunctionFailed or FunctionTimedOut.

        ``done`` is called, on the loop, once the handler has returned or
        raised: a plain handler past its timeout cannot be stopped and runs
        on until then.
        """
        context = LambdaContext(self.config, request_id, self._arn, self._log_stream)
        invocation = Invocation(self.config.name, request_id, environment)
        token = _RUNNING.set(invocation)
        try:
            if self._is_async:
                try:
                    outcome = await asyncio.wait_for(self._call_async(event, context), self.config.timeout)
                finally:
                    done()
            else:
                outcome = await self._call_in_thread(event, context, done)
        except asyncio.TimeoutError:
            raise FunctionTimedOut(f"took longer than {self.config.timeout:g}s") from None
        finally:
            invocation.end()
            _RUNNING.reset(token)
        if isinstance(outcome, _Raised):
            error = outcome.error
            log.error("%s %s: the handler raised", self.config.name, request_id, exc_info=error)
            raise FunctionFailed(f"{type(error).__name__}: {error}")
        return outcome

    async def _call_async(self, event: dict[str, Any], context: LambdaContext) -> Any:
        try:
            return await self._handler(event, context)
        except Exception as error:
            return _Raised(error)

    def _call(self, event: dict[str, Any], context: LambdaContext) -> Any:
        try:
            return self._handler(event, context)
        except Exception as error:
            return _Raised(error)

    async def _call_in_thread(self, event: dict[str, Any], context: LambdaContext, done: Callable[[], None]) -> Any:
        loop = asyncio.get_running_loop()
        finished: asyncio.Future[Any] = loop.create_future()
        running = self._executor().submit(contextvars.copy_context().run, self._call, event, context)
        # One wake-up of the loop per invocation: the result and the end of the slot together.
        running.add_done_callback(lambda future: loop.call_soon_threadsafe(_settle, finished, future, done))
        try:
            return await asyncio.wait_for(finished, self.config.timeout)
        except BaseException:
            running.cancel()  # not started yet: it never will be
            raise


def _settle(finished: asyncio.Future[Any], future: Future[Any], done: Callable[[], None]) -> None:
    done()
    if finished.done():
        return
    if future.cancelled():
        finished.cancel()
    elif future.exception() is not None:  # SystemExit and the like, which _call lets through
        finished.set_result(_Raised(future.exception()))  # type: ignore[arg-type]
    else:
        finished.set_result(future.result())


def _import(config: FunctionIntegration) -> ModuleType:
    """The handler's module, imported from ``code_dir``.

    A top-level module of the same name loaded from another ``code_dir``
    (every function's ``app.py``) is loaded again from this one's file, as a
    module of its own; other modules its code imports by name are shared
    by every function of the worker.
    """
    if config.code_dir in sys.path:
        sys.path.remove(config.code_dir)
    sys.path.insert(0, config.code_dir)
    loaded = sys.modules.get(config.module)
    if loaded is None or os.path.realpath(getattr(loaded, "__file__", "") or "") == os.path.realpath(config.file):
        return importlib.import_module(config.module)
    if "." in config.module:
        raise ImportError(f"{config.file}: module {config.module!r} is already loaded from {loaded.__file__}")
    spec = importlib.util.spec_from_file_location(config.module, config.file)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class PythonRuntime:
    """A worker's Python handlers, each imported once, and the thread pool their plain handlers share."""

    def __init__(self, threads: int) -> None:
        self._threads = threads
        self._executor: ThreadPoolExecutor | None = None
        self._functions: dict[str, PythonFunction] = {}

    def load(self, config: FunctionIntegration, environment: dict[str, str]) -> PythonFunction:
        """The function named by ``config``, imported on first use (with ``environment`` in ``os.environ``)."""
        function = self._functions.get(config.name)
        if function is None:
            function = self._functions[config.name] = PythonFunction(config, environment, self._pool)
        return function

    def _pool(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(self._threads, thread_name_prefix="gwd-function")
        return self._executor

    def close(self) -> None:
        """Stop taking work; handlers still running finish in their threads."""
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
