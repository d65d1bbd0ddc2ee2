"""Custom authorizers (HTTP endpoint or Python function): allow, deny, context headers, cache, failures."""

from __future__ import annotations

import pytest
from backend import Backend
from jwks_server import JsonServer
from support import raw_exchange, request, wait_for

pytestmark = pytest.mark.process

CONFIG = """
[log]
access = "stdout"

[[authorizers]]
name = "gate"
type = "request"
{source}
identity_sources = ["header:Authorization"]
context_headers = {{ tenant = "X-Tenant" }}
timeout = "500ms"

[[routes]]
route = "GET /orders"
integration = {{ type = "http", uri = "{backend}/orders" }}
authorizer = "gate"
"""


def decide(event: dict) -> tuple[int, dict]:
    allowed = event["identitySource"] == ["Bearer good"]
    return 200, {"isAuthorized": allowed, "context": {"tenant": "acme"}, "principalId": "svc-1"}


def get(daemon, authorization: str | None, **headers: str) -> int:
    if authorization is not None:
        headers["Authorization"] = authorization
    return request(daemon.port, "GET", "/orders", headers=headers).status


def test_allow_deny_context_and_the_cached_decision(start_daemon):
    with JsonServer(decide) as authorizer, Backend() as backend:
        daemon = start_daemon(CONFIG.format(source=f'uri = "{authorizer.url}"', backend=backend.url), workers=1)
        assert get(daemon, "Bearer good", **{"X-Tenant": "forged"}) == 200
        assert get(daemon, "Bearer bad") == 403
        assert get(daemon, None) == 401  # no identity source: the authorizer is not asked
        assert authorizer.fetches == 2
        event = authorizer.requests[0]
        assert event["type"] == "REQUEST" and event["routeKey"] == "GET /orders"
        assert event["requestContext"]["http"]["sourceIp"] == "127.0.0.1"
        # The context reached the backend as the mapped header, the client's forgery did not.
        assert [value for name, value in backend.received[0].headers if name.lower() == "x-tenant"] == ["acme"]
        # Decisions are remembered per identity: no second call for either token.
        assert get(daemon, "Bearer good") == 200
        assert get(daemon, "Bearer bad") == 403
        assert authorizer.fetches == 2
        assert len(backend.received) == 2
        wait_for(lambda: len(daemon.access_lines()) == 5, 10, "five access-log lines")
        assert {line["principalId"] for line in daemon.access_lines() if line["status"] == 200} == {"svc-1"}


@pytest.mark.parametrize(
    "case,status",
    [("down", 503), ("too slow", 503), ("answers 500", 500), ("no decision in the answer", 500)],
)
def test_an_authorizer_failure_is_never_an_allow(start_daemon, case, status):
    handlers = {
        "too slow": decide,
        "answers 500": lambda _: (500, {"error": "boom"}),
        "no decision in the answer": lambda _: (200, {"allow": True}),
    }
    with JsonServer(handlers.get(case, decide), delay=2.0 if case == "too slow" else 0.0) as authorizer, Backend() as backend:
        uri = "http://127.0.0.1:9/" if case == "down" else authorizer.url
        daemon = start_daemon(CONFIG.format(source=f'uri = "{uri}"', backend=backend.url), workers=1)
        reply = request(daemon.port, "GET", "/orders", headers={"Authorization": "Bearer good"})
        assert reply.status == status
        assert backend.received == []
        wait_for(lambda: "authorizer gate failed" in daemon.stderr(), 10, "the failure in the log")


def test_a_python_function_authorizer(start_daemon):
    with Backend() as backend:
        daemon = start_daemon(
            CONFIG.format(source='function = "tests.authorizer_function:decide"', backend=backend.url), workers=1
        )
        assert get(daemon, "let-me-in") == 200
        assert get(daemon, "not-me") == 403
        assert backend.received[0].header("X-Tenant") == "from-function"

        broken = start_daemon(
            CONFIG.format(source='function = "tests.authorizer_function:broken"', backend=backend.url), workers=1
        )
        assert get(broken, "let-me-in") == 500
        wait_for(lambda: "RuntimeError: the authorizer has a bug" in broken.stderr(), 10, "the traceback in the log")
        assert len(backend.received) == 1


def test_bytes_that_are_not_utf8_reach_the_authorizer_as_replacement_characters(start_daemon):
    """An identity, header or query byte that is no UTF-8 is U+FFFD in the event: a surrogate would be no JSON (500)."""
    with JsonServer(decide) as authorizer, Backend() as backend:
        daemon = start_daemon(CONFIG.format(source=f'uri = "{authorizer.url}"', backend=backend.url), workers=1)
        sent = b"GET /orders?q=%FF HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer \xff\r\nX-Bin: a\xffb\r\nConnection: close\r\n\r\n"
        assert raw_exchange(daemon.port, sent).startswith(b"HTTP/1.1 403 ")
        event = authorizer.requests[0]
        assert event["identitySource"] == ["Bearer \ufffd"]
        assert event["headers"]["x-bin"] == "a\ufffdb" and event["queryStringParameters"] == {"q": "\ufffd"}
