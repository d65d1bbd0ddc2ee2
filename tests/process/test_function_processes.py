"""runtime = "process": handlers in runtime processes speaking the Lambda Runtime API (AWS's awslambdaric, gwd's Node bootstrap)."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path

import orjson
import pytest
from support import ROOT, process_alive, process_children, raw_exchange, request, scrape, total, wait_for

pytestmark = pytest.mark.process

HANDLERS = ROOT / "tests" / "lambda_handlers"


def function(handler: str, **settings: str) -> str:
    extra = "".join(f", {name} = {value}" for name, value in settings.items())
    return f'{{ type = "function", handler = "{handler}", code_dir = "{HANDLERS}"{extra} }}'


def runtimes(daemon, marker: str) -> list[int]:
    """The runtime processes (children of the workers) whose command line holds ``marker``."""
    found = []
    for worker in daemon.worker_pids():
        for child in process_children(worker):
            try:
                command = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if marker in command:
                found.append(child)
    return found


AWSLAMBDARIC = f'["{sys.executable}", "-m", "awslambdaric", "echo.handler"]'


@pytest.mark.parametrize("runtime", ["gwd's Python bootstrap", "awslambdaric"])
def test_a_python_runtime_process_runs_an_unmodified_handler(start_daemon, runtime):
    command = {"command": AWSLAMBDARIC} if runtime == "awslambdaric" else {"runtime": '"process"'}
    raises = {"command": AWSLAMBDARIC.replace("echo.handler", "answers.raises")} if runtime == "awslambdaric" else {"runtime": '"process"'}
    config = f"""
[[routes]]
route = "POST /echo/{{id}}"
integration = {function("echo:handler", environment='{ GREETING = "from a process" }', memory_mb="512", **command)}

[[routes]]
route = "GET /raises"
integration = {function("answers:raises", **raises)}
"""
    daemon = start_daemon(config, workers=1)
    reply = request(daemon.port, "POST", "/echo/9?q=1", headers={"Cookie": "a=1", "Content-Type": "application/json"})
    assert reply.status == 200, reply.body
    got = orjson.loads(reply.body)
    event, context = got["event"], got["context"]
    assert (event["version"], event["routeKey"], event["rawPath"]) == ("2.0", "POST /echo/{id}", "/echo/9")
    assert event["pathParameters"] == {"id": "9"} and event["cookies"] == ["a=1"]
    assert event["queryStringParameters"] == {"q": "1"}
    # The runtime made the context from the Runtime API's headers and the environment gwd set.
    assert context["aws_request_id"] == reply.headers["x-request-id"] == event["requestContext"]["requestId"]
    assert context["function_name"] == "echo-handler" and context["memory_limit_in_mb"] == "512"
    assert context["invoked_function_arn"].endswith(":function:echo-handler")
    assert 25_000 < context["remaining_ms"] <= 29_000
    assert context["identity"] is None and context["client_context"] is None
    assert got["environ"]["GREETING"] == "from a process" and got["imported_with"] == "from a process"
    # The Runtime API's Lambda-Runtime-Trace-Id, which the runtime exposes as AWS does.
    trace_id = got["environ"]["_X_AMZN_TRACE_ID"]
    assert trace_id.startswith("Root=1-") and trace_id.partition("-")[2].replace("-", "").startswith(
        reply.headers["x-request-id"].replace("-", "")[:8]
    )
    failed = daemon.get("/raises")
    assert (failed.status, failed.body) == (500, b'{"message":"Internal Server Error"}')
    request_id = failed.headers["x-request-id"]
    wait_for(lambda: f"answers-raises {request_id}: the handler failed: ValueError: the handler broke" in daemon.stderr(), 10,
             "the runtime's error in the daemon log")
    wait_for(lambda: f"answers-raises {request_id}: about to fail" in daemon.stderr(), 10, "its print, with the request id")


def test_the_node_bootstrap_runs_commonjs_and_es_module_handlers(start_daemon):
    config = f"""
[[routes]]
route = "GET /cjs"
integration = {function("greet.hello")}

[[routes]]
route = "GET /esm"
integration = {function("modern.handler")}

[[routes]]
route = "GET /callback"
integration = {function("modern:callback")}

