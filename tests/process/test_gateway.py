"""The request pipeline through the real daemon: stages, 404s, request ids, the access log."""

from __future__ import annotations

import socket
import subprocess
import time
import uuid

import orjson
from support import ROOT, request, wait_for

CONFIG = """
[[stages]]
name = "$default"
variables = { where = "default" }

[[stages]]
name = "prod"
variables = { where = "prod" }

[[routes]]
route = "GET /pets/{id}"
integration = { type = "mock", headers = { "x-stage" = "${stageVariables.where}" }, body = '{"id": "{id}", "stage": "${stageVariables.where}"}' }

[[routes]]
route = "ANY /echo/{path+}"
integration = { type = "mock", status = 202, headers = { "content-type" = "text/plain" }, body = "{path}" }
"""


def test_stage_prefixes_and_stage_variables(start_daemon):
    daemon = start_daemon(CONFIG, workers=1)
    assert daemon.get("/pets/1").json() == {"id": "1", "stage": "default"}
    assert daemon.get("/prod/pets/2").json() == {"id": "2", "stage": "prod"}
    reply = request(daemon.port, "DELETE", "/prod/echo/a/b%20c")
    assert (reply.status, reply.body, reply.headers["content-type"]) == (202, b"a/b c", "text/plain")


def test_not_found_is_aws_shaped_json(start_daemon):
    daemon = start_daemon(CONFIG, workers=1)
    for method, path in [("GET", "/nope"), ("POST", "/pets/1"), ("GET", "/prod"), ("GET", "/pets/")]:
        reply = request(daemon.port, method, path)
        assert reply.status == 404, (method, path)
        assert reply.body == b'{"message":"Not Found"}'
        assert reply.headers["content-type"] == "application/json"


def test_head_is_answered_without_a_body(start_daemon):
    daemon = start_daemon(CONFIG, workers=1)
    reply = request(daemon.port, "HEAD", "/pets/1")
    assert reply.status == 200 and reply.body == b""
    assert int(reply.headers["content-length"]) == len(b'{"id": "1", "stage": "default"}')


def test_request_ids(start_daemon):
    daemon = start_daemon(CONFIG, workers=1)
    generated = daemon.get("/pets/1").headers["x-request-id"]
    assert str(uuid.UUID(generated)) == generated
    assert daemon.get("/pets/1", headers={"X-Request-Id": "trace-42.a:b"}).headers["x-request-id"] == "trace-42.a:b"
    for bad in ("has space", "x" * 200, "quote\"s", "new\tline"):
        replaced = daemon.get("/pets/1", headers={"X-Request-Id": bad}).headers["x-request-id"]
        assert replaced != bad and uuid.UUID(replaced)
    assert daemon.get("/nope").headers["x-request-id"]  # errors carry one too


def test_server_header_names_no_versions(start_daemon):
    daemon = start_daemon(CONFIG, workers=1)
    assert daemon.get("/pets/1").headers["server"] == "gwd"


def test_access_log_lines_have_the_context_fields(start_daemon, tmp_path):
    log_path = tmp_path / "access.log"
    daemon = start_daemon(CONFIG + f'\n[log]\naccess = "{log_path}"\n', workers=2)
    daemon.get("/prod/pets/9", headers={"User-Agent": "test-agent/1.0", "X-Request-Id": "req-1"})
    daemon.get("/missing")
    lines = wait_for(lambda: log_path.exists() and log_path.read_text().count("\n") >= 2 and log_path.read_text(), 5, "2 lines")
    records = [orjson.loads(line) for line in lines.splitlines()]
    by_id = {r["requestId"]: r for r in records}
    hit = by_id["req-1"]
    assert set(hit) == {
        "requestId",
        "ip",
        "requestTime",
        "requestTimeEpoch",
        "httpMethod",
        "routeKey",
        "path",
        "status",
        "protocol",
        "responseLength",
        "responseLatency",
        "integrationLatency",
        "integrationError",
        "userAgent",
        "api",
        "stage",
        "apiKeyId",
        "principalId",
        "traceId",
    }
    assert hit["ip"] == "127.0.0.1"
    assert hit["httpMethod"] == "GET"
    assert hit["routeKey"] == "GET /pets/{id}"
    assert hit["path"] == "/prod/pets/9"
    assert hit["status"] == 200
    assert hit["protocol"] == "HTTP/1.1"
    assert hit["responseLength"] == len(b'{"id": "9", "stage": "prod"}')
    assert isinstance(hit["responseLatency"], float) and 0 <= hit["responseLatency"] < 5000
    assert hit["userAgent"] == "test-agent/1.0"
    assert hit["api"] == "default" and hit["stage"] == "prod"
    assert isinstance(hit["requestTimeEpoch"], int)
    assert abs(hit["requestTimeEpoch"] / 1000 - time.time()) < 60
    assert time.strftime("%d/%b/%Y:", time.gmtime(hit["requestTimeEpoch"] / 1000)) in hit["requestTime"]
    assert hit["requestTime"].endswith(" +0000")
    miss = next(r for r in records if r["requestId"] != "req-1")
    assert (miss["status"], miss["routeKey"], miss["stage"]) == (404, "-", "$default")


