"""Function integrations through the real daemon: unmodified Lambda handlers, AWS's events and response rules."""

from __future__ import annotations

import base64
import http.client
import json
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import jwt
import orjson
import pytest
from support import ROOT, Reply, request, scrape, total, wait_for

pytestmark = pytest.mark.process

HANDLERS = ROOT / "tests" / "lambda_handlers"
SECRET = "a-shared-secret-for-tests-only-0123456789"
CLF_TIME = re.compile(r"\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d \+0000")


def send(port: int, method: str, path: str, headers: list[tuple[str, str]] = (), body: bytes | None = None) -> Reply:
    """One request on a fresh connection, headers in order (a name may repeat)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        for name, value in headers:
            conn.putheader(name, value)
        if body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        response = conn.getresponse()
        return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
    finally:
        conn.close()


def raw_headers(port: int, path: str) -> list[tuple[str, str]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        return [(name.lower(), value) for name, value in response.getheaders()]
    finally:
        conn.close()


def function(handler: str, **settings: str) -> str:
    extra = "".join(f", {name} = {value}" for name, value in settings.items())
    return f'{{ type = "function", handler = "{handler}", code_dir = "{HANDLERS}"{extra} }}'


def seen(reply: Reply) -> dict:
    assert reply.status == 200, (reply.status, reply.body)
    return orjson.loads(reply.body)


def secret_file(tmp_path: Path) -> Path:
    path = tmp_path / "jwt.secret"
    path.write_text(SECRET)
    path.chmod(0o600)
    return path


def test_a_payload_2_event_carries_every_field_of_the_request(start_daemon, tmp_path):
    config = f"""
[[stages]]
name = "prod"
variables = {{ table = "items-prod" }}

[[authorizers]]
name = "users"
type = "jwt"
issuer = "https://issuer.test"
audience = "gwd"
algorithms = ["HS256"]
secret_file = "{secret_file(tmp_path)}"

