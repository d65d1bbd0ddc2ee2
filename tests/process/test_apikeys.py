"""API keys with the real CLI and a running daemon: create, use, revoke; hashed; never logged."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
from support import ROOT, Hammer, request, statuses_past_403, wait_for


def config(state_dir: Path) -> str:
    return f"""
[server]
state_dir = "{state_dir}"

[[usage_plans]]
name = "gold"
throttle = {{ rate = 0.01, burst = 5 }}

[[routes]]
route = "GET /secret"
integration = {{ type = "mock", body = '{{"secret": true}}' }}
api_key_required = true

[[routes]]
route = "GET /open"
integration = {{ type = "mock", body = '{{"open": true}}' }}
"""


def gwd_keys(daemon, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gwd", "keys", *args, "-c", str(daemon.config_path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=30,
    )


def all_answer(daemon, status: int, headers: dict[str, str]) -> bool:
    """Ten requests on fresh connections (so both workers get some) all answer ``status``."""
    return all(request(daemon.port, "GET", "/secret", headers=headers).status == status for _ in range(10))


def test_keys_lifecycle_against_a_running_daemon(start_daemon, tmp_path):
    state_dir = tmp_path / "state"
    daemon = start_daemon(config(state_dir), workers=2)
    assert daemon.get("/secret").status == 403
    assert daemon.get("/secret").body == b'{"message":"Forbidden"}'
    assert daemon.get("/secret", headers={"x-api-key": "not-a-key-not-a-key-0"}).status == 403
    assert daemon.get("/open").status == 200

    created = gwd_keys(daemon, "create", "--name", "alice")
    assert created.returncode == 0, created.stderr
    value = created.stdout.strip().splitlines()[-1]
    assert len(value) >= 20
    started = time.monotonic()
    wait_for(lambda: all_answer(daemon, 200, {"x-api-key": value}), 5, "the new key to work on every worker")
    assert time.monotonic() - started <= 1.0

    listing = gwd_keys(daemon, "list")
    assert "alice" in listing.stdout and "active" in listing.stdout and value not in listing.stdout
    key_id = listing.stdout.split("alice", 1)[1].split()[0]

    revoked = gwd_keys(daemon, "revoke", "alice")
    assert revoked.returncode == 0 and "revoked" in revoked.stdout
    started = time.monotonic()
    wait_for(lambda: all_answer(daemon, 403, {"x-api-key": value}), 5, "the revoked key to be refused")
    assert time.monotonic() - started <= 1.0
    assert gwd_keys(daemon, "revoke", "alice").returncode == 2
    assert gwd_keys(daemon, "show", "nobody").returncode == 2

    # The access log names the key by id; no file holds the value.
    wait_for(lambda: any(line.get("apiKeyId") == key_id for line in daemon.access_lines()), 5, "a logged key id")
    for path in [*(p for p in state_dir.rglob("*") if p.is_file()), daemon.stdout_path, daemon.stderr_path]:
        assert value.encode() not in path.read_bytes(), path


def test_usage_plan_limits_each_key(start_daemon, tmp_path):
    daemon = start_daemon(config(tmp_path / "state"), workers=2)
    values = []
    for name in ("gold-1", "gold-2"):
        created = gwd_keys(daemon, "create", "--name", name, "--plan", "gold")
        assert created.returncode == 0, created.stderr
        values.append(created.stdout.strip().splitlines()[-1])
    for value in values:
        headers = {"x-api-key": value}

        def status() -> int:
            return request(daemon.port, "GET", "/secret", headers=headers).status

        # The key's burst of 5 refills at one per 100 s: the sixth counted request is
        # refused, for each key alike (a worker that has not read the new key yet
        # answers 403 and counts nothing).
        assert statuses_past_403(status, 6) == [200] * 5 + [429]
    assert gwd_keys(daemon, "create", "--name", "x", "--plan", "platinum").returncode == 2


def quota_config(state_dir: Path) -> str:
    return f"""
