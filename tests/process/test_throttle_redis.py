"""Throttling through a real redis-server: one limit across two daemons; Redis going away and back."""

from __future__ import annotations

import signal
import subprocess
import sys

from support import ROOT, Hammer, request, statuses_past_403, wait_for


def config(redis_url: str, rate: int, burst: int, fail_open: bool = True) -> str:
    return f"""
[throttle]
backend = "{redis_url}"
fail_open = {"true" if fail_open else "false"}

[[routes]]
route = "GET /limited"
integration = {{ type = "mock", body = '{{"ok": true}}' }}
throttle = {{ rate = {rate}, burst = {burst} }}
"""


def test_two_daemons_share_one_limit(start_daemon, redis_server):
    first = start_daemon(config(redis_server.url, 100, 100), workers=2)
    second = start_daemon(config(redis_server.url, 100, 100), workers=2)
    hammers = [Hammer(d.port, "/limited", seconds=6, threads=3).run() for d in (first, second)]
    for hammer in hammers:
        hammer.join()
    accepted = sum(h.statuses.get(200, 0) for h in hammers)
    offered = sum(sum(h.statuses.values()) for h in hammers)
    elapsed = max(h.elapsed for h in hammers)
    assert all(set(h.statuses) <= {200, 429} for h in hammers), [h.statuses for h in hammers]
    assert offered / elapsed >= 1000, f"only {offered / elapsed:.0f} req/s offered"
    # Each daemon alone would accept about this much; together they must too.
    expected = 100 + 100 * elapsed
    assert abs(accepted - expected) <= 0.05 * expected, (accepted, expected)
    assert all(h.statuses.get(200, 0) > 0.2 * expected for h in hammers)


def statuses(daemon, count: int) -> list[int]:
    return [daemon.get("/limited").status for _ in range(count)]


def test_redis_down_fails_open_and_comes_back(start_daemon, redis_server):
    daemon = start_daemon(config(redis_server.url, 0.01, 2), workers=2)
    workers = set(daemon.worker_pids())
    assert statuses(daemon, 3) == [200, 200, 429]
    redis_server.stop()
    # fail_open: served without limits while Redis is away, and said so once.
    assert statuses(daemon, 20) == [200] * 20
    wait_for(lambda: "failed" in daemon.stderr() and "serving without limits" in daemon.stderr(), 5, "the error")
    redis_server.start()  # same port, empty: the bucket starts full again
    wait_for(lambda: 429 in statuses(daemon, 5), 10, "limits to apply again")
    assert "answers again" in daemon.stderr()
    assert set(daemon.worker_pids()) == workers  # no worker crashed


def test_redis_down_fails_closed_when_told(start_daemon, redis_server):
    daemon = start_daemon(config(redis_server.url, 100, 100, fail_open=False), workers=1)
    assert daemon.get("/limited").status == 200
    redis_server.stop()
    reply = daemon.get("/limited")
    assert (reply.status, reply.body) == (503, b'{"message":"Service Unavailable"}')


def test_quota_is_one_quota_across_daemons(start_daemon, redis_server, tmp_path):
    state_dir = tmp_path / "state"
    text = f"""
[server]
state_dir = "{state_dir}"

[throttle]
backend = "{redis_server.url}"

[[usage_plans]]
name = "basic"
quota = {{ limit = 30, period = "month" }}

[[routes]]
route = "GET /secret"
integration = {{ type = "mock", body = '{{"secret": true}}' }}
api_key_required = true
"""
    first = start_daemon(text, workers=2)
    second = start_daemon(text, workers=2)
    created = subprocess.run(
        [sys.executable, "-m", "gwd", "keys", "create", "--name", "dave", "--plan", "basic", "-c", str(first.config_path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=30,
    )
    headers = {"x-api-key": created.stdout.strip().splitlines()[-1]}

    def status(daemon) -> int:
        return request(daemon.port, "GET", "/secret", headers=headers).status

    assert statuses_past_403(lambda: status(first), 21) == [200] * 21
    # 21 counted so far, through two daemons: 9 more pass, then "Limit Exceeded".
    assert statuses_past_403(lambda: status(second), 11) == [200] * 9 + [429] * 2
    report = subprocess.run(
        [sys.executable, "-m", "gwd", "usage", "--key", "dave", "-c", str(first.config_path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=30,
    )
    assert report.returncode == 0, report.stderr
    assert report.stdout.split()[-1] == "30"


def test_a_redis_that_stops_answering_is_logged_as_a_timeout(start_daemon, redis_server):
    """A frozen redis-server (SIGSTOP) accepts connections and answers nothing: the log says it timed out."""
    daemon = start_daemon(config(redis_server.url, 100, 100), workers=1)
    assert statuses(daemon, 1) == [200]
    redis_server.proc.send_signal(signal.SIGSTOP)
    try:
        assert statuses(daemon, 1) == [200]  # fail_open
        wait_for(lambda: "Redis at" in daemon.stderr(), 10, "the failure to be logged")
    finally:
        redis_server.proc.send_signal(signal.SIGCONT)
    line = next(line for line in daemon.stderr().splitlines() if "Redis at" in line)
    assert "failed (timed out after 250 ms)" in line, line
