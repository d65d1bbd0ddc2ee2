"""Resource policies: allow and deny lists on stages and routes, on the client's real address."""

from __future__ import annotations

import subprocess
import sys

import pytest
from backend import Backend
from support import ROOT

pytestmark = pytest.mark.process

CONFIG = """
[server]
trusted_proxies = ["127.0.0.1/32"]

[[stages]]
name = "$default"
deny = ["198.51.100.0/24"]

[[routes]]
route = "GET /open"
integration = { type = "mock", body = "open" }

[[routes]]
route = "GET /office"
integration = { type = "http", uri = "BACKEND/office" }
allow = ["203.0.113.0/24", "2001:db8::/32"]

[[routes]]
route = "GET /not-them"
integration = { type = "mock", body = "not them" }
deny = ["203.0.113.7/32"]
"""

CASES = [
    # path, X-Forwarded-For (the trusted peer 127.0.0.1 passes it on), expected status
    ("/open", None, 200),
    ("/open", "198.51.100.9", 403),  # the stage's deny applies to every route
    ("/office", None, 403),  # 127.0.0.1 itself is not in the allow list
    ("/office", "203.0.113.7", 200),
    ("/office", "2001:db8::1", 200),
    ("/office", "192.0.2.1", 403),
    ("/office", "198.51.100.9", 403),  # a route's allow cannot undo the stage's deny
    ("/office", "192.0.2.1, 203.0.113.7", 200),  # the rightmost untrusted hop is the client
    ("/office", "203.0.113.7, 192.0.2.1", 403),  # a forged entry further left counts for nothing
    ("/not-them", "203.0.113.7", 403),
    ("/not-them", "203.0.113.8", 200),
]


def test_allow_and_deny_lists(start_daemon):
    with Backend() as backend:
        daemon = start_daemon(CONFIG.replace("BACKEND", backend.url))
        results = []
        for path, forwarded_for, _ in CASES:
            headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
            reply = daemon.get(path, headers=headers)
            results.append((path, forwarded_for, reply.status))
            if reply.status == 403:
                assert reply.json() == {"message": "Forbidden"}
        assert results == [(path, forwarded_for, status) for path, forwarded_for, status in CASES]
        # Refused requests never reach the backend.
        assert len(backend.received) == sum(1 for path, _, status in CASES if path == "/office" and status == 200)


def test_without_trusted_proxies_the_peer_address_decides(start_daemon):
    daemon = start_daemon(CONFIG.replace('trusted_proxies = ["127.0.0.1/32"]', "").replace("BACKEND", "http://127.0.0.1:9"))
    assert daemon.get("/office", headers={"X-Forwarded-For": "203.0.113.7"}).status == 403  # forged, ignored
    assert daemon.get("/not-them", headers={"X-Forwarded-For": "203.0.113.7"}).status == 200


def test_a_bad_network_is_a_config_error(tmp_path):
    path = tmp_path / "gwd.toml"
    path.write_text(CONFIG.replace('"203.0.113.0/24"', '"203.0.113.1/24"').replace("BACKEND", "http://127.0.0.1:9"))
    checked = subprocess.run([sys.executable, "-m", "gwd", "check", "-c", str(path)], capture_output=True, text=True, cwd=ROOT)
    assert checked.returncode == 78
    assert "routes[1].allow[0]" in checked.stderr and "host bits set" in checked.stderr
