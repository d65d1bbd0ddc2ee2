"""Parsers of the config's value syntaxes: durations, sizes, addresses, backend URIs, route keys, stage variables.

Each raises ValueError with a message fit for ``FILE: key.path: problem``.
:class:`DomainNames` looks names up the way ``[[domains]]`` names them.
"""

from __future__ import annotations

import re
from typing import Generic, TypeVar
from urllib.parse import urlsplit

from gwd.config.model import ANY_METHOD, DEFAULT_ROUTE, HTTP_METHODS, Address, BackendUri, RouteKey, Segment, StageConfig

T = TypeVar("T")
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h)$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_PARAM_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
"""RFC 9110's token: what a header name (and a media type's parts) may be made of."""
HEADER_NAME = re.compile(rf"^{TOKEN}$")
STAGE_VARIABLE = re.compile(r"\$\{stageVariables\.([A-Za-z0-9_]+)\}")
_SIZE = re.compile(r"^(\d+)(B|KiB|MiB|GiB)$")
_SIZE_UNITS = {"B": 1, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3}


def parse_duration(text: str) -> float:
    """Seconds in a duration such as ``"30s"``, ``"250ms"``, ``"5m"`` or ``"1h"``."""
    match = _DURATION.match(text.strip())
    if not match:
        raise ValueError(f'expected a duration such as "30s" or "250ms", got {text!r}')
    return float(match.group(1)) * _DURATION_UNITS[match.group(2)]


def parse_size(text: str) -> int:
    """Bytes in a size such as ``"64MiB"``, ``"512KiB"`` or ``"100B"``."""
    match = _SIZE.match(text.strip())
    if not match:
        raise ValueError(f'expected a size such as "64MiB" or "512KiB", got {text!r}')
    return int(match.group(1)) * _SIZE_UNITS[match.group(2)]


def parse_address(text: str) -> Address:
    """``HOST:PORT`` or ``[V6HOST]:PORT`` as an :class:`Address`."""
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
    else:
        host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f'expected "HOST:PORT" (such as "127.0.0.1:8080" or "[::1]:8080"), got {text!r}')
    if not 0 < int(port) < 65536:
        raise ValueError(f"port must be 1-65535, got {port}")
    return Address(host, int(port))


UPSTREAM_PREFIX = "upstream:"
"""A backend URI's host part naming an upstream: ``http://upstream:NAME/...``."""


def parse_backend_uri(text: str) -> BackendUri:
    """An ``http://host[:port]/path[?query]`` URI, or ``http://upstream:NAME/...`` (stage variables already substituted)."""
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"{text!r} must be an http:// or https:// URI")
    if parts.netloc.startswith(UPSTREAM_PREFIX):
        name = parts.netloc[len(UPSTREAM_PREFIX) :]
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,128}", name) or parts.fragment:
            raise ValueError(f"{text!r}: expected {parts.scheme}://upstream:NAME/path, NAME an [[upstreams]] entry's")
        return BackendUri(parts.scheme, "", 0, parts.path or "/", parts.query, name)
    if not parts.hostname:
        raise ValueError(f"{text!r} has no host")
    if parts.username is not None or parts.password is not None:
        raise ValueError(f"{text!r} must not carry credentials")
    if parts.fragment:
        raise ValueError(f"{text!r} must not have a #fragment")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise ValueError(f"{text!r} has an invalid port") from None
    return BackendUri(parts.scheme, parts.hostname, port, parts.path or "/", parts.query)


def substitute_stage_variables(text: str, stage: StageConfig) -> str:
    return STAGE_VARIABLE.sub(lambda m: stage.variables[m.group(1)], text)


def parse_route_key(text: str) -> RouteKey:
    """An AWS-style route key: ``METHOD /path/{param}/{proxy+}``, ``ANY /path`` or ``$default``."""
    if text == DEFAULT_ROUTE:
        return RouteKey(DEFAULT_ROUTE, ())
    method, _, path = text.partition(" ")
    if method not in HTTP_METHODS and method != ANY_METHOD:
        raise ValueError(
            f"route key {text!r} must start with ANY or one of {', '.join(sorted(HTTP_METHODS))}"
            " (upper case), then a space and a path"
        )
    if not path.startswith("/"):
        raise ValueError(f"route key {text!r}: the path must start with '/'")
    parts = path[1:].split("/") if path != "/" else []
    segments: list[Segment] = []
    for index, part in enumerate(parts):
        segments.append(_parse_segment(text, part, is_last=index == len(parts) - 1))
    names = [s.text for s in segments if s.kind != "literal"]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise ValueError(f"route key {text!r} names parameter {duplicated[0]!r} twice")
    return RouteKey(method, tuple(segments))


def _parse_segment(key: str, part: str, *, is_last: bool) -> Segment:
    if not part:
        raise ValueError(f"route key {key!r} has an empty path segment")
    if part.startswith("{") and part.endswith("}"):
        inner = part[1:-1]
        greedy = inner.endswith("+")
        name = inner[:-1] if greedy else inner
        if not _PARAM_NAME.match(name):
            raise ValueError(f"route key {key!r}: {part!r} is not a valid parameter (use {{name}} or {{name+}})")
        if greedy and not is_last:
            raise ValueError(f"route key {key!r}: greedy parameter {part!r} must be the last segment")
        return Segment(name, "greedy" if greedy else "param")
    if "{" in part or "}" in part:
        raise ValueError(f"route key {key!r}: segment {part!r} mixes text and a parameter")
    if part in (".", ".."):
        raise ValueError(f"route key {key!r}: {part!r} segments are refused in requests, so no route may have one")
    return Segment(part, "literal")


class DomainNames(Generic[T]):
    """Values by domain name, as custom domains and their certificates are named: exact, or ``*.`` for one label more.

    ``find`` takes a name as a client sends it (any case, a trailing dot
    allowed); an exact name wins over a wildcard.
    """

    __slots__ = ("_exact", "_wildcards")

    def __init__(self, named: dict[str, T]) -> None:
        self._exact = {name: value for name, value in named.items() if not name.startswith("*.")}
        self._wildcards = {name[2:]: value for name, value in named.items() if name.startswith("*.")}

    def find(self, name: str) -> T | None:
        name = name.lower().rstrip(".")
        found = self._exact.get(name)
        if found is None:
            label, _, parent = name.partition(".")
            found = self._wildcards.get(parent) if label and parent else None
        return found
