"""Route matching: custom domain and base path, or stage prefix; then a segment trie built once at config load.

Matching walks the request path one segment at a time, so its cost depends
on the path's depth, not on how many routes exist.  At every segment a
literal child is tried before a ``{param}`` child, and a ``{param}`` before
a greedy ``{proxy+}``; the first complete match in that order is the most
specific route, whatever order the config file lists them in.  At the same
path an exact method beats ``ANY``.

Routes with no parameters are also indexed by the whole request path that
reaches them (:class:`ExactPaths`), so the common request for a fixed path
costs one dict look-up instead of a split and a walk.
"""

from __future__ import annotations

import re
from typing import Generic, Sequence, TypeVar
from urllib.parse import unquote

from gwd.config.model import ANY_METHOD, DEFAULT_ROUTE, DEFAULT_STAGE, RouteKey
from gwd.config.values import DomainNames

T = TypeVar("T")
P = TypeVar("P")  # where a router's routes are served (an API's stage), as the caller describes it


class _Node(Generic[T]):
    __slots__ = ("literals", "param", "greedy", "methods")

    def __init__(self) -> None:
        self.literals: dict[str, _Node[T]] = {}
        self.param: _Node[T] | None = None
        self.greedy: _Node[T] | None = None
        self.methods: dict[str, T] = {}

    def target(self, method: str) -> T | None:
        methods = self.methods
        if not methods:
            return None
        found = methods.get(method)
        if found is None:
            if method == "HEAD":
                found = methods.get("GET")
            if found is None:
                found = methods.get(ANY_METHOD)
        return found


class Router(Generic[T]):
    """Maps (method, path segments) to the target registered for the best route key.

    ``match`` returns the target and the values of the route's parameters in
    path order (a greedy parameter's value is the rest of the path).
    """

    __slots__ = ("_root", "_fallback", "literal_paths")

    def __init__(self, routes: Sequence[tuple[RouteKey, T]]) -> None:
        self._root: _Node[T] = _Node()
        self._fallback: T | None = None
        # The node of each route path made of literal segments only, by its segments.
        self.literal_paths: dict[tuple[str, ...], _Node[T]] = {}
        for key, target in routes:
            if key.method == DEFAULT_ROUTE:
                self._fallback = target
                continue
            node = self._root
            for segment in key.segments:
                if segment.kind == "literal":
                    node = node.literals.setdefault(segment.text, _Node())
                elif segment.kind == "param":
                    if node.param is None:
                        node.param = _Node()
                    node = node.param
                else:
                    if node.greedy is None:
                        node.greedy = _Node()
                    node = node.greedy
            node.methods[key.method] = target
            if all(segment.kind == "literal" for segment in key.segments):
                self.literal_paths[tuple(segment.text for segment in key.segments)] = node

    def match(self, method: str, segments: list[str]) -> tuple[T, list[str]] | None:
        values: list[str] = []
        target = _descend(self._root, method, segments, 0, values)
        if target is not None:
            return target, values
        if self._fallback is not None:
            return self._fallback, []
        return None


def _descend(node: _Node[T], method: str, segments: list[str], index: int, values: list[str]) -> T | None:
    if index == len(segments):
        return node.target(method)
    segment = segments[index]
    child = node.literals.get(segment)
    if child is not None:
        found = _descend(child, method, segments, index + 1, values)
        if found is not None:
            return found
    if node.param is not None and segment:
        values.append(segment)
        found = _descend(node.param, method, segments, index + 1, values)
        if found is not None:
            return found
        values.pop()
    if node.greedy is not None:
        rest = "/".join(segments[index:])
        if rest:
            found = node.greedy.target(method)
            if found is not None:
                values.append(rest)
                return found
    return None


class UnsafePath(ValueError):
    """A path a backend could read as another one: answered 400 before routing."""


_ENCODED_SEPARATOR = re.compile(r"%(?:2f|5c|00)", re.IGNORECASE)


def split_path(raw_path: str) -> list[str]:
    """The percent-decoded segments of a raw request path; :class:`UnsafePath` for a path gwd does not route.

    Refused, never normalised: a ``.`` or ``..`` segment (``%2e%2e`` too), an
    empty segment other than a trailing one (``//``), and an encoded ``/``,
    ``\\`` or NUL, so a route and its authorization can only be reached by
    the path that names it, whatever a backend would make of the rest.
    """
    if raw_path == "/" or not raw_path:
        return []
    segments = raw_path[1:].split("/") if raw_path[0] == "/" else raw_path.split("/")
    last = len(segments) - 1
    for index, segment in enumerate(segments):
        if "%" in segment:
            if _ENCODED_SEPARATOR.search(segment):
                raise UnsafePath("an encoded separator")
            segment = segments[index] = unquote(segment)
        if segment in (".", "..") or (not segment and index < last):
            raise UnsafePath("a dot or empty segment")
    return segments


