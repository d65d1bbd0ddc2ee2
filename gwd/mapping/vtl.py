"""Velocity (VTL) templates as API Gateway renders them, on the ``airspeed`` engine.

A :class:`MappingTemplate` is compiled once, at config load, where a syntax
error becomes a config problem with its line and column.  Rendering is
bounded the way AWS bounds it: each ``#foreach`` runs at most
:data:`MAX_ITERATIONS` times (the rest of the list is not visited), the
output may not pass :data:`MAX_OUTPUT` characters and a render may not run
past :data:`RENDER_TIMEOUT`; past either, or on any error inside the
template, :class:`RenderError` is raised.  A reference to nothing renders
as the empty string, as on AWS (``$missing`` and ``$!missing`` alike).

A template made only of text and plain references (``$input.path('$.a')``,
``$input.json(...)``, ``$input.params('name')``, ``$input.body``,
``$context.a.b``, ``$stageVariables.name``), as most request templates
are, is also compiled into a list of parts that gwd joins itself: the same
output (the table tests check both ways) at a fraction of the engine's
cost.  Any directive, method call or other reference leaves it to airspeed.

Java's string, list and map methods that AWS templates call (``.size()``,
``.isEmpty()``, ``.containsKey()``, ``.toLowerCase()``, ...) are added to
airspeed's table of extra methods, the extension point it offers for them.
"""

from __future__ import annotations

import contextvars
import re
import time
from typing import Any, Callable, Iterator

import airspeed
from airspeed import operators

MAX_ITERATIONS = 1000
"""The most times one ``#foreach`` loops, as on AWS."""
MAX_OUTPUT = 10 * 1024 * 1024
"""The most characters a render may write (AWS's payload limit)."""
RENDER_TIMEOUT = 0.5
"""The most seconds a render may run: it holds the worker's event loop while it does."""

_deadline: contextvars.ContextVar[float] = contextvars.ContextVar("gwd_vtl_deadline", default=0.0)

operators.__additional_methods__[str].update(
    {
        "toLowerCase": str.lower,
        "toUpperCase": str.upper,
        "trim": str.strip,
        "endsWith": str.endswith,
        "equals": lambda self, other: self == other,
        "isEmpty": lambda self: not self,
        "lastIndexOf": lambda self, text: self.rfind(text),
        "replace": lambda self, old, new: self.replace(old, new),
        "charAt": lambda self, index: self[index],
    }
)
operators.__additional_methods__[list].update({"remove": lambda self, index: self.pop(index)})
operators.__additional_methods__[dict].update(
    {
        "size": len,
        "isEmpty": lambda self: not self,
        "containsKey": lambda self, key: key in self,
        "get": lambda self, key: self.get(key),
        "values": lambda self: list(self.values()),
        "remove": lambda self, key: self.pop(key, None),
    }
)


class TemplateProblem(ValueError):
    """A template that does not compile: the message says where (line and column) and what was expected."""


class RenderError(Exception):
    """A render that failed (an error in the template, or past a bound): the message is for the daemon log."""


class MappingTemplate:
    """One compiled template: ``render(variables)`` gives its output for one request."""

    __slots__ = ("source", "_template", "_parts")

    def __init__(self, text: str, source: str) -> None:
        """Compile ``text``; ``source`` names it in messages (a file, or the config key holding it)."""
        self.source = source
        template = airspeed.Template(text, source)
        try:
            template.ensure_compiled()
        except airspeed.TemplateSyntaxError as exc:
            raise TemplateProblem(f"VTL syntax error at {exc}") from None
        except RecursionError:
            raise TemplateProblem("VTL template nests too deeply") from None
        _bound_loops(template.root_element)
        self._template = template
        self._parts = _plain_parts(text)

    @property
    def plain(self) -> bool:
        """Whether the template is text and plain references only (rendered without the engine)."""
        return self._parts is not None

    def render(self, variables: dict[str, Any]) -> str:
        """The template's output with ``variables`` as its top-level names ($input, $context, ...)."""
        parts = self._parts
        if parts is not None:
            text = "".join([part if part.__class__ is str else _as_text(part(variables)) for part in parts])
            if len(text) > MAX_OUTPUT:
                raise RenderError(f"template output passed {MAX_OUTPUT} characters")
            return text
        return self.render_with_engine(variables)

    def render_with_engine(self, variables: dict[str, Any]) -> str:
        """The output as airspeed renders it (what :meth:`render` gives for every template)."""
        stream = _BoundedStream()
        token = _deadline.set(time.monotonic() + RENDER_TIMEOUT)
        try:
            self._template.merge_to(variables, stream)
        except airspeed.TemplateError as exc:
            cause = exc.__cause__
            raise RenderError(str(cause) if isinstance(cause, RenderError) else f"{self.source}: {exc}") from None
        except RenderError:
            raise
        except RecursionError:
            raise RenderError(f"{self.source}: recursion too deep") from None
        finally:
            _deadline.reset(token)
        return stream.getvalue()