[[routes]]
route = "POST /items/{{id}}"
integration = {function("echo:handler", environment='{ TABLE = "${stageVariables.table}", GREETING = "hi" }', memory_mb="256")}
authorizer = "users"
"""
    daemon = start_daemon(config, workers=1)
    now = int(time.time())
    claims = {"iss": "https://issuer.test", "aud": "gwd", "sub": "user-7", "exp": now + 300, "scope": "items:write items:read"}
    token = jwt.encode(claims, SECRET, algorithm="HS256")
    body = b'{"name": "lamp"}'
    sent_at = time.time()
    reply = send(
        daemon.port,
        "POST",
        "/prod/items/42?color=red&color=blue&size=L&empty=",
        [
            ("Authorization", f"Bearer {token}"),
            ("Content-Type", "application/json"),
            ("Cookie", "session=abc; theme=dark"),
            ("Cookie", "late=1"),
            ("X-Multi", "a"),
            ("X-Multi", "b"),
            ("User-Agent", "tests/1.0"),
        ],
        body,
    )
    got = seen(reply)
    event, context = got["event"], got["context"]
    assert event["version"] == "2.0"
    assert event["routeKey"] == "POST /items/{id}"
    assert event["rawPath"] == "/prod/items/42"
    assert event["rawQueryString"] == "color=red&color=blue&size=L&empty="
    assert event["cookies"] == ["session=abc", "theme=dark", "late=1"]
    headers = event["headers"]
    assert headers["x-multi"] == "a,b" and headers["user-agent"] == "tests/1.0"
    assert headers["content-type"] == "application/json" and headers["content-length"] == str(len(body))
    assert headers["authorization"] == f"Bearer {token}" and headers["host"] == f"127.0.0.1:{daemon.port}"
    assert "cookie" not in headers and all(name == name.lower() for name in headers)
    assert event["queryStringParameters"] == {"color": "red,blue", "size": "L", "empty": ""}
    assert event["pathParameters"] == {"id": "42"}
    assert event["stageVariables"] == {"table": "items-prod"}
    assert event["body"] == body.decode() and event["isBase64Encoded"] is False
    rc = event["requestContext"]
    assert rc["http"] == {
        "method": "POST", "path": "/prod/items/42", "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": "tests/1.0",
    }
    assert rc["requestId"] == reply.headers["x-request-id"] == context["aws_request_id"]
    assert rc["routeKey"] == "POST /items/{id}" and rc["stage"] == "prod"
    assert (rc["accountId"], rc["apiId"], rc["domainName"], rc["domainPrefix"]) == ("000000000000", "gwd", "127.0.0.1", "127")
    assert CLF_TIME.fullmatch(rc["time"])
    assert abs(rc["timeEpoch"] / 1000 - sent_at) < 5
    assert rc["authorizer"] == {"jwt": {"claims": claims, "scopes": ["items:read", "items:write"]}}
    assert "authentication" not in rc  # no client certificate on a plain listener
    # The context and environment AWS's Python runtime gives.
    assert context["function_name"] == "echo-handler" and context["function_version"] == "$LATEST"
    assert context["invoked_function_arn"].endswith(":000000000000:function:echo-handler")
    assert context["memory_limit_in_mb"] == "256"
    assert context["log_group_name"] == "/aws/lambda/echo-handler" and "[$LATEST]" in context["log_stream_name"]
    assert 25_000 < context["remaining_ms"] <= 29_000
    assert context["identity"] is None and context["client_context"] is None
    assert got["environ"] == {
        "GREETING": "hi", "TABLE": "items-prod", "AWS_LAMBDA_FUNCTION_NAME": "echo-handler",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256", "_HANDLER": "echo:handler", "_X_AMZN_TRACE_ID": None,
    }
    assert got["imported_with"] == "hi"  # the module was imported with the function's environment

    # A body that is not text travels base64-encoded; no body, no cookies, no query: those fields are left out.
    binary = bytes(range(256))
    got = seen(send(daemon.port, "POST", "/prod/items/7", [("Authorization", f"Bearer {token}"),
                                                          ("Content-Type", "application/octet-stream")], binary))
    assert got["event"]["isBase64Encoded"] is True and base64.b64decode(got["event"]["body"]) == binary
    got = seen(send(daemon.port, "POST", "/prod/items/7", [("Authorization", f"Bearer {token}")], b""))
    assert {"cookies", "queryStringParameters", "body"}.isdisjoint(got["event"]) and got["event"]["isBase64Encoded"] is False
    assert send(daemon.port, "POST", "/prod/items/7").status == 401  # the authorizer still guards the route


def gwd_keys(config_path: Path, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "gwd", "keys", *args, "-c", str(config_path)], capture_output=True, text=True, cwd=ROOT, timeout=30
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_payload_1_event_carries_every_field_of_the_request(start_daemon, tmp_path):
    config = f"""
[server]
state_dir = "{tmp_path / "state"}"

[[stages]]
name = "prod"
variables = {{ color = "blue" }}

[[stages]]
name = "$default"

[[authorizers]]
name = "gate"
type = "request"
function = "tests.authorizer_function:decide"
identity_sources = ["header:Authorization"]

[[routes]]
route = "PUT /items/{{id}}"
integration = {function("echo:handler", payload_format='"1.0"')}
authorizer = "gate"
api_key_required = true

[[routes]]
route = "GET /files/{{proxy+}}"
integration = {function("echo:handler", payload_format='"1.0"')}

