"""Where a function integration's handler lives, checked without running it.

Every config load (``gwd check``, a start, a reload) finds the handler's
file under ``code_dir``, compiles it, and looks for the function among the
module's top-level names, all without importing it: importing runs the
module's code, which belongs in the workers, and a module imported in the
supervisor would be the one every later worker inherits, so a reload would
not pick up a changed file.
"""

from __future__ import annotations

import ast
import os
import re

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
