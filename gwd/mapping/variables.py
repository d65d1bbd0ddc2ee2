"""What a mapping template sees: ``$input``, ``$util``, and ``$context``'s override maps, as AWS defines them.

``$input.path`` and ``$input.json`` take JSONPath (``jsonpath-ng``, each
distinct expression parsed once and kept); the body is parsed as JSON on
first use, and a body that is not JSON is one string value, so
``$input.path('$')`` gives it whole.  ``$input.params(name)`` looks in the
path parameters, then the query string, then the headers, and gives ``""``
when none has it.
"""

from __future__ import annotations

import base64
import binascii
import re
from functools import lru_cache
from typing import Any, Callable
from urllib.parse import quote_plus, unquote_plus

import orjson
from jsonpath_ng import JSONPath
from jsonpath_ng.exceptions import JsonPathLexerError, JsonPathParserError
from jsonpath_ng.ext import parse as parse_jsonpath

_UNSET = object()
_INDEFINITE = ("*", "..", "?(", ",", ":")
"""What makes a JSONPath select a list of matches rather than one value (Jayway's "indefinite" paths)."""


_SIMPLE_PATH = re.compile(r"\$((?:\.[A-Za-z_][A-Za-z0-9_]*|\[\d+\])*)")
_STEP = re.compile(r"\.([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]")


@lru_cache(maxsize=1024)
def _compiled(path: str) -> tuple[JSONPath | None, bool, tuple[str | int, ...]]:
    """A JSONPath parsed: (expression, definite, steps).

    A plain path of fields and indexes (``$.a.b[0]``) is walked by its
    ``steps`` without jsonpath-ng, which answers it the same way, slower;
    anything else is jsonpath-ng's, ``definite`` when it selects one value
    rather than a list of matches.
    """
    simple = _SIMPLE_PATH.fullmatch(path.strip())
    if simple is not None:
        steps = tuple(int(index) if index else field for field, index in _STEP.findall(simple.group(1)))
        return None, True, steps
    try:
        return parse_jsonpath(path), not any(mark in path for mark in _INDEFINITE), ()
    except (JsonPathLexerError, JsonPathParserError, Exception) as exc:
        raise ValueError(f"invalid JSONPath {path!r}: {exc}") from None


def select(document: Any, path: str) -> Any:
    """What ``path`` selects in ``document``: one value (None when nothing matches) or, for a wildcard path, a list."""
    expression, definite, steps = _compiled(path)
    if expression is None:
        value = document
        for step in steps:
            if isinstance(step, int):
                if not isinstance(value, list) or step >= len(value):
                    return None
            elif not isinstance(value, dict) or step not in value:
                return None
            value = value[step]
        return value
    matches = [match.value for match in expression.find(document)]
    if definite:
        return matches[0] if matches else None
    return matches


class Params:
    """The request's parameters by kind, as ``$input.params()`` lists them (names as sent; headers looked up case-blind)."""

    __slots__ = ("path", "querystring", "header", "_lowered_headers")

    def __init__(self, path: dict[str, str], querystring: dict[str, str], header: dict[str, str]) -> None:
        self.path = path
        self.querystring = querystring
        self.header = header
        self._lowered_headers = {name.lower(): value for name, value in header.items()}

    def as_map(self) -> dict[str, dict[str, str]]:
        return {"path": self.path, "querystring": self.querystring, "header": self.header}

    def find(self, name: str) -> str:
        if name in self.path:
            return self.path[name]
        if name in self.querystring:
            return self.querystring[name]
        return self._lowered_headers.get(name.lower(), "")


class Input:
    """``$input``: one body (the request's in a request template, the integration's in a response template)."""

    __slots__ = ("body", "_document", "_params")

    def __init__(self, body: str, params: Params | Callable[[], Params]) -> None:
        """``params`` may be a function making them, called on first use (most templates never ask)."""
        self.body = body
        self._document: Any = _UNSET
        self._params = params

    def _parsed(self) -> Any:
        if self._document is _UNSET:
            try:
                self._document = orjson.loads(self.body) if self.body else {}
            except orjson.JSONDecodeError:
                self._document = self.body
        return self._document

    def path(self, path: str) -> Any:
        return select(self._parsed(), path)

    def json(self, path: str) -> str:
        return orjson.dumps(self.path(path)).decode()

    def params(self, name: str | None = None) -> Any:
        params = self._params
        if not isinstance(params, Params):
            params = self._params = params()
        return params.as_map() if name is None else params.find(name)


class Util:
    """``$util``: AWS's helper functions for templates."""

    __slots__ = ()

    @staticmethod
    def escapeJavaScript(text: Any) -> str:  # noqa: N802 (AWS's names)
        return escape_javascript("" if text is None else str(text))

    @staticmethod
    def parseJson(text: str) -> Any:  # noqa: N802
        return orjson.loads(text)

    @staticmethod
    def urlEncode(text: str) -> str:  # noqa: N802
        return quote_plus(text, safe="*")

    @staticmethod
    def urlDecode(text: str) -> str:  # noqa: N802
        return unquote_plus(text)

    @staticmethod
    def base64Encode(text: str) -> str:  # noqa: N802
        return base64.b64encode(text.encode()).decode("ascii")

    @staticmethod
    def base64Decode(text: str) -> str:  # noqa: N802
        try:
            return base64.b64decode(text, validate=True).decode("utf-8", "replace")
        except binascii.Error as exc:
            raise ValueError(f"not base64: {exc}") from None


UTIL = Util()

_ESCAPES = {'"': '\\"', "'": "\\'", "\\": "\\\\", "/": "\\/", "\b": "\\b", "\n": "\\n", "\t": "\\t", "\f": "\\f", "\r": "\\r"}


def escape_javascript(text: str) -> str:
    """Java's ``StringEscapeUtils.escapeJavaScript``, which AWS's ``$util.escapeJavaScript`` is.

    Quotes (both), backslash and ``/`` get a backslash; other control
    characters and everything past ASCII become ``\\uXXXX`` per UTF-16
    unit, hex in capitals.
    """
    if text.isascii() and text.isprintable() and not any(c in text for c in "\"'\\/"):
        return text
    out = []
    for char in text:
        escaped = _ESCAPES.get(char)
        if escaped is not None:
            out.append(escaped)
        elif " " <= char < "\x80":
            out.append(char)
        else:
            units = char.encode("utf-16-be")
            for i in range(0, len(units), 2):
                out.append("\\u%04X" % int.from_bytes(units[i : i + 2], "big"))
    return "".join(out)
