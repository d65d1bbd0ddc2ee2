"""Route matching: precedence, parameters, greedy paths, ANY, stages, 404 — table-driven."""

from __future__ import annotations

import pytest

from gwd.config.values import parse_route_key
from gwd.pipeline.routing import ExactPaths, Router, StageResolver, UnsafePath, split_path

ROUTES = [
    "GET /pets",
    "GET /pets/{id}",
    "GET /pets/dog",
    "POST /pets/{id}",
    "ANY /pets/{id}/toys",
    "GET /pets/{id}/toys",
    "GET /files/{proxy+}",
    "GET /files/special/{name}",
    "ANY /api/{proxy+}",
    "GET /a/{x}/c",
    "GET /a/b/{y}",
    "GET /",
    "DELETE /only-delete",
]

CASES = [
    # method, path, expected route key or None, expected params
    ("GET", "/pets", "GET /pets", []),
    ("GET", "/pets/7", "GET /pets/{id}", ["7"]),
    ("GET", "/pets/dog", "GET /pets/dog", []),  # literal beats {param}
    ("POST", "/pets/dog", "POST /pets/{id}", ["dog"]),  # literal path lacks POST: fall back to {param}
    ("PUT", "/pets/7", None, []),
    ("GET", "/pets/7/toys", "GET /pets/{id}/toys", ["7"]),  # exact method beats ANY
    ("DELETE", "/pets/7/toys", "ANY /pets/{id}/toys", ["7"]),
    ("GET", "/files/a", "GET /files/{proxy+}", ["a"]),
    ("GET", "/files/a/b/c.txt", "GET /files/{proxy+}", ["a/b/c.txt"]),
    ("GET", "/files/special/x", "GET /files/special/{name}", ["x"]),  # {param} beats greedy
    ("GET", "/files/special/x/y", "GET /files/{proxy+}", ["special/x/y"]),
    ("GET", "/files", None, []),  # greedy needs at least one segment
    ("GET", "/files/", None, []),
    ("PATCH", "/api/v1/users", "ANY /api/{proxy+}", ["v1/users"]),
    ("GET", "/a/b/c", "GET /a/b/{y}", ["c"]),  # leftmost literal wins
    ("GET", "/a/z/c", "GET /a/{x}/c", ["z"]),
    ("GET", "/", "GET /", []),
    ("GET", "/pets/", None, []),  # an empty segment is no {param}
    ("HEAD", "/pets/7", "GET /pets/{id}", ["7"]),  # HEAD is served by GET
    ("GET", "/only-delete", None, []),
    ("GET", "/pets/a%20b", "GET /pets/{id}", ["a b"]),  # decoded after splitting
    ("GET", "/pets/caf%C3%A9", "GET /pets/{id}", ["café"]),
    ("GET", "/nothing/here", None, []),
]


def make_router(keys: list[str]) -> Router[str]:
    return Router([(parse_route_key(key), key) for key in keys])


@pytest.mark.parametrize("method,path,expected,params", CASES, ids=[f"{c[0]} {c[1]}" for c in CASES])
def test_precedence(method, path, expected, params):
    found = make_router(ROUTES).match(method, split_path(path))
    if expected is None:
        assert found is None
    else:
        assert found == (expected, params)


@pytest.mark.parametrize("order", ["as listed", "reversed"])
def test_file_order_does_not_matter(order):
    keys = ROUTES if order == "as listed" else list(reversed(ROUTES))
    router = make_router(keys)
    for method, path, expected, params in CASES:
        found = router.match(method, split_path(path))
        assert (found[0] if found else None) == expected, (method, path)


def test_default_route_catches_what_nothing_else_matches():
    router = make_router(["GET /pets", "$default"])
    assert router.match("GET", split_path("/pets")) == ("GET /pets", [])
    assert router.match("POST", split_path("/anything/else")) == ("$default", [])