[[routes]]
route = "GET /fails"
integration = {function("greet.fails")}
"""
    daemon = start_daemon(config, workers=1)
    reply = daemon.get("/cjs?x=1")
    assert reply.status == 200, reply.body
    body = orjson.loads(reply.body)
    assert body["message"] == "Go Serverless!" and body["requestId"] == reply.headers["x-request-id"]
    assert body["input"]["queryStringParameters"] == {"x": "1"} and body["input"]["rawPath"] == "/cjs"
    wait_for(lambda: f"greet-hello {reply.headers['x-request-id']}: greeting /cjs" in daemon.stderr(), 10,
             "console.log output with the request id")
    esm = daemon.get("/esm")
    assert esm.status == 200 and orjson.loads(esm.body)["path"] == "/esm" and esm.headers["set-cookie"] == "flavor=esm"
    assert daemon.get("/callback").body == b"callback modern-callback"
    failed = daemon.get("/fails")
    assert (failed.status, failed.body) == (500, b'{"message":"Internal Server Error"}')
    wait_for(lambda: "TypeError: the node handler broke" in daemon.stderr(), 10, "the handler's error in the log")
    assert len(runtimes(daemon, "bootstrap.mjs")) == 4  # one runtime process per function so far


def test_a_runtime_killed_mid_invocation_gives_that_request_502_and_is_replaced(start_daemon):
    config = f"""
[[routes]]
route = "GET /slow"
integration = {function("greet.slow", timeout='"2s"')}

[[routes]]
route = "GET /crashes"
integration = {function("greet.crashes")}
"""
    daemon = start_daemon(config, workers=1)
    assert daemon.get("/slow").status == 200
    [first] = runtimes(daemon, "greet.js slow")
    statuses: list[int] = []
    held = threading.Thread(target=lambda: statuses.append(daemon.get("/slow?seconds=20").status))
    held.start()
    wait_for(lambda: total(scrape(daemon), "gwd_function_concurrency", function="greet-slow") == 1, 10, "the invocation to run")
    os.kill(first, signal.SIGKILL)
    held.join(30)
    assert statuses == [502]
    assert daemon.get("/slow").body == b"slept 0"  # a new process serves the next one
    [second] = runtimes(daemon, "greet.js slow")
    assert second != first
    wait_for(lambda: "greet-slow" in daemon.stderr() and "killed by SIGKILL" in daemon.stderr(), 10, "the death in the log")

    # Past the timeout: 504, the process is killed, the next request gets a new one.
    started = time.monotonic()
    reply = daemon.get("/slow?seconds=20")
    assert (reply.status, reply.body) == (504, b'{"message":"Endpoint request timed out"}')
    assert time.monotonic() - started < 6
    wait_for(lambda: not process_alive(second), 10, "the timed-out runtime to be killed")
    assert daemon.get("/slow").status == 200

    # A handler that exits its process: 502, and the function serves on.
    crashed = daemon.get("/crashes")
    assert (crashed.status, crashed.body) == (502, b'{"message":"Internal server error"}')
    assert daemon.get("/slow").status == 200
    wait_for(lambda: len(daemon.access_lines()) == 7, 10, "seven access-log lines")
    errors = [line["integrationError"] for line in daemon.access_lines()]
    assert errors == [None, "crashed", None, "timeout", None, "crashed", None]
    # A process for the first request, one after the kill, one after the timeout.
    wait_for(lambda: total(scrape(daemon), "gwd_function_cold_starts_total", function="greet-slow") == 3, 10, "three cold starts")


def test_a_runtime_that_cannot_load_its_handler_is_stopped_and_requests_get_502(start_daemon):
    config = f"""
[[routes]]
route = "GET /missing"
integration = {function("greet.no_such_export", timeout='"10s"')}
"""
    daemon = start_daemon(config, workers=1)
    started = time.monotonic()
    reply = daemon.get("/missing")
    assert (reply.status, reply.body) == (502, b'{"message":"Internal server error"}')
    assert time.monotonic() - started < 8  # the runtimes' init errors answer it, not the timeout
    assert "cannot start: TypeError" in daemon.stderr() and "exports no function no_such_export" in daemon.stderr()
    assert daemon.get("/missing").status == 502  # and again: the function does not wedge


@pytest.mark.skipif(os.geteuid() != 0, reason="becoming another user needs root")
def test_the_runtime_api_serves_only_the_daemons_own_user(start_daemon):
    daemon = start_daemon(f"""