[[routes]]
route = "GET /plain"
integration = {function("echo:handler", payload_format='"1.0"')}
"""
    daemon = start_daemon(config, workers=1)
    key = gwd_keys(daemon.config_path, "create", "--name", "alice").strip().splitlines()[-1]
    key_id = gwd_keys(daemon.config_path, "list").split("alice", 1)[1].split()[0]
    headers = [("Authorization", "let-me-in"), ("x-api-key", key), ("X-Multi", "a"), ("x-multi", "b"),
               ("Content-Type", "text/plain; charset=utf-8"), ("User-Agent", "tests/1.0")]

    def put() -> Reply:
        return send(daemon.port, "PUT", "/prod/items/42?tag=a&tag=b&one=1", headers, "déjà".encode())

    wait_for(lambda: put().status == 200, 10, "the new API key to be accepted")
    reply = put()
    event = seen(reply)["event"]
    assert event["version"] == "1.0"
    assert event["resource"] == "/items/{id}" and event["path"] == "/items/42" and event["httpMethod"] == "PUT"
    assert event["headers"]["X-Multi"] == "b" and event["multiValueHeaders"]["X-Multi"] == ["a", "b"]
    assert event["headers"]["User-Agent"] == "tests/1.0" and event["multiValueHeaders"]["Authorization"] == ["let-me-in"]
    assert event["queryStringParameters"] == {"tag": "b", "one": "1"}
    assert event["multiValueQueryStringParameters"] == {"tag": ["a", "b"], "one": ["1"]}
    assert event["pathParameters"] == {"id": "42"} and event["stageVariables"] == {"color": "blue"}
    assert event["body"] == "déjà" and event["isBase64Encoded"] is False
    rc = event["requestContext"]
    assert rc["resourcePath"] == "/items/{id}" and rc["path"] == "/prod/items/42" and rc["stage"] == "prod"
    assert rc["httpMethod"] == "PUT" and rc["protocol"] == "HTTP/1.1"
    assert rc["requestId"] == rc["extendedRequestId"] == reply.headers["x-request-id"]
    assert CLF_TIME.fullmatch(rc["requestTime"]) and abs(rc["requestTimeEpoch"] / 1000 - time.time()) < 10
    identity = rc["identity"]
    assert (identity["sourceIp"], identity["userAgent"]) == ("127.0.0.1", "tests/1.0")
    assert (identity["apiKey"], identity["apiKeyId"]) == (key, key_id)
    assert identity["clientCert"] is None and identity["user"] is None
    # A custom authorizer's principal and context, the values as strings.
    assert rc["authorizer"] == {"principalId": "fn-user", "tenant": "from-function"}

    # A greedy route's parameter is "proxy"; empty collections are null; the $default stage has no prefix.
    event = seen(send(daemon.port, "GET", "/files/a/b.txt"))["event"]
    assert event["pathParameters"] == {"proxy": "a/b.txt"} and event["resource"] == "/files/{proxy+}"
    assert event["path"] == "/files/a/b.txt" and event["requestContext"]["stage"] == "$default"
    assert event["stageVariables"] is None and event["body"] is None
    event = seen(send(daemon.port, "GET", "/plain"))["event"]
    assert event["pathParameters"] is None and event["queryStringParameters"] is None
    assert event["multiValueQueryStringParameters"] is None
    assert event["requestContext"]["identity"]["apiKey"] is None and "authorizer" not in event["requestContext"]


def test_a_request_authorizers_context_reaches_both_payloads(start_daemon):
    config = f"""
[[authorizers]]
name = "typed"
type = "request"
function = "tests.authorizer_function:decide_typed"
identity_sources = ["header:Authorization"]

[[routes]]
route = "GET /v1"
integration = {function("echo:handler", payload_format='"1.0"')}
authorizer = "typed"

[[routes]]
route = "GET /v2"
integration = {function("echo:handler")}
authorizer = "typed"
"""
    daemon = start_daemon(config, workers=1)
    v1 = seen(daemon.get("/v1", headers={"Authorization": "anything"}))["event"]["requestContext"]["authorizer"]
    assert v1 == {"principalId": "typed-user", "tenant": "acme", "tier": "3", "admin": "true"}  # strings, as a REST API's
    v2 = seen(daemon.get("/v2", headers={"Authorization": "anything"}))["event"]["requestContext"]["authorizer"]
    assert v2 == {"lambda": {"tenant": "acme", "tier": 3, "admin": True}}  # as an HTTP API's simple response gives it


def test_client_certificates_reach_the_event(start_daemon, tmp_path):
    pki = tmp_path / "pki"
    for args in (("init", str(pki)), ("issue", str(pki), "--name", "server", "--san", "127.0.0.1"),
                 ("issue", str(pki), "--name", "billing", "--client")):
        subprocess.run([sys.executable, "-m", "gwd", "certs", *args], check=True, capture_output=True, cwd=ROOT, timeout=60)
    config = f"""
[server]
tls = {{ cert = "{pki}/server.pem", key = "{pki}/server.key", client_ca = "{pki}/ca.pem", client_auth = "optional" }}

[[routes]]
route = "GET /v2"
integration = {function("echo:handler")}