[server]
state_dir = "{state_dir}"

[[usage_plans]]
name = "basic"
quota = {{ limit = 50, period = "day" }}

[[routes]]
route = "GET /secret"
integration = {{ type = "mock", body = '{{"secret": true}}' }}
api_key_required = true
"""


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGKILL])
def test_quota_is_shared_persistent_and_reported(start_daemon, tmp_path, stop_signal):
    state_dir = tmp_path / "state"
    daemon = start_daemon(quota_config(state_dir), workers=2)
    created = gwd_keys(daemon, "create", "--name", "carol", "--plan", "basic")
    value = created.stdout.strip().splitlines()[-1]
    headers = {"x-api-key": value}

    def status() -> int:
        return request(daemon.port, "GET", "/secret", headers=headers).status

    # 40 accepted requests, on both workers.
    assert statuses_past_403(status, 40) == [200] * 40
    # Stop the whole daemon, gracefully or not, and start it again on the same state.
    if stop_signal == signal.SIGKILL:
        workers = daemon.worker_pids()
        for pid in [daemon.pid, *workers]:
            os.kill(pid, signal.SIGKILL)
        daemon.wait_exit(10)
    else:
        daemon.signal(signal.SIGTERM)
        assert daemon.wait_exit(20) == 0
    daemon.start()
    statuses = [status() for _ in range(12)]
    # 40 counted before the stop: 10 more pass, then the quota is used up.
    assert statuses == [200] * 10 + [429] * 2, statuses
    refused = request(daemon.port, "GET", "/secret", headers=headers)
    assert refused.body == b'{"message":"Limit Exceeded"}'
    report = subprocess.run(
        [sys.executable, "-m", "gwd", "usage", "--key", "carol", "-c", str(daemon.config_path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=30,
    )
    assert report.returncode == 0, report.stderr
    today = datetime.now(timezone.utc).date().isoformat()
    assert f"{today}" in report.stdout and "carol" in report.stdout
    assert report.stdout.split()[-1] == "50"


def test_two_keys_are_each_held_to_their_plan_across_workers(start_daemon, tmp_path):
    state_dir = tmp_path / "state"
    daemon = start_daemon(
        f"""
[server]
state_dir = "{state_dir}"

[[usage_plans]]
name = "silver"
throttle = {{ rate = 50, burst = 100 }}

[[routes]]
route = "GET /secret"
integration = {{ type = "mock", body = '{{"secret": true}}' }}
api_key_required = true
""",
        workers=2,
    )
    values = []
    for name in ("one", "two"):
        created = gwd_keys(daemon, "create", "--name", name, "--plan", "silver")
        values.append(created.stdout.strip().splitlines()[-1])
    hammers = [Hammer(daemon.port, "/secret", seconds=5, threads=3, headers={"x-api-key": v}).run() for v in values]
    for hammer in hammers:
        hammer.join()
    for hammer in hammers:
        # 403s come only while the workers have not yet read the new keys; they take no tokens.
        assert set(hammer.statuses) <= {200, 429, 403}, hammer.statuses
        accepted = hammer.statuses.get(200, 0)
        # The key's bucket is full at its first accepted request and refills from then on. A burst of two
        # seconds' refill keeps a stall of either side (a loaded CI machine) shorter than that from losing tokens.
        expected = 100 + 50 * (hammer.last_ok - hammer.first_ok)
        assert abs(accepted - expected) <= 0.05 * expected, (accepted, expected, hammer.statuses)


def test_key_database_is_private(start_daemon, tmp_path):
    state_dir = tmp_path / "state"
    daemon = start_daemon(config(state_dir), workers=1)
    assert gwd_keys(daemon, "create", "--name", "erin").returncode == 0
    assert (state_dir / "keys.db").stat().st_mode & 0o777 == 0o600
    assert state_dir.stat().st_mode & 0o777 == 0o700