[[routes]]
route = "GET /hello"
integration = {function("greet.hello", min_instances="1")}
""", workers=1)
    [runtime] = wait_for(lambda: runtimes(daemon, "greet.js hello"), 15, "the runtime process")
    environ = Path(f"/proc/{runtime}/environ").read_bytes().split(b"\0")
    host, port = dict(item.split(b"=", 1) for item in environ if b"=" in item)[b"AWS_LAMBDA_RUNTIME_API"].decode().split(":")
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # another user asks for work
        try:
            os.setgid(65534)
            os.setuid(65534)
            import http.client

            conn = http.client.HTTPConnection(host, int(port), timeout=10)
            conn.request("GET", "/2018-06-01/runtime/invocation/next")
            os.write(write_fd, str(conn.getresponse().status).encode())
        finally:
            os._exit(0)
    os.close(write_fd)
    os.waitpid(pid, 0)
    assert os.read(read_fd, 16) == b"403"
    assert daemon.get("/hello").status == 200  # the gateway's own runtime still gets the work
    wait_for(lambda: "Runtime API: refused a connection" in daemon.stderr(), 10, "the refusal in the log")


def test_min_and_max_instances_and_idle_retirement(start_daemon):
    config = f"""
[[routes]]
route = "GET /warm"
integration = {function("greet.slow", name='"warm"', min_instances="1", max_instances="2", idle_timeout='"1s"')}

[[routes]]
route = "GET /cold"
integration = {function("greet.slow", name='"cold"', max_instances="2", idle_timeout='"1s"')}
"""
    daemon = start_daemon(config, workers=1)
    # min_instances are started with the worker; the other function has none until its first request.
    wait_for(lambda: len(runtimes(daemon, "greet.js slow")) == 1, 15, "the warm function's process")
    statuses: list[int] = []
    calls = [threading.Thread(target=lambda: statuses.append(daemon.get("/cold?seconds=1.5").status)) for _ in range(4)]
    for call in calls:
        call.start()
    wait_for(lambda: len(runtimes(daemon, "greet.js slow")) == 3, 15, "two processes for four calls at once (max_instances)")
    for call in calls:
        call.join(30)
    assert statuses == [200] * 4  # the other two waited for a free process
    assert len(runtimes(daemon, "greet.js slow")) == 3
    # Idle past idle_timeout: the cold function's processes retire; min_instances stay.
    wait_for(lambda: len(runtimes(daemon, "greet.js slow")) == 1, 15, "idle processes to retire")
    wait_for(lambda: total(scrape(daemon), "gwd_function_invocations_total", function="cold", outcome="success") == 4, 10,
             "four invocations counted")
    assert total(scrape(daemon), "gwd_function_cold_starts_total", function="cold") == 2


@pytest.mark.parametrize("runtime", ["in the worker", "in a runtime process"], ids=["worker", "process"])
@pytest.mark.parametrize("payload", ["1.0", "2.0"])
def test_bytes_that_are_not_utf8_reach_a_handler_as_replacement_characters(start_daemon, runtime, payload):
    """A header, query or path byte that is no UTF-8 is U+FFFD in the event: a surrogate would be no JSON (500)."""
    settings = {"payload_format": f'"{payload}"'} | ({"runtime": '"process"'} if runtime == "in a runtime process" else {})
    daemon = start_daemon(f'[[routes]]\nroute = "GET /echo/{{id}}"\nintegration = {function("echo:handler", **settings)}\n', workers=1)
    sent = b"GET /echo/a%FFb?q=%FF&r=x HTTP/1.1\r\nHost: x\r\nUser-Agent: agent-\xff\r\nX-Bin: a\xffb\r\nConnection: close\r\n\r\n"
    reply = raw_exchange(daemon.port, sent, wait=20)
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), reply
    event = orjson.loads(body)["event"]
    headers = {name.lower(): value for name, value in event["headers"].items()}
    assert headers["x-bin"] == "a\ufffdb" and headers["user-agent"] == "agent-\ufffd"
    assert event["queryStringParameters"] == {"q": "\ufffd", "r": "x"}
    assert event["pathParameters"] == {"id": "a\ufffdb"}
    assert "Traceback" not in daemon.stderr()
