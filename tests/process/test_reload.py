"""SIGHUP: a changed config is picked up under load without a failed request; a bad one is refused."""

from __future__ import annotations

import http.client
import re
import signal
import time

import orjson
import pytest
from support import LoadClient, free_port, request, wait_for

BEFORE = """
[[routes]]
route = "GET /hello"
integration = { type = "mock", body = '{"version": 1}' }
"""

AFTER = """
[[routes]]
route = "GET /hello"
integration = { type = "mock", body = '{"version": 2}' }

[[routes]]
route = "GET /new"
integration = { type = "mock", status = 201, body = '{"new": true}' }
"""


@pytest.mark.parametrize("keepalive", [False, True], ids=["fresh-connections", "keep-alive"])
def test_reload_under_load_fails_no_request(start_daemon, keepalive):
    daemon = start_daemon(BEFORE, workers=2)
    old_workers = set(daemon.worker_pids())
    assert daemon.get("/new").status == 404
    with LoadClient(daemon.port, "/hello", threads=6, keepalive=keepalive) as load:
        load.wait_for_requests(300)
        daemon.config_path.write_text(AFTER)
        daemon.signal(signal.SIGHUP)
        wait_for(lambda: "reload complete" in daemon.stderr(), 20, "the reload to complete")
        wait_for(lambda: not old_workers & set(daemon.worker_pids()), 20, "old workers to drain and exit")
        load.wait_for_requests(300)
    print(f"ok={load.ok} retries={load.retries}")
    assert load.failures == [], load.failures[:5]
    assert daemon.get("/new").status == 201
    assert daemon.get("/hello").json() == {"version": 2}
    assert len(daemon.worker_pids()) == 2


def test_reload_with_invalid_config_keeps_serving_the_old_one(start_daemon):
    daemon = start_daemon(BEFORE, workers=2)
    workers = set(daemon.worker_pids())
    daemon.config_path.write_text(BEFORE + '\n[server]\ndrain_timeout = "soon"\n')
    daemon.signal(signal.SIGHUP)
    wait_for(lambda: "reload failed" in daemon.stderr(), 10, "the reload to be refused")
    assert "server.drain_timeout" in daemon.stderr()
    assert daemon.get("/hello").json() == {"version": 1}
    assert set(daemon.worker_pids()) == workers


@pytest.mark.parametrize("text", ["", "[server]\nworkers = 2\n", "[[routes]]\nroute = \"GET /hel"], ids=["empty", "only-server", "truncated"])
def test_reload_to_an_empty_or_truncated_config_is_refused(start_daemon, text):
    daemon = start_daemon(BEFORE, workers=2)
    workers = set(daemon.worker_pids())
    daemon.config_path.write_text(text)
    daemon.signal(signal.SIGHUP)
    wait_for(lambda: "reload failed" in daemon.stderr(), 10, "the reload to be refused")
    assert daemon.get("/hello").json() == {"version": 1}
    assert set(daemon.worker_pids()) == workers


def test_reload_applies_the_new_worker_count(start_daemon):
    daemon = start_daemon(BEFORE + "\n[server]\nworkers = 1\n", workers=None)
    assert len(daemon.worker_pids()) == 1
    daemon.config_path.write_text(BEFORE + "\n[server]\nworkers = 3\n")
    daemon.signal(signal.SIGHUP)
    wait_for(lambda: "reload complete" in daemon.stderr(), 20, "the reload")
    wait_for(lambda: len(daemon.worker_pids()) == 3, 20, "three workers")


def test_command_line_workers_still_win_after_reload(start_daemon):
    daemon = start_daemon(BEFORE + "\n[server]\nworkers = 1\n", workers=2)
    assert len(daemon.worker_pids()) == 2
    daemon.config_path.write_text(BEFORE + "\n[server]\nworkers = 3\n")
    daemon.signal(signal.SIGHUP)
    wait_for(lambda: "reload complete" in daemon.stderr(), 20, "the reload")
    wait_for(lambda: len(daemon.worker_pids()) == 2, 20, "two workers")


def test_reload_moves_to_a_new_listen_address(start_daemon):
    old_port, new_port = free_port(), free_port()
    daemon = start_daemon(BEFORE + f'\n[server]\nlisten = "127.0.0.1:{old_port}"\n', workers=1, listen=False)
    assert request(old_port, "GET", "/hello").status == 200
    daemon.config_path.write_text(BEFORE + f'\n[server]\nlisten = "127.0.0.1:{new_port}"\n')
    daemon.signal(signal.SIGHUP)
    wait_for(lambda: "reload complete" in daemon.stderr(), 20, "the reload")
    assert request(new_port, "GET", "/hello").status == 200

    def old_port_closed() -> bool:
        try:
            request(old_port, "GET", "/hello", timeout=2)
        except ConnectionRefusedError:
            return True
        return False

    wait_for(old_port_closed, 20, "the old address to close")


def versioned(version: int) -> str:
    return f"""
[server]
drain_timeout = "5s"

[[routes]]
route = "GET /hello"
integration = {{ type = "mock", body = '{{"version": {version}}}' }}
"""


def test_a_burst_of_reloads_under_load_ends_on_the_last_config(start_daemon):
    """Ten SIGHUPs 50 ms apart: each supersedes the last, and superseded workers drain and leave in time."""
    daemon = start_daemon(versioned(0), workers=2)
    with LoadClient(daemon.port, "/hello", threads=6, keepalive=True) as load:
        load.wait_for_requests(200)
        for version in range(1, 11):
            daemon.config_path.write_text(versioned(version))
            daemon.signal(signal.SIGHUP)
            time.sleep(0.05)  # the burst's spacing, not a wait for anything

        def last_generation_alone() -> bool:
            started = re.findall(r"started worker \d+ \(pid (\d+), generation (\d+)\)", daemon.stderr())
            last = max(int(generation) for _, generation in started)
            newest = {int(pid) for pid, generation in started if int(generation) == last}
            return last > 1 and set(daemon.worker_pids()) == newest

        wait_for(last_generation_alone, 40, "only the last generation's workers to be left")
        load.wait_for_requests(200)
    assert load.failures == [], load.failures[:5]
    assert "did not finish draining" not in daemon.stderr()
    answers = [daemon.get("/hello").json() for _ in range(20)]
    conn = http.client.HTTPConnection("127.0.0.1", daemon.port, timeout=10)
    for _ in range(20):
        conn.request("GET", "/hello")
        answers.append(orjson.loads(conn.getresponse().read()))
    conn.close()
    assert answers == [{"version": 10}] * 40
