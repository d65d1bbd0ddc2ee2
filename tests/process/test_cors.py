"""CORS through the real daemon: preflights answered by gwd, Access-Control-* headers on every response, cache, config checks."""

from __future__ import annotations

import pytest
from backend import Backend
from jwks_server import JsonServer
from support import request

APP = "https://app.example.com"

CONFIG = """
cors = {{ allow_origins = ["{app}", "https://admin.example.com"], allow_methods = ["GET", "POST"], \
allow_headers = ["Authorization", "X-Trace"], expose_headers = ["X-Request-Id"], max_age = 600, allow_credentials = true }}

[[authorizers]]
name = "gate"
type = "request"
uri = "{authorizer}"
identity_sources = ["header:Authorization"]

[[routes]]
route = "POST /orders"
integration = {{ type = "http", uri = "{backend}/orders" }}
authorizer = "gate"
client_throttle = {{ rate = 0.001, burst = 1, key = "ip" }}

[[routes]]
route = "GET /open"
integration = {{ type = "http", uri = "{backend}/with-cors" }}

[[routes]]
route = "GET /cached"
integration = {{ type = "mock", body = '{{"cached": true}}' }}
cache = {{ ttl = "300s" }}

[[routes]]
route = "GET /public"
integration = {{ type = "mock", body = '{{"public": true}}' }}
cors = {{ allow_origins = ["*"], allow_headers = ["*"] }}
"""


def decide(event: dict) -> tuple[int, dict]:
    return 200, {"isAuthorized": event["identitySource"] == ["Bearer good"]}


@pytest.fixture
def servers():
    with JsonServer(decide) as authorizer, Backend() as backend:
        yield authorizer, backend


@pytest.fixture
def daemon(start_daemon, servers):
    authorizer, backend = servers
    return start_daemon(CONFIG.format(app=APP, authorizer=authorizer.url, backend=backend.url), workers=1)


def preflight(daemon, path: str, origin: str, method: str, headers: str | None = None):
    sent = {"Origin": origin, "Access-Control-Request-Method": method}
    if headers is not None:
        sent["Access-Control-Request-Headers"] = headers
    return request(daemon.port, "OPTIONS", path, sent)


def cors_headers(reply) -> dict[str, str]:
    return {name: value for name, value in reply.headers.items() if name.startswith("access-control-")}


def test_a_preflight_is_answered_by_the_gateway_before_authorizer_throttle_and_backend(daemon, servers):
    authorizer, backend = servers
    for _ in range(3):  # the route's limit (burst 1) would refuse the second if preflights were throttled
        reply = preflight(daemon, "/orders", APP, "POST", "authorization, x-trace")
        assert reply.status == 204 and reply.body == b""
        assert cors_headers(reply) == {
            "access-control-allow-origin": APP,
            "access-control-allow-credentials": "true",
            "access-control-allow-methods": "GET, POST",
            "access-control-allow-headers": "Authorization, X-Trace",
            "access-control-max-age": "600",
        }
        assert reply.headers["vary"] == "Origin"
    assert authorizer.fetches == 0 and backend.received == []


def test_a_disallowed_origin_gets_no_access_control_headers(daemon, servers):
    reply = preflight(daemon, "/orders", "https://evil.example.net", "POST")
    assert reply.status == 204 and cors_headers(reply) == {}
    actual = request(daemon.port, "GET", "/open", {"Origin": "https://evil.example.net"})
    assert actual.status == 200 and cors_headers(actual) == {}
    assert actual.headers["vary"] == "Origin"


def test_responses_and_errors_carry_the_headers_and_the_backend_s_own_are_replaced(daemon, servers):
    ok = request(daemon.port, "GET", "/open", {"Origin": APP})
    assert ok.status == 200
    # The backend said "Access-Control-Allow-Origin: *" and more: the API's policy replaces them.
    assert cors_headers(ok) == {
        "access-control-allow-origin": APP,
        "access-control-allow-credentials": "true",
        "access-control-expose-headers": "X-Request-Id",
    }
    denied = request(daemon.port, "POST", "/orders", {"Origin": APP, "Authorization": "Bearer bad"})
    assert denied.status == 403 and cors_headers(denied)["access-control-allow-origin"] == APP
    missing = request(daemon.port, "GET", "/nothing-here", {"Origin": APP})
    assert missing.status == 404 and cors_headers(missing)["access-control-allow-origin"] == APP
    allowed = request(daemon.port, "POST", "/orders", {"Origin": APP, "Authorization": "Bearer good"})
    assert allowed.status == 200 and cors_headers(allowed)["access-control-allow-origin"] == APP
    throttled = request(daemon.port, "POST", "/orders", {"Origin": APP, "Authorization": "Bearer good"})
    assert throttled.status == 429 and cors_headers(throttled)["access-control-allow-origin"] == APP


def test_one_cached_entry_serves_each_origin_its_own_header(daemon):
    first = request(daemon.port, "GET", "/cached", {"Origin": APP})
    assert first.headers["x-cache"] == "Miss" and first.headers["access-control-allow-origin"] == APP
    other = request(daemon.port, "GET", "/cached", {"Origin": "https://admin.example.com"})
    assert other.headers["x-cache"] == "Hit"
    assert other.headers["access-control-allow-origin"] == "https://admin.example.com"
    stranger = request(daemon.port, "GET", "/cached", {"Origin": "https://evil.example.net"})
    assert stranger.headers["x-cache"] == "Hit" and "access-control-allow-origin" not in stranger.headers


def test_a_route_s_own_policy_replaces_the_api_s(daemon):
    reply = preflight(daemon, "/public", "https://anyone.example.org", "GET", "x-custom, x-other")
    assert cors_headers(reply) == {
        "access-control-allow-origin": "*",
        "access-control-allow-methods": "GET",
        "access-control-allow-headers": "x-custom, x-other",
    }
    assert "vary" not in reply.headers
    actual = request(daemon.port, "GET", "/public", {"Origin": "https://anyone.example.org"})
    assert cors_headers(actual) == {"access-control-allow-origin": "*"}


def test_without_cors_an_options_request_is_routed_as_any_other(start_daemon):
    daemon = start_daemon('[[routes]]\nroute = "GET /a"\nintegration = { type = "mock" }\n')
    reply = preflight(daemon, "/a", APP, "GET")
    assert reply.status == 404 and cors_headers(reply) == {}


@pytest.mark.parametrize(
    "table, problem",
    [
        ('cors = { allow_origins = ["*"], allow_credentials = true }', "cors.allow_credentials: cannot be true with \"*\""),
        ('cors = { allow_origins = ["app.example.com"] }', "cors.allow_origins[0]: not an origin: 'app.example.com'"),
        ('cors = { allow_origins = ["*"], allow_methods = ["FETCH"] }', "cors.allow_methods[0]: not a method: 'FETCH'"),
        ("cors = { max_age = 10 }", "cors.allow_origins: missing"),
    ],
)
def test_bad_cors_tables_are_refused_at_load(tmp_path, table, problem):
    from gwd.config.reader import load_config

    path = tmp_path / "gwd.toml"
    path.write_text(table + '\n[[routes]]\nroute = "GET /a"\nintegration = { type = "mock" }\n')
    with pytest.raises(Exception) as raised:
        load_config(str(path))
    assert problem in str(raised.value)