[[routes]]
route = "GET /v1"
integration = {function("echo:handler", payload_format='"1.0"')}
"""
    daemon = start_daemon(config, workers=1)
    import ssl

    context = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    context.load_cert_chain(pki / "billing.pem", pki / "billing.key")
    pem = (pki / "billing.pem").read_text()

    def get(path: str) -> dict:
        conn = http.client.HTTPSConnection("127.0.0.1", daemon.port, context=context, timeout=30)
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            assert response.status == 200
            return orjson.loads(response.read())["event"]
        finally:
            conn.close()

    cert = get("/v2")["requestContext"]["authentication"]["clientCert"]
    assert cert["subjectDN"] == "CN=billing" and cert["clientCertPem"].strip() in pem
    assert set(cert) == {"clientCertPem", "subjectDN", "issuerDN", "serialNumber", "validity"}
    assert get("/v1")["requestContext"]["identity"]["clientCert"] == cert


def test_unmodified_example_handlers_answer(start_daemon):
    config = f"""
[[routes]]
route = "GET /hello"
integration = {function("hello.lambda_handler")}

[[routes]]
route = "GET /shop/{{item}}"
integration = {function("shop:get_item")}

[[routes]]
route = "GET /pixel"
integration = {function("images:handler")}

[[routes]]
route = "ANY /rest"
integration = {function("rest:handler", payload_format='"1.0"')}
"""
    daemon = start_daemon(config, workers=1)
    hello = seen(daemon.get("/hello?name=x"))
    assert hello["message"] == "hello world" and hello["input"]["rawPath"] == "/hello"
    assert hello["input"]["queryStringParameters"] == {"name": "x"}

    reply = send(daemon.port, "GET", "/shop/lamp?color=red", [("Cookie", "session=s-1; other=2")])
    assert orjson.loads(reply.body) == {"item": "lamp", "session": "s-1", "color": "red"}
    assert reply.headers["x-item"] == "lamp"
    cookies = [value for name, value in raw_headers(daemon.port, "/shop/lamp") if name == "set-cookie"]
    assert cookies == ["last_item=lamp; Path=/", "visits=1; HttpOnly"]

    pixel = daemon.get("/pixel")
    assert pixel.status == 200 and pixel.headers["content-type"] == "image/png"
    assert pixel.body == bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000")

    assert seen(daemon.get("/rest")) == {"read": "/rest"}
    posted = send(daemon.port, "POST", "/rest", [("Content-Type", "application/json")], b'{"made": true}')
    assert (posted.status, posted.body) == (201, b'{"made": true}')
    assert send(daemon.port, "DELETE", "/rest").status == 405
    conn = http.client.HTTPConnection("127.0.0.1", daemon.port, timeout=30)
    conn.request("POST", "/rest", body=b"{}")
    response = conn.getresponse()
    response.read()
    seen_lines = [value for name, value in response.getheaders() if name.lower() == "x-seen"]
    conn.close()
    assert seen_lines == ["a", "b"]  # multiValueHeaders and headers merged, the pair in both sent once


MALFORMED = ["not-an-object", "no-status", "string-status", "status-out-of-range", "body-not-string", "unknown-field",
             "headers-not-object", "multi-not-list", "bad-base64", "bad-header-value"]
SHORTHANDS = [("string", b"hello"), ("number", b"42"), ("array", b'[1,"two"]'),
              ("object", b'{"message":"no statusCode here"}'), ("null", b"null")]


def test_the_response_rules_hold_through_the_daemon(start_daemon):
    config = f"""
[[routes]]
route = "GET /v1/{{case}}"
integration = {function("answers:handler", payload_format='"1.0"', name='"answers-v1"')}

