"""W3C traceparent: continued with a new parent id, started when absent or invalid, and in the access log."""

from __future__ import annotations

import re

import pytest
from backend import Backend
from support import wait_for

pytestmark = pytest.mark.process

TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")


def config(backend: Backend) -> str:
    return f"""
[log]
access = "stdout"

[[routes]]
route = "GET /api/{{proxy+}}"
integration = {{ type = "http", uri = "{backend.url}/{{proxy}}" }}
"""


def test_trace_context(start_daemon):
    with Backend() as backend:
        daemon = start_daemon(config(backend), workers=1)
        incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        continued = daemon.get("/api/a", headers={"traceparent": incoming, "tracestate": "vendor=x"})
        started = daemon.get("/api/b")
        invalid = daemon.get("/api/c", headers={"traceparent": "00-" + "0" * 32 + "-00f067aa0ba902b7-01"})
        assert continued.status == started.status == invalid.status == 200

        sent = [TRACEPARENT.fullmatch(received.header("traceparent")) for received in backend.received]
        assert all(sent)
        (trace_a, parent_a, flags_a), (trace_b, parent_b, flags_b), (trace_c, _, _) = (m.groups() for m in sent)
        # Continued: the same trace and flags, gwd's own span as the parent.
        assert (trace_a, flags_a) == ("4bf92f3577b34da6a3ce929d0e0e4736", "01")
        assert parent_a != "00f067aa0ba902b7"
        assert backend.received[0].header("tracestate") == "vendor=x"
        # Started: the trace id is the request id without its dashes; not sampled.
        assert trace_b == started.headers["x-request-id"].replace("-", "")
        assert flags_b == "00" and parent_b != "0" * 16
        # An all-zero trace id is invalid: a new trace instead.
        assert trace_c not in ("0" * 32, trace_a, trace_b)

        wait_for(lambda: len(daemon.access_lines()) == 3, 10, "three access-log lines")
        assert [line["traceId"] for line in daemon.access_lines()] == [trace_a, trace_b, trace_c]


def test_server_timing_when_asked(start_daemon):
    with Backend() as backend:
        daemon = start_daemon(config(backend) + "\n[metrics]\nserver_timing = true\n", workers=1)
        timing = daemon.get("/api/x").headers["server-timing"]
        found = re.fullmatch(r"total;dur=([0-9.]+), integration;dur=([0-9.]+)", timing)
        assert found and 0 < float(found.group(2)) <= float(found.group(1)), timing
        plain = start_daemon(config(backend), workers=1)
        assert "server-timing" not in plain.get("/api/x").headers