class _BoundedStream(operators.StoppableStream):
    """The render's output, refusing to grow past MAX_OUTPUT or to be written past the deadline."""

    def __init__(self) -> None:
        super().__init__()
        self.written = 0

    def write(self, s: str) -> None:
        self.written += len(s)
        if self.written > MAX_OUTPUT:
            raise RenderError(f"template output passed {MAX_OUTPUT} characters")
        if time.monotonic() > _deadline.get():
            raise RenderError(f"template rendering took longer than {RENDER_TIMEOUT:g}s")
        super().write(s)


class _LoopItems(list):
    """A ``#foreach`` list cut to MAX_ITERATIONS, checking the render's deadline at every step."""

    def __iter__(self) -> Iterator[Any]:
        deadline = _deadline.get()
        for item in super().__iter__():
            if time.monotonic() > deadline:
                raise RenderError(f"template rendering took longer than {RENDER_TIMEOUT:g}s")
            yield item


class _BoundedValue:
    """Stands in for a ``#foreach``'s list expression: what it gives is cut to MAX_ITERATIONS."""

    __slots__ = ("_value",)

    def __init__(self, value: Any) -> None:
        self._value = value

    def calculate(self, namespace: Any, loader: Any) -> Any:
        items = self._value.calculate(namespace, loader)
        if items is None:
            return None
        if hasattr(items, "keys"):
            items = items.keys()
        try:
            iterator = iter(items)
        except TypeError:
            return items  # the loop itself reports what is not a list
        values = _LoopItems()
        for item in iterator:
            if len(values) == MAX_ITERATIONS:
                break
            values.append(item)
        return values


def _bound_loops(element: Any) -> None:
    """Give every ``#foreach`` in a compiled template a bounded list (once, at compile time)."""
    stack = [element]
    while stack:
        node = stack.pop()
        if isinstance(node, operators.ForeachDirective):
            node.value = _BoundedValue(node.value)
        for value in vars(node).values():
            if isinstance(value, operators._Element):
                stack.append(value)
            elif isinstance(value, list):
                stack.extend(item for item in value if isinstance(item, operators._Element))


_REFERENCE = re.compile(
    r"""\$!?(\{)?(?:
        input\.(path|json|params)\(\s*(?:'([^'\\]*)'|"([^"\\]*)")\s*\)
      | input\.(body)
      | (context|stageVariables)((?:\.[A-Za-z_][A-Za-z0-9_-]*)+)
    )(\})?""",
    re.X,
)
_CONTINUES = re.compile(r"[A-Za-z0-9_\-\[(|]|\.[A-Za-z_]")
"""What after an unbraced reference would make it longer (a method call, an index, a longer name): not plain."""
_NAMES_OF_METHODS = frozenset(dir(dict)) | frozenset(dir(str)) | frozenset(dir(list)) | frozenset(
    name for methods in operators.__additional_methods__.values() for name in methods
)
"""Names airspeed would look up as methods on a value instead of as keys: a plain reference never uses them."""

Part = Any  # a literal str, or a function of the variables giving a value


def _plain_parts(text: str) -> list[Part] | None:
    """The template as literal text and reference look-ups, or None when it holds anything else."""
    parts: list[Part] = []
    position = 0
    while position < len(text):
        special = min((i for i in (text.find(c, position) for c in "$#\\") if i >= 0), default=len(text))
        if special > position:
            parts.append(text[position:special])
        if special == len(text):
            break
        match = _REFERENCE.match(text, special) if text[special] == "$" else None
        if match is None:
            return None
        opened, call, single, double, body, root, names, closed = match.groups()
        if bool(opened) != bool(closed):
            return None
        if not opened and _CONTINUES.match(text, match.end()):
            return None
        if call is not None:
            parts.append(_input_call(call, single if single is not None else double))
        elif body is not None:
            parts.append(lambda variables: variables["input"].body)
        else:
            keys = names[1:].split(".")
            if any(key in _NAMES_OF_METHODS for key in keys):
                return None
            parts.append(_lookup(root, tuple(keys)))
        position = match.end()
    return parts


def _input_call(method: str, argument: str) -> Callable[[dict[str, Any]], Any]:
    if method == "path":
        return lambda variables: variables["input"].path(argument)
    if method == "json":
        return lambda variables: variables["input"].json(argument)
    return lambda variables: variables["input"].params(argument)


def _lookup(root: str, keys: tuple[str, ...]) -> Callable[[dict[str, Any]], Any]:
    def look_up(variables: dict[str, Any]) -> Any:
        value = variables.get(root)
        for key in keys:
            if not isinstance(value, dict):
                return None
            value = value.get(key)
        return value

    return look_up


def _as_text(value: Any) -> str:
    """A reference's value as airspeed writes it: nothing for null, Java's true/false, str() for the rest."""
    if value is None:
        return ""
    if value is True:
        return "true"
    if value is False:
        return "false"
    return value if isinstance(value, str) else str(value)
