"""A worker's functions, by name: Python handlers imported in the worker, and runtime process pools."""

from __future__ import annotations

import sys
from typing import Callable

from gwd.config.handlers import SCRIPT_SUFFIXES
from gwd.config.model import FunctionIntegration
from gwd.functions.processes import NODE_BOOTSTRAP, PYTHON_BOOTSTRAP, ProcessPool
from gwd.functions.python import PythonFunction, Threads


def runtime_command(config: FunctionIntegration) -> list[str]:
    """The command of the function's runtime processes: its own, else the default for its handler's file."""
    if config.command:
        return list(config.command)
    if config.file.endswith(SCRIPT_SUFFIXES):
        return ["node", NODE_BOOTSTRAP, config.file, config.function]
    return [sys.executable, PYTHON_BOOTSTRAP, config.module, config.function]


class FunctionRuntimes:
    """What runs a worker's functions; routes naming the same function share it."""

    def __init__(self, threads: int) -> None:
        self._threads = Threads(threads)  # what plain Python handlers run on
        self._python: dict[str, PythonFunction] = {}
        self._pools: dict[str, ProcessPool] = {}

    def python(self, config: FunctionIntegration, environment: dict[str, str]) -> PythonFunction:
        """The function's Python handler, imported in this worker on first use (with ``environment`` in ``os.environ``)."""
        function = self._python.get(config.name)
        if function is None:
            function = self._python[config.name] = PythonFunction(config, environment, self._threads)
        return function

    def pool(self, config: FunctionIntegration, environment: dict[str, str], on_start: Callable[[], None]) -> ProcessPool:
        """The function's runtime processes in this worker (``min_instances`` of them started now)."""
        pool = self._pools.get(config.name)
        if pool is None:
            # No .pyc for handlers, which a quick edit could leave stale (see gwd.config.handlers).
            environment = {**environment, "PYTHONPATH": config.code_dir, "PYTHONDONTWRITEBYTECODE": "1"}
            pool = self._pools[config.name] = ProcessPool(
                config, runtime_command(config), environment, config.min_instances, config.max_instances, config.idle_timeout, on_start
            )
            pool.open()
        return pool

    def close(self) -> None:
        self._threads.close()  # handlers still running finish in their threads
        for pool in self._pools.values():
            pool.close()