class StageResolver(Generic[T]):
    """Picks the stage a path addresses: ``/NAME/...`` for a named stage, else ``$default``."""

    __slots__ = ("_named", "_default")

    def __init__(self, stages: dict[str, T]) -> None:
        self._default = stages.get(DEFAULT_STAGE)
        self._named = {name: stage for name, stage in stages.items() if name != DEFAULT_STAGE}

    def resolve(self, segments: list[str]) -> tuple[T, list[str]] | None:
        if segments:
            stage = self._named.get(segments[0])
            if stage is not None:
                # "/prod/" is the stage's root, as "/prod" is.
                return stage, segments[1:] if segments[1:] != [""] else []
        if self._default is not None:
            return self._default, segments
        return None


class ExactPaths(Generic[P, T]):
    """The routes without parameters of every stage, by the raw request path that reaches them.

    A path is indexed only when :func:`split_path` and :class:`StageResolver`
    take it to that route's node, so a hit here is what the walk would find
    first (a literal child is always tried first); a miss, or a node with no
    target for the method, means: walk.
    """

    __slots__ = ("_nodes",)

    def __init__(self, stages: dict[str, tuple[P, Router[T]]]) -> None:
        """``stages``: by stage name, where it is served and its router."""
        self._nodes: dict[str, tuple[P, _Node[T]]] = {}
        named = {name for name in stages if name != DEFAULT_STAGE}
        for stage, (place, router) in stages.items():
            prefix = () if stage == DEFAULT_STAGE else (stage,)
            for segments, node in router.literal_paths.items():
                path = "/" + "/".join(prefix + segments)
                if "%" in path or (not prefix and segments and segments[0] in named):
                    continue  # a decoded request could reach it another way, or a stage shadows it
                self._nodes[path] = (place, node)

    def match(self, method: str, raw_path: str) -> tuple[P, T] | None:
        """Where the stage is served and the target for ``method`` at exactly ``raw_path``, or None."""
        found = self._nodes.get(raw_path)
        if found is None:
            return None
        target = found[1].target(method)
        return None if target is None else (found[0], target)


class Domains(Generic[P, T]):
    """Custom domain names: ``Host`` picks a domain, the longest base path that prefixes the path picks its stage.

    What a ``Host`` value resolves to is remembered (up to
    ``_REMEMBERED_HOSTS`` values), so a request pays one dict look-up for it.
    """

    __slots__ = ("_names", "_remembered")

    def __init__(self, domains: dict[str, list[tuple[str, P, Router[T]]]]) -> None:
        """``domains``: each name's (base path, where it is served, its router); ``*.example.com`` matches one label more."""
        self._names = DomainNames({name: BasePaths(mappings) for name, mappings in domains.items()})
        self._remembered: dict[bytes | None, BasePaths[P, T] | None] = {}

    def lookup(self, host: bytes | None) -> BasePaths[P, T] | None:
        """The base paths of the domain a ``Host`` header names; None when it names none."""
        try:
            return self._remembered[host]
        except KeyError:
            return self._remember(host)

    def _remember(self, host: bytes | None) -> BasePaths[P, T] | None:
        paths = None
        if host:
            name = host.decode("latin-1")
            paths = self._names.find(name.partition("]")[0] + "]" if name.startswith("[") else name.partition(":")[0])
        if len(self._remembered) >= _REMEMBERED_HOSTS:
            self._remembered.clear()
        self._remembered[host] = paths
        return paths


_REMEMBERED_HOSTS = 1024


class BasePaths(Generic[P, T]):
    """One domain's base paths, longest first, and (as :class:`ExactPaths` does) its routes without parameters by raw path."""

    __slots__ = ("_mappings", "_exact")

    def __init__(self, mappings: list[tuple[str, P, Router[T]]]) -> None:
        split = [(tuple(base_path.split("/")) if base_path else (), place, router) for base_path, place, router in mappings]
        self._mappings = sorted(split, key=lambda mapping: -len(mapping[0]))
        # Raw path -> (where, route node, the path the API sees), where the walk would take that path too.
        self._exact: dict[str, tuple[P, _Node[T], str]] = {}
        for base, place, router in self._mappings:
            for segments, node in router.literal_paths.items():
                raw = "/" + "/".join(base + segments)
                found = self.resolve(list(base + segments))
                if "%" not in raw and found is not None and found[3] == len(base):
                    self._exact.setdefault(raw, (place, node, "/" + "/".join(segments)))

    def match_exact(self, method: str, raw_path: str) -> tuple[P, T, str] | None:
        """(where, target, the path the API sees) for a route without parameters; None: walk."""
        hit = self._exact.get(raw_path)
        if hit is None:
            return None
        target = hit[1].target(method)
        return None if target is None else (hit[0], target, hit[2])

    def resolve(self, segments: list[str]) -> tuple[P, Router[T], list[str], int] | None:
        """(where, its router, the segments after the base path, how many the base path has); None: none matches."""
        for base, place, router in self._mappings:
            if tuple(segments[: len(base)]) == base:
                rest = segments[len(base) :]
                return place, router, rest if rest != [""] or not base else [], len(base)
        return None