def test_bytes_that_are_not_utf8_reach_the_access_log_as_escapes(start_daemon, tmp_path):
    # A User-Agent with a byte that is no UTF-8 (the parser refuses such bytes
    # in a path): the request is answered and logged, the byte written as
    # \xNN, and the worker serves on.
    log_path = tmp_path / "access.log"
    daemon = start_daemon(CONFIG + f'\n[log]\naccess = "{log_path}"\n', workers=1)
    with socket.create_connection(("127.0.0.1", daemon.port), timeout=10) as sock:
        sock.sendall(b"GET /pets/caf%C3%A9 HTTP/1.1\r\nHost: gwd\r\nUser-Agent: agent\xff/1\r\nX-Request-Id: latin-1\r\n\r\n")
        assert sock.recv(4096).startswith(b"HTTP/1.1 200 ")
    assert daemon.get("/pets/1", headers={"X-Request-Id": "after"}).status == 200
    text = wait_for(lambda: log_path.exists() and "after" in log_path.read_text() and log_path.read_text(), 5, "2 lines")
    by_id = {record["requestId"]: record for record in map(orjson.loads, text.splitlines())}
    assert (by_id["latin-1"]["path"], by_id["latin-1"]["userAgent"]) == ("/pets/café", "agent\\xff/1")


def test_logrotate_with_the_shipped_snippet_and_sigusr1_loses_no_line(start_daemon, tmp_path):
    log_path = tmp_path / "access.log"
    daemon = start_daemon(CONFIG + f'\n[log]\naccess = "{log_path}"\n', workers=2)
    daemon.get("/pets/1", headers={"X-Request-Id": "before-rotation"})
    wait_for(lambda: log_path.exists() and "before-rotation" in log_path.read_text(), 5, "the first line")
    rotated = tmp_path / "access.log.1"
    # etc/logrotate/gwd as shipped, for this log file and (with no systemd here) this daemon's supervisor only.
    snippet = (ROOT / "etc" / "logrotate" / "gwd").read_text()
    assert "/var/log/gwd/access.log {" in snippet and "'^gwd: supervisor '" in snippet
    snippet = snippet.replace("/var/log/gwd/access.log", str(log_path))
    snippet = snippet.replace("'^gwd: supervisor '", f"'^gwd: supervisor {daemon.config_path}$'")
    (tmp_path / "logrotate.conf").write_text(snippet)
    rotate = subprocess.run(
        ["logrotate", "--force", "--state", str(tmp_path / "logrotate.state"), str(tmp_path / "logrotate.conf")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert rotate.returncode == 0, rotate.stderr
    assert rotated.exists() and "before-rotation" in rotated.read_text()
    # Both workers must have reopened: the new file appears once a worker writes to it,
    # so send enough requests on fresh connections that both workers serve some.
    wait_for(lambda: daemon.stderr().count("reopen") >= 1, 5, "the supervisor to forward SIGUSR1")

    def logged_text() -> str:
        return rotated.read_text() + (log_path.read_text() if log_path.exists() else "")

    sent: list[str] = []

    def all_requests_land_in_new_file() -> bool:
        # Requests served before a worker handled the signal rightly go to the old file.
        ids = [f"after-{uuid.uuid4()}" for _ in range(20)]
        for request_id in ids:
            daemon.get("/pets/1", headers={"X-Request-Id": request_id})
        sent.extend(ids)
        wait_for(lambda: all(i in logged_text() for i in ids), 5, "the lines to be flushed")
        return log_path.exists() and all(i in log_path.read_text() for i in ids)

    wait_for(all_requests_land_in_new_file, 10, "both workers to write to the new file")
    assert "before-rotation" in rotated.read_text()
    # No line was lost or written twice across the rotation.
    everything = logged_text()
    assert all(everything.count(request_id) == 1 for request_id in sent)