def test_thousands_of_routes_match_by_walking_the_path():
    keys = [f"GET /svc{i}/items/{{id}}" for i in range(5000)]
    router = make_router(keys)
    assert router.match("GET", split_path("/svc4999/items/42")) == ("GET /svc4999/items/{id}", ["42"])
    assert router.match("GET", split_path("/svc5000/items/42")) is None


STAGES = {"prod": "prod-router", "beta": "beta-router", "$default": "default-router"}


@pytest.mark.parametrize(
    "path,expected",
    [
        ("/prod/pets", ("prod-router", ["pets"])),
        ("/beta/pets/1", ("beta-router", ["pets", "1"])),
        ("/prod", ("prod-router", [])),
        ("/pets", ("default-router", ["pets"])),
        ("/", ("default-router", [])),
        ("/production/pets", ("default-router", ["production", "pets"])),
    ],
)
def test_stage_prefixes(path, expected):
    assert StageResolver(STAGES).resolve(split_path(path)) == expected


def test_without_a_default_stage_unprefixed_paths_match_nothing():
    resolver = StageResolver({"prod": "prod-router"})
    assert resolver.resolve(split_path("/pets")) is None
    assert resolver.resolve(split_path("/prod/pets")) == ("prod-router", ["pets"])


def test_exact_paths_find_what_the_walk_finds_first():
    """Every path the index answers, it answers as stage resolution and the trie walk do; the rest it leaves to them."""
    stage_routes = {"$default": ROUTES + ["GET /prod/shadowed", "GET /caf%C3%A9"], "prod": ["GET /pets", "ANY /", "GET /x/{y}"]}
    routers = {name: make_router(keys) for name, keys in stage_routes.items()}
    stages = {name: (name, router) for name, router in routers.items()}
    index = ExactPaths(stages)
    resolver = StageResolver(stages)
    paths = [case[1] for case in CASES] + ["/prod", "/prod/", "/prod/pets", "/prod/x/1", "/prod/shadowed", "/caf%C3%A9", "/pets/"]
    answered = set()
    for method in ("GET", "HEAD", "POST", "DELETE", "PATCH"):
        for path in paths:
            exact = index.match(method, path)
            if exact is None:
                continue
            answered.add((method, path))
            (stage, router), rest = resolver.resolve(split_path(path))
            assert exact == (stage, router.match(method, rest)[0]), (method, path)
    # Fixed paths are answered (HEAD by GET, any method by ANY), parameters and shadowed paths are not.
    assert {("GET", "/pets"), ("HEAD", "/pets"), ("GET", "/pets/dog"), ("GET", "/"), ("DELETE", "/only-delete")} <= answered
    assert {("GET", "/prod"), ("PATCH", "/prod"), ("GET", "/prod/pets")} <= answered
    assert not {path for _, path in answered} & {"/pets/7", "/prod/x/1", "/prod/shadowed", "/caf%C3%A9", "/pets/", "/prod/"}
    assert index.match("POST", "/pets/dog") is None  # the literal path has no POST: the walk finds POST /pets/{id}


@pytest.mark.parametrize(
    "path",
    ["/a/../admin", "/a/./b", "/a/%2e%2e/admin", "/a/%2E%2e/admin", "/a/.%2e/b", "/%2e", "//admin", "/a//b",
     "/files/a%2Fb", "/files/a%2f..%2fsecret", "/files/a%5Cb", "/files/a%00b", ".."],
)
def test_paths_a_backend_could_read_differently_are_refused(path):
    with pytest.raises(UnsafePath):
        split_path(path)


@pytest.mark.parametrize(
    "path,segments",
    [("/", []), ("/a/b", ["a", "b"]), ("/a/b/", ["a", "b", ""]), ("/a/%41%20b", ["a", "A b"]), ("/a/...", ["a", "..."]),
     ("/a/.hidden", ["a", ".hidden"])],
)
def test_ordinary_paths_split_and_decode(path, segments):
    assert split_path(path) == segments