[[routes]]
route = "GET /v2/{{case}}"
integration = {function("answers:handler", name='"answers-v2"')}
"""
    daemon = start_daemon(config, workers=1)
    for case in MALFORMED:
        reply = daemon.get(f"/v1/{case}")
        assert (reply.status, reply.body) == (502, b'{"message":"Internal server error"}'), case
        assert "x-injected" not in reply.headers
    wait_for(lambda: daemon.stderr().count("malformed Lambda proxy response") == len(MALFORMED), 10, "a log line per malformed answer")
    well_formed = daemon.get("/v1/well-formed")
    assert (well_formed.status, well_formed.headers["content-type"], well_formed.body) == (202, "text/plain", b"accepted")
    for case, body in SHORTHANDS:
        reply = daemon.get(f"/v2/{case}")
        assert (reply.status, reply.headers["content-type"], reply.body) == (200, "application/json", body), case
    cookies = [value for name, value in raw_headers(daemon.port, "/v2/cookies") if name == "set-cookie"]
    assert cookies == ["a=1; Path=/", "b=2"]
    merged = raw_headers(daemon.port, "/v1/merged")
    assert [value for name, value in merged if name == "x-both"] == ["same", "other"]
    assert [value for name, value in merged if name == "x-many"] == ["a", "b"]
    assert [value for name, value in merged if name == "x-one"] == ["1"]
    wait_for(lambda: len(daemon.access_lines()) >= len(MALFORMED) + 1 + len(SHORTHANDS) + 2, 10, "access-log lines")
    lines = daemon.access_lines()
    assert [line["integrationError"] for line in lines[: len(MALFORMED)]] == ["malformed"] * len(MALFORMED)
    assert {line["functionName"] for line in lines} == {"answers-v1", "answers-v2"}


def test_a_raising_handler_is_a_500_with_its_traceback_only_in_the_log(start_daemon):
    config = f"""
[[routes]]
route = "GET /raises"
integration = {function("answers:raises")}

[[routes]]
route = "GET /chatty"
integration = {function("answers:chatty")}
"""
    daemon = start_daemon(config, workers=1)
    reply = daemon.get("/raises")
    assert (reply.status, reply.body) == (500, b'{"message":"Internal Server Error"}')
    request_id = reply.headers["x-request-id"]
    wait_for(lambda: "ValueError: the handler broke" in daemon.stderr(), 10, "the traceback in the daemon log")
    log = daemon.stderr()
    assert f"answers-raises {request_id}: the handler raised" in log and "Traceback" in log
    assert f"answers-raises {request_id}: about to fail" in log  # what it printed first
    reply = daemon.get("/chatty")
    request_id = reply.headers["x-request-id"]
    for line in ("printed line one", "printed line two", "logged by the handler"):
        wait_for(lambda: f"answers-chatty {request_id}: {line}" in daemon.stderr(), 10, f"{line!r} with the request id")
    wait_for(lambda: len(daemon.access_lines()) == 2, 10, "two access-log lines")
    assert daemon.access_lines()[0]["integrationError"] == "error"


def test_a_timeout_is_a_504_and_the_function_serves_on(start_daemon, tmp_path):
    config = f"""
[[routes]]
route = "GET /sync"
integration = {function("answers:sleeps", timeout='"1s"', environment=f'{{ RUN_LOG = "{tmp_path / "runs"}" }}')}

[[routes]]
route = "GET /async"
integration = {function("answers:sleeps_async", timeout='"1s"')}
"""
    daemon = start_daemon(config, workers=1)
    for path in ("/sync", "/async"):
        started = time.monotonic()
        reply = daemon.get(f"{path}?seconds=3")
        assert (reply.status, reply.body) == (504, b'{"message":"Endpoint request timed out"}'), path
        assert time.monotonic() - started < 2.5
        assert daemon.get(f"{path}?seconds=0").status == 200, path
    wait_for(lambda: len(daemon.access_lines()) == 4, 10, "four access-log lines")
    assert [line["integrationError"] for line in daemon.access_lines()] == ["timeout", None, "timeout", None]


def test_concurrency_is_a_daemon_wide_limit(start_daemon, tmp_path):
    runs = tmp_path / "runs"
    config = f"""
