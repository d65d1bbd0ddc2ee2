"""Metrics across workers: exact totals through worker deaths and reloads, bounded labels, promtool, probes."""

from __future__ import annotations

import http.client
import os
import resource
import shutil
import signal
import struct
import subprocess
import threading
import time

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families
from support import probe, request, scrape, series, total, wait_for

pytestmark = pytest.mark.process

CONFIG = """
[server]
state_dir = "{state}"

[log]
access = "off"

[[routes]]
route = "GET /hello"
integration = { type = "mock", body = "hello" }

[[routes]]
route = "ANY /files/{proxy+}"
integration = { type = "mock", status = 201, body = "{proxy}" }
"""


def send(daemon, count: int, path: str = "/hello") -> None:
    """``count`` requests on fresh connections from 4 threads, so both workers get some."""
    errors: list[int] = []

    def run(share: int) -> None:
        for _ in range(share):
            status = request(daemon.port, "GET", path).status
            if status >= 300:
                errors.append(status)

    threads = [threading.Thread(target=run, args=(count // 4 + (1 if n < count % 4 else 0),)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []


@pytest.fixture
def daemon(tmp_path, start_daemon):
    return start_daemon(CONFIG.replace("{state}", str(tmp_path / "state")), workers=2)


def requests_total(daemon) -> float:
    return total(scrape(daemon), "gwd_requests_total", route="GET /hello")


def test_counts_are_exact_across_workers_deaths_and_reloads(daemon):
    send(daemon, 300)
    wait_for(lambda: requests_total(daemon) == 300, 5, "300 requests counted")
    assert total(scrape(daemon), "gwd_request_duration_seconds_count", route="GET /hello") == 300

    # A worker killed outright: its counts up to its last flush stay (the flush interval passed: all of them).
    victim = daemon.worker_pids()[0]
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: len(daemon.worker_pids()) == 2 and victim not in daemon.worker_pids(), 20, "the worker's restart")
    assert requests_total(daemon) == 300
    assert total(scrape(daemon), "gwd_worker_restarts_total", reason="signal") == 1

    send(daemon, 100)
    wait_for(lambda: requests_total(daemon) == 400, 5, "400 requests counted")

    # A worker stopped with SIGTERM flushes as it exits; it is replaced and nothing doubles.
    os.kill(daemon.worker_pids()[0], signal.SIGTERM)
    send(daemon, 50)
    wait_for(lambda: requests_total(daemon) == 450, 5, "450 requests counted")

    # A reload: the old workers' counts stay, the new ones add.
    daemon.signal(signal.SIGHUP)
    wait_for(lambda: "reload complete" in daemon.stderr(), 20, "the reload")
    send(daemon, 50)
    wait_for(lambda: requests_total(daemon) == 500, 5, "500 requests counted")
    text = scrape(daemon)
    assert total(text, "gwd_config_reloads_total", result="success") == 1
    assert total(text, "gwd_workers") == 2
    wait_for(lambda: requests_total(daemon) == 500, 3, "the total to stay exact")


def test_ten_thousand_paths_of_a_proxy_route_make_one_series(daemon):
    conn = http.client.HTTPConnection("127.0.0.1", daemon.port, timeout=10)  # keep-alive: 10,000 requests quickly
    for n in range(10_000):
        conn.request("GET", f"/files/dir{n}/file{n}.txt")
        response = conn.getresponse()
        response.read()
        assert response.status == 201
    conn.close()
    wait_for(lambda: total(scrape(daemon), "gwd_requests_total", route="ANY /files/{proxy+}") == 10_000, 5, "all counted")
    text = scrape(daemon)
    assert series(text, "gwd_requests_total") == [
        'gwd_requests_total{api="default",code="201",method="GET",route="ANY /files/{proxy+}",stage="$default"}'
    ]
    assert "dir7" not in text


def test_unmatched_requests_and_odd_methods_have_bounded_labels(daemon):
    assert request(daemon.port, "GET", "/nowhere/1").status == 404
    # A method token outside the parser's registry: 501, before any route is looked at (RFC 9110 §9.1).
    assert request(daemon.port, "BREW", "/hello").status == 501
    # A method the parser knows but a route key cannot name: counted, as OTHER.
    assert request(daemon.port, "PROPFIND", "/files/x").status == 201
    proxy_route = "ANY /files/{proxy+}"
    wait_for(lambda: total(scrape(daemon), "gwd_requests_total", route=proxy_route) == 1, 5, "the PROPFIND counted")
    wait_for(lambda: total(scrape(daemon), "gwd_requests_total", route="$unmatched") >= 1, 5, "the 404 counted")
    text = scrape(daemon)
    assert total(text, "gwd_requests_total", route=proxy_route, method="OTHER") == 1
    assert "PROPFIND" not in text
    routes = {line.split('route="')[1].split('"')[0] for line in series(text, "gwd_requests_total")}
    assert routes <= {"GET /hello", "$unmatched", proxy_route}


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Debian's prometheus package) is not installed")
def test_scrape_leaves_out_values_files_it_cannot_read(daemon, tmp_path):
    """An empty values file (a worker killed while creating it) or a damaged one costs a scrape nothing else."""
    send(daemon, 20)
    wait_for(lambda: requests_total(daemon) == 20, 5, "20 requests counted")
    (directory,) = (tmp_path / "state").glob("metrics.*")
    (directory / "histogram_999999.db").write_bytes(b"")
    damaged = directory / "counter_999998.db"
    # "64 bytes used", then an entry whose key claims 1000 bytes.
    damaged.write_bytes(struct.pack("<ii", 64, 0) + struct.pack("<i", 1000) + bytes(52))
    for _ in range(3):
        assert requests_total(daemon) == 20
    assert daemon.proc.poll() is None
    assert daemon.stderr().count(f"leaving out {damaged}") == 1, daemon.stderr()


def test_promtool_accepts_the_exposition(daemon):
    send(daemon, 20)
    request(daemon.port, "GET", "/nowhere")
    wait_for(lambda: requests_total(daemon) == 20, 5, "20 counted")
    text = scrape(daemon)
    checked = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    # OpenMetrics when asked (promtool reads only the Prometheus format): prometheus-client's strict parser takes it.
    families = list(text_string_to_metric_families(scrape(daemon, "application/openmetrics-text; version=1.0.0")))
    assert {family.name for family in families} >= {"gwd_requests", "gwd_request_duration_seconds", "gwd_workers"}


def test_probes_healthz_and_readyz_during_drain(tmp_path, start_daemon):
    config = CONFIG.replace("{state}", str(tmp_path / "state")).replace(
        '[[routes]]\nroute = "GET /hello"\nintegration = { type = "mock", body = "hello" }',
        '[[routes]]\nroute = "GET /hello"\nintegration = { type = "mock", body = "hello", delay = "3s" }',
    )
    daemon = start_daemon(config, workers=1)
    assert probe(daemon, "/healthz") == 200
    assert probe(daemon, "/readyz") == 200
    slow = threading.Thread(target=request, args=(daemon.port, "GET", "/hello"))
    slow.start()
    wait_for(lambda: total(scrape(daemon), "gwd_inflight_requests") == 1, 5, "the request in flight")
    daemon.signal(signal.SIGTERM)
    wait_for(lambda: probe(daemon, "/readyz") == 503, 5, "/readyz to say 503 while draining")
    assert probe(daemon, "/healthz") == 200
    slow.join(10)


def open_descriptors(pid: int) -> set[int]:
    return {int(fd) for fd in os.listdir(f"/proc/{pid}/fd")}


def test_a_flush_that_cannot_write_keeps_its_counts_for_the_next_one(tmp_path, start_daemon):
    """A worker out of descriptors cannot create its values file: the flush fails, is logged once, loses nothing."""
    daemon = start_daemon(CONFIG.replace("{state}", str(tmp_path / "state")), workers=1)
    [worker] = daemon.worker_pids()
    before = open_descriptors(worker)
    connections = [http.client.HTTPConnection("127.0.0.1", daemon.port, timeout=10) for _ in range(4)]
    for connection in connections:
        connection.connect()
    wait_for(lambda: len(open_descriptors(worker) - before) >= 4, 10, "the worker to accept the connections")
    lowest_free = min(set(range(len(open_descriptors(worker)) + 1)) - open_descriptors(worker))
    _, hard = resource.prlimit(worker, resource.RLIMIT_NOFILE)
    resource.prlimit(worker, resource.RLIMIT_NOFILE, (lowest_free, hard))
    sent = 0
    fault_until = time.monotonic() + 2.5  # long enough for two flushes to fail
    failed = "cannot write this worker's counts"
    while time.monotonic() < fault_until or (failed not in daemon.stderr() and time.monotonic() < fault_until + 10):
        connection = connections[sent % len(connections)]
        connection.request("GET", "/hello")
        response = connection.getresponse()
        assert response.status == 200 and response.read() == b"hello"
        sent += 1
    assert failed in daemon.stderr()
    assert requests_total(daemon) == 0
    resource.prlimit(worker, resource.RLIMIT_NOFILE, (hard, hard))
    wait_for(lambda: requests_total(daemon) == sent, 10, f"the {sent} requests to be counted")
    for connection in connections:
        connection.close()
    text = scrape(daemon)
    assert total(text, "gwd_request_duration_seconds_count", route="GET /hello") == sent
    assert daemon.stderr().count(failed) == 1
    assert "counts are written again; none were lost" in daemon.stderr()


def test_throttled_and_cache_counts_stay_exact_over_many_flushes(tmp_path, start_daemon):
    """Refusals and cache results are counted as differences from the last flush: each flush adds only what is new."""
    daemon = start_daemon(
        CONFIG.replace("{state}", str(tmp_path / "state"))
        + """
[[routes]]
route = "GET /limited"
integration = { type = "mock", body = "ok" }
throttle = { rate = 0.01, burst = 1 }

[[routes]]
route = "GET /cached"
integration = { type = "mock", body = "cached" }
cache = { ttl = "5m" }
""",
        workers=1,
    )
    refused = hits = 0
    for round_ in range(1, 4):
        statuses = [request(daemon.port, "GET", "/limited").status for _ in range(3)]
        refused += statuses.count(429)
        hits += [request(daemon.port, "GET", "/cached").headers.get("x-cache") for _ in range(3)].count("Hit")
        send(daemon, 1)

        def flushed() -> bool:
            text = scrape(daemon)
            return total(text, "gwd_requests_total", route="GET /hello") == round_
        wait_for(flushed, 10, f"flush of round {round_}")
        text = scrape(daemon)
        assert total(text, "gwd_throttled_requests_total", route="GET /limited") == refused
        assert total(text, "gwd_cache_requests_total", route="GET /cached", result="hit") == hits
    assert refused == 8 and hits == 8
    assert "cannot write this worker's counts" not in daemon.stderr()


def test_gauges_show_the_throttle_table_and_the_memory_cache_filling(tmp_path, start_daemon):
    daemon = start_daemon(
        CONFIG.replace("{state}", str(tmp_path / "state"))
        + """
[throttle]
table_size = 1024

[[routes]]
route = "GET /limited"
integration = { type = "mock", body = "ok" }
client_throttle = { rate = 100, burst = 100, key = "header:X-Client" }

[[routes]]
route = "GET /cached/{name}"
integration = { type = "mock", body = "cached {name}" }
cache = { ttl = "5m" }
""",
        workers=2,
    )
    text = scrape(daemon)
    assert total(text, "gwd_throttle_buckets") == 0 and total(text, "gwd_throttle_table_slots") == 1024
    for client in range(5):
        assert request(daemon.port, "GET", "/limited", {"X-Client": f"c{client}"}).status == 200
    # Read from shared memory at the scrape: one bucket per client, whichever worker took it.
    assert total(scrape(daemon), "gwd_throttle_buckets") == 5
    stored = b"".join(request(daemon.port, "GET", f"/cached/{name}").body for name in ("a", "bb", "ccc"))
    assert stored == b"cached acached bbcached ccc"
    # Each worker reports its own cache each second; the gauges are their sum.
    wait_for(lambda: total(scrape(daemon), "gwd_cache_entries") == 3, 5, "three cached entries")
    assert total(scrape(daemon), "gwd_cache_stored_bytes") > len(stored)
