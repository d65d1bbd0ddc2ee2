"""Reading parameter mapping: ``request_parameters`` and ``response_parameters`` on an ``http`` integration.

Keys are AWS's, in either API's spelling: an HTTP API's
``"append:header.X-User"``, ``"overwrite:querystring.page"``,
``"remove:header.cookie"``, ``"overwrite:path"`` (and on the response
side ``"overwrite:statuscode"``), or a REST API's
``"integration.request.header.X-User"`` (an overwrite;
``integration.request.path.NAME`` sets the path parameter the ``uri``
uses).  Values are text with ``$request.header.NAME``,
``$request.querystring.NAME``, ``$request.path.NAME``, ``$request.path``,
``$context.NAME`` (``requestId``, ``stage``, ``httpMethod``,
``identity.sourceIp``, ``authorizer.NAME``, ``authorizer.claims.NAME``),
``$stageVariables.NAME`` and, on the response side,
``$response.header.NAME`` and ``$response.statuscode``; a REST value is one
source alone: ``method.request.header.NAME``, ``context.NAME``,
``stageVariables.NAME`` or a quoted ``'literal'``.  All of it is parsed
here, once.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from gwd.config.model import RESERVED_BACKEND_HEADERS, ParameterMapping, ParameterRule
from gwd.config.values import TOKEN

if TYPE_CHECKING:
    from gwd.config.reader import _Table

_HTTP_KEY = re.compile(rf"^(append|overwrite|remove):(?:(header|querystring)\.({TOKEN})|(path)|(statuscode))$")
_REST_KEY = re.compile(rf"^integration\.request\.(header|querystring|path)\.({TOKEN})$")
_REFERENCE = re.compile(
    r"\$(?:\{)?(request\.(?:header|querystring|path)\.[!#%&'*+.^_`|~0-9A-Za-z-]+|request\.path|"
    r"response\.header\.[!#%&'*+.^_`|~0-9A-Za-z-]+|response\.statuscode|"
    r"context\.[A-Za-z][A-Za-z0-9_.-]*|stageVariables\.[A-Za-z0-9_]+)\}?"
)
_REST_VALUE = re.compile(
    r"^(?:'(.*)'|method\.request\.(header|querystring|path)\.([!#%&'*+.^_`|~0-9A-Za-z-]+)|(context\.[A-Za-z][A-Za-z0-9_.-]*)|"
    r"(stageVariables\.[A-Za-z0-9_]+))$",
    re.S,
)
CONTEXT_NAMES = re.compile(r"^context\.(requestId|stage|httpMethod|path|identity\.sourceIp|identity\.userAgent|authorizer\.[A-Za-z0-9_.:-]+)$")


def read_parameters(table: _Table) -> ParameterMapping | None:
    """The integration's parameter mapping, or None when it has none."""
    request = _rules(table, "request_parameters", response=False)
    response = _rules(table, "response_parameters", response=True)
    if not request and not response:
        return None
    return ParameterMapping(tuple(request), tuple(response))


def _rules(table: _Table, key: str, response: bool) -> list[ParameterRule]:
    rules = []
    for target, value in table.string_map(key).items():
        where = f"{key}.{target}"
        rule = _rule(table, where, target, value, response)
        if rule is not None:
            rules.append(rule)
    return rules


def _rule(table: _Table, where: str, target: str, value: str, response: bool) -> ParameterRule | None:
    http = _HTTP_KEY.match(target)
    rest = None if http or response else _REST_KEY.match(target)
    if http:
        action, kind, name, path, statuscode = http.groups()
        kind = kind or path or statuscode
        if (kind == "statuscode" and not response) or (kind in ("path", "querystring") and response):
            table.problem(where, f"{kind} cannot be mapped on the {'response' if response else 'request'} side")
            return None
        if kind in ("path", "statuscode") and action != "overwrite":
            table.problem(where, f"{kind} can only be overwritten (overwrite:{kind})")
            return None
        parts = _template(table, where, value, response)
    elif rest:
        action, (kind, name) = "overwrite", rest.groups()
        parts = _rest_value(table, where, value)
    else:
        hint = "append:|overwrite:|remove: then header.NAME, querystring.NAME or path"
        hint += ", or statuscode" if response else ", or integration.request.header.NAME"
        table.problem(where, f"not a parameter to map (expected {hint})")
        return None
    if parts is None:
        return None
    if kind == "header" and name.lower() in RESERVED_BACKEND_HEADERS and not response:
        table.problem(where, f"{name!r} is set by gwd itself and cannot be mapped")
        return None
    if kind == "statuscode" and not (len(parts) == 1 and parts[0].isdigit() and 100 <= int(parts[0]) <= 599):
        if not any(part.startswith("$") for part in parts):
            table.problem(where, f"expected a status between 100 and 599, got {value!r}")
            return None
    return ParameterRule(action, kind, (name or "") if kind in ("header", "querystring") or rest else "", tuple(parts))


def _template(table: _Table, where: str, value: str, response: bool) -> list[str] | None:
    """Literal text and ``$source`` references, split (references keep their ``$``)."""
    parts: list[str] = []
    literals: list[str] = []
    position = 0
    for match in _REFERENCE.finditer(value):
        if match.start() > position:
            literals.append(value[position : match.start()])
            parts.append(literals[-1])
        source = match.group(1)
        if source.startswith("response.") and not response:
            table.problem(where, f"${source} exists on the response side only")
            return None
        if source.startswith("context.") and not CONTEXT_NAMES.match(source):
            table.problem(where, f"${source} is not a context variable gwd maps")
            return None
        parts.append("$" + source)
        position = match.end()
    if position < len(value):
        literals.append(value[position:])
        parts.append(literals[-1])
    if any("$" in literal for literal in literals):
        table.problem(where, f"{value!r} has a $ that is not a variable gwd maps ($request.*, $context.*, $stageVariables.*)")
        return None
    return parts or [""]


def _rest_value(table: _Table, where: str, value: str) -> list[str] | None:
    match = _REST_VALUE.match(value)
    if match is None:
        table.problem(where, "expected 'literal', method.request.(header|querystring|path).NAME, context.NAME or stageVariables.NAME")
        return None
    literal, kind, name, context, stage_variable = match.groups()
    if literal is not None:
        return [literal]
    if kind is not None:
        return [f"$request.{kind}.{name}"]
    if context is not None:
        if not CONTEXT_NAMES.match(context):
            table.problem(where, f"{context} is not a context variable gwd maps")
            return None
        return ["$" + context]
    return ["$" + stage_variable]