[[routes]]
route = "GET /slow"
integration = {function("answers:sleeps", concurrency="2", environment=f'{{ RUN_LOG = "{runs}" }}')}
"""
    daemon = start_daemon(config, workers=2)
    statuses: list[int] = []

    def call() -> None:
        statuses.append(request(daemon.port, "GET", "/slow?seconds=3", timeout=30).status)

    threads = [threading.Thread(target=call) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(statuses) == [200, 200] + [429] * 8
    ran = [json.loads(line) for line in runs.read_text().splitlines()]
    assert len(ran) == 2
    assert len({run["pid"] for run in ran}) >= 1
    # Both ran at once (the limit is not one per worker), and no third ever did.
    assert max(r["start"] for r in ran) < min(r["end"] for r in ran)
    assert request(daemon.port, "GET", "/slow?seconds=0").status == 200  # slots are given back
    counted = lambda: total(scrape(daemon), "gwd_function_invocations_total", function="answers-sleeps", outcome="success")  # noqa: E731
    wait_for(lambda: counted() == 3, 10, "the workers to flush their counts")
    text = scrape(daemon)
    assert total(text, "gwd_function_invocations_total", function="answers-sleeps", outcome="throttled") == 8
    assert total(text, "gwd_function_concurrency", function="answers-sleeps") == 0
    assert total(text, "gwd_function_duration_seconds_count", function="answers-sleeps") == 3
    assert 1 <= total(text, "gwd_function_cold_starts_total", function="answers-sleeps") <= 2


def test_a_blocking_handler_does_not_stall_the_worker(start_daemon, tmp_path):
    config = f"""
[[routes]]
route = "GET /slow"
integration = {function("answers:sleeps", environment=f'{{ RUN_LOG = "{tmp_path / "runs"}" }}')}

[[routes]]
route = "GET /quick"
integration = {{ type = "mock", body = "quick" }}

[[routes]]
route = "GET /hello"
integration = {function("hello:lambda_handler")}
"""
    daemon = start_daemon(config, workers=1)
    slow = threading.Thread(target=lambda: request(daemon.port, "GET", "/slow?seconds=4", timeout=30))
    slow.start()
    wait_for(lambda: total(scrape(daemon), "gwd_inflight_requests") >= 1, 10, "the slow request to be running")
    started = time.monotonic()
    assert daemon.get("/quick").body == b"quick"
    assert daemon.get("/hello").status == 200
    assert time.monotonic() - started < 2.0
    assert slow.is_alive()  # the blocking handler was still running meanwhile
    slow.join(30)


def test_gwd_check_names_a_missing_module_a_missing_function_a_syntax_error_and_an_import_error(tmp_path):
    (tmp_path / "good.py").write_text("def handler(event, context):\n    return {}\n")
    (tmp_path / "broken.py").write_text("def handler(event, context):\n    return {\n")
    (tmp_path / "needs.py").write_text("import json\nimport not_installed_anywhere\n\ndef handler(event, context):\n    return {}\n")
    (tmp_path / "gwd.toml").write_text(
        '[[routes]]\nroute = "GET /a"\nintegration = { type = "function", handler = "nowhere:handler" }\n\n'
        '[[routes]]\nroute = "GET /b"\nintegration = { type = "function", handler = "good:absent" }\n\n'
        '[[routes]]\nroute = "GET /c"\nintegration = { type = "function", handler = "broken:handler" }\n\n'
        '[[routes]]\nroute = "GET /d"\nintegration = { type = "function", handler = "good.handler" }\n\n'
        '[[routes]]\nroute = "GET /e"\nintegration = { type = "function", handler = "good:handler", payload_format = "1.0" }\n\n'
        '[[routes]]\nroute = "GET /f"\nintegration = { type = "function", handler = "good:handler", timeout = "3s" }\n'
    )
    imports = tmp_path / "imports.toml"
    imports.write_text('[[routes]]\nroute = "GET /g"\nintegration = { type = "function", handler = "needs:handler" }\n')
    done = subprocess.run(
        [sys.executable, "-m", "gwd", "check", "-c", str(tmp_path / "gwd.toml")], capture_output=True, text=True, cwd=ROOT, timeout=30
    )
    assert done.returncode != 0
    problems = done.stderr
    assert f"routes[0].integration.handler: no module 'nowhere': neither {tmp_path}/nowhere.py" in problems
    assert f"routes[1].integration.handler: {tmp_path}/good.py defines no 'absent' at its top level" in problems
    assert f"routes[2].integration.handler: {tmp_path}/broken.py, line 2: syntax error" in problems
    assert "routes[3]" not in problems  # AWS's "file.function" spelling is fine
    # One function behind two routes: each may have its own payload format, not its own settings.
    assert "routes[4]" not in problems
    assert "routes[5].integration.name: function 'good-handler' is configured differently by another route" in problems
    assert "4 problems" in problems
    # Once everything else is valid, the handlers are imported (in a throwaway process): what fails there is named too.
    done = subprocess.run(
        [sys.executable, "-m", "gwd", "check", "-c", str(imports)], capture_output=True, text=True, cwd=ROOT, timeout=60
    )
    assert done.returncode != 0
    assert (
        f"routes[0].integration.handler: importing it failed: {tmp_path}/needs.py, line 2: "
        "ModuleNotFoundError: No module named 'not_installed_anywhere'"
    ) in done.stderr


def test_a_reload_imports_changed_handler_code_and_refuses_a_broken_file(start_daemon, tmp_path):
    code = tmp_path / "code"
    code.mkdir()
    handler = code / "version.py"
    handler.write_text("def handler(event, context):\n    return {'version': 1}\n")
    config = f"""
