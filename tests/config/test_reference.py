"""Config keys are declared once (gwd/config/keys.py): the reader's defaults and ranges and the README's tables come from it."""

from __future__ import annotations

import pytest
from support import ROOT

from gwd.config.keys import BY_TABLE, KEYS, reference_table
from gwd.config.reader import load_config

README = (ROOT / "README.md").read_text()
DAEMON_WIDE = {"server", "log", "throttle", "cache", "admin", "metrics"}
TABLES = [  # (tables, qualified names, a default column): each of the README's key tables
    (("server",), False, True),
    (("listener_tls",), False, True),
    (("log",), False, True),
    (("throttle",), False, True),
    (("cache",), False, True),
    (("stage",), False, True),
    (("mock",), False, True),
    (("http",), False, True),
    (("upstream",), False, True),
    (("health",), False, True),
    (("retries",), False, True),
    (("function",), False, True),
    (("mapping",), False, True),
    (("integration_response",), False, True),
    (("aws",), False, True),
    (("gateway_response",), False, True),
    (("backend_tls",), False, True),
    (("cache_policy",), False, True),
    (("api",), False, True),
    (("domain",), False, True),
    (("cors",), False, True),
    (("compression",), False, True),
    (("jwt_authorizer",), False, True),
    (("request_authorizer",), False, True),
    (("admin", "metrics"), True, True),
    (("route",), False, False),
    (("usage_plan",), False, False),
]


@pytest.mark.parametrize("tables, qualified, defaults", TABLES)
def test_the_readme_reference_table_is_the_declarations(tables, qualified, defaults):
    table = reference_table(tables, qualified, defaults)
    assert table in README, f"README.md should hold this table as it is:\n{table}"


def test_every_key_table_of_the_readme_comes_from_the_declarations():
    headers = README.count("| key | default | meaning |") + README.count("| key | meaning |")
    assert headers == len(TABLES)


def test_a_config_that_sets_nothing_gets_every_declared_default(tmp_path):
    path = tmp_path / "gwd.toml"
    path.write_text(f'[server]\nstate_dir = "{tmp_path}"\n\n[[routes]]\nroute = "GET /x"\nintegration = {{ type = "mock" }}\n')
    config = load_config(str(path))
    sections = {"server": config.server, "log": config.log, "throttle": config.throttle, "cache": config.cache,
                "metrics": config.metrics, "admin": config.admin}
    checked = 0
    for key in KEYS:
        if key.table not in sections:
            continue
        if key.kind == "custom" and key.default is None:
            continue  # computed where it is read (state_dir) or absent unless set (tls, user)
        value = getattr(sections[key.table], key.name)
        if key.table == "server" and key.name == "workers":
            assert key.default == 0 and value >= 1  # 0 means one per usable CPU
        else:
            assert value == key.default, key
        checked += 1
    assert checked == sum(1 for key in KEYS if key.table in sections) - 3


def test_routes_that_set_nothing_get_the_declared_defaults(tmp_path):
    path = tmp_path / "gwd.toml"
    path.write_text(
        f'[server]\nstate_dir = "{tmp_path}"\n\n'
        '[[routes]]\nroute = "GET /mock"\nintegration = { type = "mock" }\ncache = {}\n\n'
        '[[routes]]\nroute = "GET /http"\nintegration = { type = "http", uri = "https://127.0.0.1:9/", tls = {} }\n'
    )
    mock_route, http_route = load_config(str(path)).apis[0].routes
    declared = {table: {name: key.default for name, key in keys.items()} for table, keys in BY_TABLE.items()}
    mock = mock_route.integration
    assert (mock.status, mock.body, mock.delay) == tuple(declared["mock"][name] for name in ("status", "body", "delay"))
    http = http_route.integration
    assert (http.timeout, http.connect_timeout, http.preserve_host) == tuple(
        declared["http"][name] for name in ("timeout", "connect_timeout", "preserve_host")
    )
    assert http.tls.insecure_skip_verify == declared["backend_tls"]["insecure_skip_verify"]
    policy = mock_route.cache
    cache = declared["cache_policy"]
    assert (policy.ttl, policy.per_identity, policy.respect_backend, policy.invalidation) == (
        cache["ttl"], cache["per_identity"], cache["respect_backend"], cache["invalidation"]
    )
    assert policy.statuses == frozenset(cache["statuses"])


