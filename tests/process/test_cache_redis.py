"""The response cache in a real redis-server: shared by daemons, one fetch for all, Redis going away."""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

from backend import Backend
from support import ROOT, concurrent_gets, request, wait_for, x_cache


def config(backend: Backend, redis_url: str, state_dir) -> str:
    return f"""
[server]
state_dir = "{state_dir}"

[cache]
backend = "{redis_url}"

[[routes]]
route = "GET /any/{{proxy+}}"
integration = {{ type = "http", uri = "{backend.url}/{{proxy}}" }}
cache = {{ ttl = "300s" }}
"""


def test_a_miss_on_one_daemon_is_a_hit_on_the_other(start_daemon, redis_server, tmp_path):
    with Backend() as backend:
        first = start_daemon(config(backend, redis_server.url, tmp_path / "state"), workers=2)
        second = start_daemon(config(backend, redis_server.url, tmp_path / "state"), workers=2)
        one = request(first.port, "GET", "/any/shared")
        other = request(second.port, "GET", "/any/shared")
        assert (one.headers.get("x-cache"), other.headers.get("x-cache")) == ("Miss", "Hit")
        assert other.body == one.body and int(other.headers["age"]) >= 0
        assert len(backend.received) == 1
        # A flush against Redis empties it for every daemon.
        flushed = subprocess.run(
            [sys.executable, "-m", "gwd", "cache", "flush", "--route", "GET /any/{proxy+}", "-c", str(first.config_path)],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=30,
        )
        assert flushed.returncode == 0 and "1 responses dropped" in flushed.stdout, flushed
        assert x_cache(second, "/any/shared") == "Miss"


def test_concurrent_misses_on_two_daemons_fetch_once(start_daemon, redis_server, tmp_path):
    with Backend() as backend:
        daemons = [start_daemon(config(backend, redis_server.url, tmp_path / "state"), workers=2) for _ in range(2)]
        # 100 requests at once to each daemon, both daemons at once: 200 on four worker processes.
        with ThreadPoolExecutor(2) as pool:
            batches = pool.map(lambda daemon: concurrent_gets(daemon.port, "/any/delayed/0.5", 100), daemons)
            results = [result for batch in batches for result in batch]
        fetched = [seen for seen in backend.received if seen.raw_path == "/delayed/0.5"]
        assert len(fetched) == 1, (len(fetched), "\n".join(line for daemon in daemons for line in daemon.stderr().splitlines() if "gwd.cache" in line or "gwd.http" in line or "ERROR" in line))
        assert results.count("Miss") == 1 and results.count("Hit") == 199


def test_redis_down_bypasses_and_comes_back(start_daemon, redis_server, tmp_path):
    with Backend() as backend:
        daemon = start_daemon(config(backend, redis_server.url, tmp_path / "state"), workers=1)
        assert [x_cache(daemon, "/any/x") for _ in range(2)] == ["Miss", "Hit"]
        redis_server.stop()
        replies = [request(daemon.port, method, "/any/x") for method in ("GET", "GET", "HEAD", "GET", "HEAD")]
        assert [(r.status, r.headers["x-cache"]) for r in replies] == [(200, "Bypass")] * 5
        wait_for(lambda: "requests bypass it" in daemon.stderr(), 5, "the failure to be logged")
        assert daemon.worker_pids(), "the worker must keep running"
        redis_server.start()
        wait_for(lambda: x_cache(daemon, "/any/x") == "Miss", 10, "the cache to be used again")
        assert x_cache(daemon, "/any/x") == "Hit"


def test_a_burst_while_redis_is_down_reaches_the_backend_once_per_worker(start_daemon, redis_server, tmp_path):
    with Backend() as backend:
        daemon = start_daemon(config(backend, redis_server.url, tmp_path / "state"), workers=1)
        redis_server.stop()
        results = concurrent_gets(daemon.port, "/any/delayed/0.5", 30)
        fetched = [seen for seen in backend.received if seen.raw_path == "/delayed/0.5"]
        # The first request finds Redis gone and fetches (Bypass); the rest waited for it and got its answer.
        assert len(fetched) == 1, len(fetched)
        assert sorted(results) == ["Bypass"] + ["Hit"] * 29, results