[[routes]]
route = "GET /version"
integration = {{ type = "function", handler = "version:handler", code_dir = "{code}" }}

[[routes]]
route = "GET /node"
integration = {{ type = "function", handler = "greet.hello", code_dir = "{HANDLERS}" }}
"""
    daemon = start_daemon(config, workers=2)
    assert seen(daemon.get("/version")) == {"version": 1}
    assert daemon.get("/node").status == 200
    # Rewritten at once, the same size: its mtime may be the second of the first import.
    handler.write_text("def handler(event, context):\n    return {'version': 2}\n")
    assert not (code / "__pycache__").exists()  # no bytecode that could be mistaken for the new source
    daemon.signal(signal.SIGHUP)
    wait_for(lambda: all(seen(daemon.get("/version")) == {"version": 2} for _ in range(4)), 20, "the new code on every worker")
    # A file that no longer compiles: the reload is refused, naming the line; the last good code serves on.
    handler.write_text("def handler(event, context):\n    return {'version': 3\n")
    daemon.signal(signal.SIGHUP)
    wait_for(lambda: "version.py, line 2: syntax error" in daemon.stderr(), 20, "the refused reload in the log")
    assert all(seen(daemon.get("/version")) == {"version": 2} for _ in range(4))
    assert daemon.get("/node").status == 200  # the runtime processes of the new workers serve too


def test_a_reload_that_imports_slowly_is_not_taken_for_stuck_workers(start_daemon, tmp_path):
    code = tmp_path / "code"
    code.mkdir()
    (code / "slow_import.py").write_text("import time\ntime.sleep(2.5)\n\ndef handler(event, context):\n    return 'ok'\n")
    config = f"""
[server]
worker_timeout = "1s"

[[routes]]
route = "GET /slow"
integration = {{ type = "function", handler = "slow_import:handler", code_dir = "{code}" }}
"""
    daemon = start_daemon(config, workers=2)
    before = set(daemon.worker_pids())
    daemon.signal(signal.SIGHUP)  # the supervisor spends 2.5 s importing the handler at load, hearing no heartbeat
    wait_for(lambda: "reload complete" in daemon.stderr(), 30, "the reload to complete")
    assert "sent no heartbeat" not in daemon.stderr()
    wait_for(lambda: not before & set(daemon.worker_pids()), 30, "the old workers to drain")
    assert daemon.get("/slow").body == b"ok"


def test_each_stage_gets_its_own_environment_and_bodies_are_limited(start_daemon):
    config = f"""
[server]
max_body = "1KiB"

[[stages]]
name = "a"
variables = {{ t = "table-a" }}

[[stages]]
name = "b"
variables = {{ t = "table-b" }}

[[routes]]
route = "ANY /echo"
integration = {function("echo:handler", environment='{ TABLE = "${stageVariables.t}" }')}
"""
    daemon = start_daemon(config, workers=1)
    # One module in the worker, each stage's variables in os.environ while its invocations run.
    assert [seen(daemon.get(f"/{stage}/echo"))["environ"]["TABLE"] for stage in ("a", "b", "a")] == ["table-a", "table-b", "table-a"]
    too_big = send(daemon.port, "POST", "/a/echo", [("Content-Type", "application/octet-stream")], b"x" * 2048)
    assert (too_big.status, too_big.body) == (413, b'{"message":"Request Entity Too Large"}')
    head = send(daemon.port, "HEAD", "/a/echo")
    assert head.status == 200 and head.body == b"" and int(head.headers["content-length"]) > 0
