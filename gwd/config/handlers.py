"""Where a function integration's handler lives, and whether it loads.

Every config load (``gwd check``, a start, a reload) finds the handler's
file under ``code_dir``, compiles it, and looks for the function among the
module's top-level names; then a short-lived Python process imports every
Python handler the way a worker will (:func:`import_handler`, with its
function's environment), so an exception at import time is a config error
too, named with its file and line, and a daemon never starts workers that
cannot load their code.  The supervisor itself never imports a handler: the
module would be the one every later worker inherits, and a reload would not
pick up a changed file.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import json
import os
import re
import subprocess
import sys
import traceback
from types import ModuleType

_PYTHON_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_COLON_FORM = re.compile(rf"({_PYTHON_NAME}(?:\.{_PYTHON_NAME})*):({_PYTHON_NAME})")
_AWS_FORM = re.compile(rf"((?:{_PYTHON_NAME}/)*{_PYTHON_NAME}(?:\.{_PYTHON_NAME})*)\.({_PYTHON_NAME})")


def split_handler(text: str) -> tuple[str, str]:
    """The module and function of ``"todos.get:handler"``, or of AWS's ``"todos/get.handler"``."""
    match = _COLON_FORM.fullmatch(text) or _AWS_FORM.fullmatch(text)
    if match is None:
        raise ValueError(f'expected "module:function" (or AWS\'s "file.function"), got {text!r}')
    return match.group(1).replace("/", "."), match.group(2)


SCRIPT_SUFFIXES = (".js", ".mjs", ".cjs")
"""Handler files gwd runs with its Node.js bootstrap."""


def module_file(code_dir: str, module: str) -> str | None:
    """The file ``module`` is loaded from under ``code_dir`` (a ``.py`` file, a package, or a Node.js file), or None."""
    base = os.path.join(code_dir, *module.split("."))
    for path in (base + ".py", os.path.join(base, "__init__.py"), *(base + suffix for suffix in SCRIPT_SUFFIXES)):
        if os.path.isfile(path):
            return path
    return None


def handler_problem(path: str, function: str) -> str | None:
    """What stops ``function`` in the file at ``path`` from being a handler (a syntax error, a missing name), or None."""
    try:
        with open(path, "rb") as source:
            tree = ast.parse(source.read(), path)
    except OSError as exc:
        return f"cannot read {path}: {exc.strerror}"
    except SyntaxError as exc:
        return f"{path}, line {exc.lineno}: syntax error: {exc.msg}"
    except ValueError as exc:  # null bytes
        return f"{path}: {exc}"
    if function not in _top_level_names(tree.body):
        return f"{path} defines no {function!r} at its top level"
    return None


def _top_level_names(body: list[ast.stmt]) -> set[str]:
    """Names a module's top level binds: definitions, assignments, imports, also inside if/try/with blocks."""
    names: set[str] = set()
    for statement in body:
        if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(statement.name)
        elif isinstance(statement, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = statement.targets if isinstance(statement, ast.Assign) else [statement.target]
            for target in targets:
                names.update(node.id for node in ast.walk(target) if isinstance(node, ast.Name))
        elif isinstance(statement, (ast.Import, ast.ImportFrom)):
            names.update((alias.asname or alias.name).partition(".")[0] for alias in statement.names)
        elif isinstance(statement, ast.If):
            names |= _top_level_names(statement.body) | _top_level_names(statement.orelse)
        elif isinstance(statement, (ast.Try, ast.TryStar)):
            for block in (statement.body, statement.orelse, statement.finalbody, *(h.body for h in statement.handlers)):
                names |= _top_level_names(block)
        elif isinstance(statement, ast.With):
            names |= _top_level_names(statement.body)
    return names


IMPORT_TIMEOUT = 20.0
"""How long importing a config's Python handlers may take at load (the supervisor waits for it, so well
under ``server.worker_timeout``'s default)."""


def import_handler(code_dir: str, module: str, file: str) -> ModuleType:
    """The handler's module, imported from ``code_dir`` (first on ``sys.path``).

    A top-level module of the same name loaded from another ``code_dir``
    (every function's ``app.py``) is loaded again from this one's file, as a
    module of its own; other modules its code imports by name are shared
    by every function of the process.
    """
    # No bytecode is written for handlers: a file edited within the second its .pyc was
    # written has the same mtime, and a reload would run the stale bytecode.
    sys.dont_write_bytecode = True
    if code_dir in sys.path:
        sys.path.remove(code_dir)
    sys.path.insert(0, code_dir)
    loaded = sys.modules.get(module)
    if loaded is None or os.path.realpath(getattr(loaded, "__file__", "") or "") == os.path.realpath(file):
        return importlib.import_module(module)
    if "." in module:
        raise ImportError(f"{file}: module {module!r} is already loaded from {loaded.__file__}")
    spec = importlib.util.spec_from_file_location(module, file)
    assert spec is not None and spec.loader is not None
    loaded = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loaded)
    return loaded


def import_problems(handlers: list[tuple[str, str, str, str, dict[str, str]]]) -> list[str | None]:
    """For each (code_dir, module, file, function, environment): what importing it says is wrong, or None.

    The imports run in one new Python process, in order, as a worker runs
    them, so that nothing they do stays in this one.
    """
    if not handlers:
        return []
    # The probe imports this module from wherever this gwd is, installed or not.
    here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [here, os.environ.get("PYTHONPATH")]))}
    try:
        done = subprocess.run(
            [sys.executable, "-c", "from gwd.config.handlers import _probe; _probe()"],
            input=json.dumps(handlers),
            capture_output=True,
            text=True,
            timeout=IMPORT_TIMEOUT,
            cwd=handlers[0][0],
            env=env,
        )
    except subprocess.TimeoutExpired:
        return [f"importing the handlers took longer than {IMPORT_TIMEOUT:g}s"] * len(handlers)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        why = (done.stderr.strip().splitlines() or ["no answer"])[-1]
        return [f"importing the handlers failed: {why}"] * len(handlers)
    return json.loads(lines[-1])


def _probe() -> None:
    """Import each handler named on stdin; write one JSON list of problems (or nulls) as the last line of stdout."""
    answer = sys.stdout
    sys.stdout = sys.stderr  # what the modules print must not mix with the answer
    problems: list[str | None] = []
    for code_dir, module, file, function, environment in json.load(sys.stdin):
        saved = dict(os.environ)
        os.environ.update(environment)
        try:
            loaded = import_handler(code_dir, module, file)
            problems.append(None if callable(getattr(loaded, function, None)) else f"{file}: {function!r} is not a function")
        except BaseException as exc:  # SystemExit and KeyboardInterrupt at import time are the module's failures too
            frames = [frame for frame in traceback.extract_tb(exc.__traceback__) if frame.filename.startswith(code_dir)]
            where = f"{frames[-1].filename}, line {frames[-1].lineno}: " if frames else f"{file}: "
            problems.append(f"importing it failed: {where}{type(exc).__name__}: {exc}")
        finally:
            os.environ.clear()
            os.environ.update(saved)
    answer.write("\n" + json.dumps(problems) + "\n")