@pytest.mark.parametrize(
    "key",
    [key for key in KEYS if key.kind in ("integer", "duration") and key.table in DAEMON_WIDE],
    ids=lambda key: f"{key.table}.{key.name}",
)
def test_the_reader_refuses_a_value_past_a_declared_range(tmp_path, key):
    too_big = f'"{key.high * 2:g}s"' if key.kind == "duration" else str(int(key.high) + 1)
    path = tmp_path / "gwd.toml"
    path.write_text(f'[{key.table}]\n{key.name} = {too_big}\n\n[[routes]]\nroute = "GET /x"\nintegration = {{ type = "mock" }}\n')
    with pytest.raises(Exception) as raised:
        load_config(str(path))
    assert f"{key.table}.{key.name}" in str(raised.value)


def test_every_table_with_declared_keys_is_listed():
    per_route = {"listener_tls", "stage", "mock", "http", "function", "backend_tls", "cache_policy", "jwt_authorizer", "request_authorizer"}
    per_route |= {"route", "usage_plan", "aws", "mapping", "integration_response", "gateway_response"}
    per_api = {"api", "domain", "cors", "compression", "upstream", "retries", "health"}
    assert set(BY_TABLE) == DAEMON_WIDE | per_route | per_api


def test_an_empty_compression_table_gets_the_declared_defaults_and_bad_values_are_named(tmp_path):
    path = tmp_path / "gwd.toml"
    route = '[[routes]]\nroute = "GET /x"\nintegration = { type = "mock" }\n'
    path.write_text("compression = {}\n" + route)
    compression = load_config(str(path)).apis[0].compression
    declared = {name: key.default for name, key in BY_TABLE["compression"].items()}
    assert compression is not None
    assert {name: getattr(compression, name) for name in declared} == declared
    path.write_text('compression = { encodings = ["gzip", "deflate", "gzip"], types = ["text"], br_quality = 12 }\n' + route)
    with pytest.raises(Exception) as raised:
        load_config(str(path))
    problems = str(raised.value)
    assert "compression.encodings[1]: unknown encoding 'deflate' (supported: br, gzip)" in problems
    assert "compression.encodings: names an encoding twice" in problems
    assert "compression.types[0]: not a media type pattern: 'text' (write type/subtype, type/*, or type/*+suffix)" in problems
    assert "compression.br_quality: must be between 0 and 11, got 12" in problems


@pytest.mark.parametrize(
    "route, key_path",
    [
        ('integration = { type = "mock", status = %s }', "routes[0].integration.status"),
        ('integration = { type = "mock", delay = %s }', "routes[0].integration.delay"),
        ('integration = { type = "http", uri = "http://127.0.0.1:9/", timeout = %s }', "routes[0].integration.timeout"),
        (
            'integration = { type = "http", uri = "http://127.0.0.1:9/", connect_timeout = %s }',
            "routes[0].integration.connect_timeout",
        ),
        ('integration = { type = "mock" }\ncache = { ttl = %s }', "routes[0].cache.ttl"),
    ],
)
def test_route_values_past_a_declared_range_are_refused(tmp_path, route, key_path):
    table, name = key_path.split(".")[-2:]
    key = BY_TABLE["cache_policy" if table == "cache" else "mock" if "mock" in route else "http"][name]
    too_big = f'"{key.high * 2:g}s"' if key.kind == "duration" else str(int(key.high) + 1)
    path = tmp_path / "gwd.toml"
    path.write_text(f'[[routes]]\nroute = "GET /x"\n{route % too_big}\n')
    with pytest.raises(Exception) as raised:
        load_config(str(path))
    assert key_path in str(raised.value), str(raised.value)


def test_authorizers_that_set_nothing_get_the_declared_defaults(tmp_path):
    path = tmp_path / "gwd.toml"
    path.write_text(
        '[[authorizers]]\nname = "users"\ntype = "jwt"\nissuer = "https://issuer.example"\naudience = "gwd"\n'
        'jwks_uri = "https://127.0.0.1:9/jwks.json"\n\n'
        '[[authorizers]]\nname = "decide"\ntype = "request"\nuri = "http://127.0.0.1:9/"\nidentity_sources = ["ip"]\n\n'
        '[[routes]]\nroute = "GET /x"\nintegration = { type = "mock" }\n'
    )
    jwt, request = load_config(str(path)).apis[0].authorizers
    declared = {table: {name: key.default for name, key in keys.items()} for table, keys in BY_TABLE.items()}
    expected = declared["jwt_authorizer"]
    assert (jwt.leeway, jwt.header, jwt.algorithms) == (expected["leeway"], expected["header"], expected["algorithms"])
    assert (request.ttl, request.timeout) == (declared["request_authorizer"]["ttl"], declared["request_authorizer"]["timeout"])
