"""Upstreams through the real daemon: balancing over real backends, ejection, circuit breaking, retries."""

from __future__ import annotations

import http.client
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import orjson
import pytest
from backend import Backend
from support import ROOT, LoadClient, free_port, request, scrape, total, wait_for


class TargetBackends:
    """Backends in processes of their own, each answering its port; ``delays`` by index."""

    def __init__(self, count: int, delays: dict[int, float] | None = None, health: dict[int, int] | None = None) -> None:
        self.ports = [free_port() for _ in range(count)]
        self.delays = delays or {}
        self.health = health or {}  # the status each answers health checks with (200 unless given)
        self.processes: dict[int, subprocess.Popen[bytes]] = {}

    def start(self, index: int) -> None:
        command = [
            sys.executable, str(ROOT / "tests" / "target_backend.py"), str(self.ports[index]), str(self.delays.get(index, 0)),
            str(self.health.get(index, 200)),
        ]
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
        assert process.stdout is not None and process.stdout.readline() == b"ready\n"
        self.processes[index] = process

    def __enter__(self) -> TargetBackends:
        for index in range(len(self.ports)):
            self.start(index)
        return self

    def kill(self, index: int) -> None:
        process = self.processes.pop(index)
        process.send_signal(signal.SIGKILL)
        process.wait(10)

    def __exit__(self, *exc: object) -> None:
        for index in list(self.processes):
            self.kill(index)


def upstream_config(ports: list[int], settings: str = "", weights: list[int] | None = None, route_extra: str = "") -> str:
    targets = ", ".join(
        f'{{ address = "127.0.0.1:{port}", weight = {weights[i] if weights else 1} }}' for i, port in enumerate(ports)
    )
    return f"""
[[upstreams]]
name = "pool"
targets = [{targets}]
{settings}

[[routes]]
route = "ANY /{{proxy+}}"
integration = {{ type = "http", uri = "http://upstream:pool/{{proxy}}"{route_extra} }}
"""


def port_of(reply) -> int:
    assert reply.status == 200, (reply.status, reply.body)
    return orjson.loads(reply.body)["port"]


def gets(port: int, path: str, count: int, headers: dict[str, str] | None = None) -> list[http.client.HTTPResponse]:
    """``count`` sequential GETs on one keep-alive connection: (status, body) each."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    replies = []
    try:
        for _ in range(count):
            conn.request("GET", path, headers=headers or {})
            response = conn.getresponse()
            replies.append((response.status, response.read()))
    finally:
        conn.close()
    return replies


def test_round_robin_shares_follow_the_weights(start_daemon):
    with TargetBackends(3) as backends:
        daemon = start_daemon(upstream_config(backends.ports, weights=[1, 2, 3]), workers=2)
        replies = []
        with ThreadPoolExecutor(4) as pool:
            for batch in pool.map(lambda _: gets(daemon.port, "/x", 750), range(4)):
                replies += batch
        shares = Counter(orjson.loads(body)["port"] for status, body in replies if status == 200)
        assert sum(shares.values()) == 3000
        for port, weight in zip(backends.ports, (1, 2, 3)):
            expected = 3000 * weight / 6
            assert abs(shares[port] - expected) <= 0.05 * expected, shares


def test_least_requests_sends_fewer_requests_to_a_slow_target(start_daemon):
    with TargetBackends(2, delays={0: 0.2}) as backends:
        daemon = start_daemon(upstream_config(backends.ports, 'algorithm = "least_requests"'), workers=1)
        with ThreadPoolExecutor(8) as pool:
            ports = [port for batch in pool.map(lambda _: gets(daemon.port, "/x", 25), range(8)) for port in
                     (orjson.loads(body)["port"] for status, body in batch)]
        shares = Counter(ports)
        assert len(ports) == 200
        assert shares[backends.ports[0]] * 3 < shares[backends.ports[1]], shares


def test_consistent_hash_keeps_each_key_on_one_target_and_a_leaving_target_moves_only_its_keys(start_daemon):
    hashing = 'algorithm = "consistent_hash"\nhash_on = "header:X-User"'
    with TargetBackends(4) as backends:
        daemon = start_daemon(upstream_config(backends.ports, hashing), workers=2)

        def placement() -> dict[str, int]:
            placed = {}
            for user in range(200):
                ports = {orjson.loads(body)["port"] for _, body in gets(daemon.port, "/x", 3, {"X-User": f"user-{user}"})}
                assert len(ports) == 1, (user, ports)
                placed[f"user-{user}"] = ports.pop()
            return placed

        before = placement()
        assert set(before.values()) == set(backends.ports)
        leaving = backends.ports[1]
        old_workers = set(daemon.worker_pids())
        daemon.config_path.write_text(upstream_config([port for port in backends.ports if port != leaving], hashing))
        daemon.signal(signal.SIGHUP)
        wait_for(lambda: "reload complete" in daemon.stderr(), 20, "the reload")
        wait_for(lambda: not old_workers & set(daemon.worker_pids()), 20, "the old workers to exit")
        after = placement()
        moved = {user for user in before if before[user] != after[user]}
        assert moved == {user for user in before if before[user] == leaving}
        assert 0.1 * len(before) < len(moved) < 0.4 * len(before)  # about 1/4 of the keys


def test_a_killed_backend_under_load_costs_at_most_one_percent_and_nothing_after_its_ejection(start_daemon):
    with TargetBackends(3) as backends:
        settings = 'eject_after = 3\neject_for = "60s"\nretries = { attempts = 2, on = ["connect-failure", "reset"] }'
        daemon = start_daemon(upstream_config(backends.ports, settings), workers=2)
        with LoadClient(daemon.port, "/x", threads=4, keepalive=True) as load:
            load.wait_for_requests(300)
            backends.kill(1)
            load.wait_for_requests(300)
            failures_after_ejection = len(load.failures)
            load.wait_for_requests(600)
        assert len(load.failures) <= 0.01 * load.ok, load.failures[:5]
        assert len(load.failures) == failures_after_ejection
        killed = {"upstream": "pool", "target": f"127.0.0.1:{backends.ports[1]}"}
        wait_for(lambda: total(scrape(daemon), "gwd_upstream_ejections_total", **killed) >= 1, 10, "the ejection counted")
        assert total(scrape(daemon), "gwd_upstream_target_healthy", **killed) == 0
        print(f"ok={load.ok} failures={len(load.failures)}")


def hanging_listener() -> socket.socket:
    """A socket that takes connections (the kernel's backlog) and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    return listener


def test_a_hanging_backend_is_ejected_by_its_timeouts(start_daemon):
    listener = hanging_listener()
    with Backend() as good:
        ports = [listener.getsockname()[1], good.port]
        daemon = start_daemon(upstream_config(ports, "eject_after = 2", route_extra=', timeout = "300ms"'), workers=1)
        statuses = [status for status, _ in gets(daemon.port, "/x", 30)]
    listener.close()
    assert statuses.count(504) == 2, statuses  # round robin reaches it every other request until it is ejected
    assert statuses[-20:] == [200] * 20


def test_max_requests_lets_ten_through_and_answers_the_rest_503_at_once(start_daemon):
    with Backend() as backend:
        daemon = start_daemon(upstream_config([backend.port], "max_requests = 10"), workers=2)

        def one(_: int) -> tuple[int, float]:
            started = time.monotonic()
            reply = request(daemon.port, "GET", "/slow/2", timeout=20)
            return reply.status, time.monotonic() - started

        with ThreadPoolExecutor(50) as pool:
            results = list(pool.map(one, range(50)))
    statuses = Counter(status for status, _ in results)
    assert statuses == {200: 10, 503: 40}, statuses
    assert len(backend.slow_started) == 10
    assert all(seconds < 1.5 for status, seconds in results if status == 503)


def test_a_refused_connection_is_retried_on_another_target_but_a_post_with_a_body_never_is(start_daemon):
    refused = free_port()  # nothing listens there
    with Backend() as backend:
        settings = "eject_after = 0\nretries = { attempts = 1 }"
        daemon = start_daemon(upstream_config([refused, backend.port], settings), workers=1)
        assert [status for status, _ in gets(daemon.port, "/a", 20)] == [200] * 20
        posts = []
        for n in range(10):
            conn = http.client.HTTPConnection("127.0.0.1", daemon.port, timeout=10)
            conn.request("POST", "/mirror", body=b"payload %d" % n)
            posts.append(conn.getresponse().status)
            conn.close()
    assert Counter(posts) == {200: 5, 502: 5}, posts  # every other POST went to the refusing target: not retried
    assert sum(1 for r in backend.received if r.method == "POST") == 5


def test_the_retry_budget_caps_retries_in_a_total_outage(start_daemon):
    with Backend() as first, Backend() as second:
        settings = 'eject_after = 0\nretries = { attempts = 2, on = ["503"], budget = "20%" }'
        daemon = start_daemon(upstream_config([first.port, second.port], settings), workers=1)
        statuses = [status for status, _ in gets(daemon.port, "/status/503", 200)]
    assert statuses == [503] * 200
    attempts = len(first.received) + len(second.received)
    # Without a budget: 400 (one retry each, two targets); with it: 200, plus 20% of them, plus the floor of 10.
    assert 210 <= attempts <= 200 + 40 + 10 + 2, attempts


@pytest.mark.parametrize(
    "upstream, route_uri, problem",
    [
        ('name = "pool"\ntargets = [{ address = "127.0.0.1:9" }]', "http://upstream:nope/", "upstream 'nope': no [[upstreams]] entry has it"),
        ('name = "pool"\nscheme = "https"\ntargets = [{ address = "127.0.0.1:9" }]', "http://upstream:pool/",
         "upstream 'pool': its scheme is https: write https://upstream:pool/"),
        ('name = "pool"\ntargets = [{ address = "127.0.0.1:9" }, { address = "127.0.0.1:9" }]', "http://upstream:pool/",
         "upstreams[0].targets[1].address: 127.0.0.1:9 is listed twice"),
        ('name = "pool"\nalgorithm = "random"\ntargets = [{ address = "127.0.0.1:9" }]', "http://upstream:pool/",
         "upstreams[0].algorithm: expected"),
        ('name = "pool"\nhash_on = "ip"\ntargets = [{ address = "127.0.0.1:9" }]', "http://upstream:pool/",
         'upstreams[0].hash_on: applies to algorithm = "consistent_hash" only'),
        ('name = "pool"\ntargets = [{ address = "127.0.0.1:9" }]\nretries = { on = ["teapot"], budget = "150%" }',
         "http://upstream:pool/", "upstreams[0].retries.on[0]: 'teapot' is not one of"),
    ],
)
def test_bad_upstreams_are_refused_at_load(tmp_path, upstream, route_uri, problem):
    from gwd.config.reader import load_config

    path = tmp_path / "gwd.toml"
    path.write_text(f'[[upstreams]]\n{upstream}\n\n[[routes]]\nroute = "GET /a"\nintegration = {{ type = "http", uri = "{route_uri}" }}\n')
    with pytest.raises(Exception) as raised:
        load_config(str(path))
    assert problem in str(raised.value)


def test_an_ejected_target_takes_traffic_again_once_its_ejection_is_over(start_daemon):
    with TargetBackends(2) as backends:
        daemon = start_daemon(upstream_config(backends.ports, 'eject_after = 2\neject_for = "1s"'), workers=1)
        backends.kill(1)
        statuses = [status for status, _ in gets(daemon.port, "/x", 10)]
        assert statuses.count(502) == 2 and statuses[-6:] == [200] * 6, statuses
        backends.start(1)
        wait_for(lambda: port_of(request(daemon.port, "GET", "/x")) == backends.ports[1], 5, "the target back in rotation")


def test_a_client_that_goes_away_does_not_count_against_the_target(start_daemon):
    with Backend() as first, Backend() as second:
        daemon = start_daemon(upstream_config([first.port, second.port], "eject_after = 1"), workers=1)
        for _ in range(4):
            with pytest.raises(TimeoutError):
                request(daemon.port, "GET", "/slow/2", timeout=0.3)
        wait_for(lambda: len(first.cancelled) + len(second.cancelled) == 4, 10, "the abandoned requests cancelled")
        assert [status for status, _ in gets(daemon.port, "/x", 4)] == [200] * 4
        assert (len(first.received), len(second.received)) == (2, 2)  # neither was ejected


def test_a_target_back_from_ejection_ramps_up_over_slow_start(start_daemon):
    with TargetBackends(2) as backends:
        settings = 'eject_after = 2\neject_for = "1s"\nslow_start = "4s"'
        daemon = start_daemon(upstream_config(backends.ports, settings), workers=1)
        back = backends.ports[1]
        backends.kill(1)
        assert [status for status, _ in gets(daemon.port, "/x", 6)].count(502) == 2
        backends.start(1)
        wait_for(lambda: port_of(request(daemon.port, "GET", "/x")) == back, 10, "the target's first request back")
        # Its first second back: a share growing from 5% to 25% of its weight, so well under half the requests.
        first_second = []
        until = time.monotonic() + 1
        while time.monotonic() < until:
            first_second += [orjson.loads(body)["port"] for _, body in gets(daemon.port, "/x", 10)]
        assert first_second.count(back) < 0.3 * len(first_second), Counter(first_second)

        def even_share() -> bool:
            ports = [orjson.loads(body)["port"] for _, body in gets(daemon.port, "/x", 40)]
            return ports.count(back) == 20  # smooth round robin at equal weights: exactly every other request

        wait_for(even_share, 10, "its whole share")


def test_a_target_failing_its_health_checks_gets_no_traffic_and_checks_run_once_per_daemon(start_daemon):
    with TargetBackends(2, health={1: 500}) as backends:
        health = 'health = { path = "/healthz", interval = "500ms", timeout = "200ms", unhealthy_threshold = 2, healthy_threshold = 2 }'
        daemon = start_daemon(upstream_config(backends.ports, health), workers=2)
        failing = backends.ports[1]
        # interval x unhealthy_threshold = 1 s, plus a tick for every worker to read it.
        started = time.monotonic()
        wait_for(lambda: all(p != failing for p in (port_of(r) for r in (request(daemon.port, "GET", "/x") for _ in range(10)))),
                 5, "no request to the failing target")
        assert time.monotonic() - started < 2.5
        assert failing not in [orjson.loads(body)["port"] for _, body in gets(daemon.port, "/x", 100)]

        def admin_view() -> dict[int, dict]:
            (pool,) = request(daemon.admin_port, "GET", "/upstreams").json()["upstreams"]
            return {int(target["address"].rsplit(":", 1)[1]): target for target in pool["targets"]}

        wait_for(lambda: admin_view()[backends.ports[0]]["health"] == "healthy", 5, "the passing target confirmed")
        view = admin_view()
        assert view[failing]["health"] == "unhealthy" and view[failing]["why"] == "status 500", view
        assert view[failing]["since"].endswith("+00:00") and view[backends.ports[0]]["why"] == "status 200"
        # Checked once per daemon, not once per worker: 6 more checks take about 3 s (two checkers: 1.5 s).
        def checks() -> int:
            return request(backends.ports[0], "GET", "/health-checks").json()["checks"]

        before, started = checks(), time.monotonic()
        wait_for(lambda: checks() >= before + 6, 10, "6 more health checks", interval=0.05)
        assert time.monotonic() - started > 2.2
        # Healthy again: back within interval x healthy_threshold (plus a tick).
        backends.kill(1)
        backends.health[1] = 200
        backends.start(1)
        wait_for(lambda: failing in [orjson.loads(body)["port"] for _, body in gets(daemon.port, "/x", 10)], 5, "the target back")
        wait_for(lambda: total(scrape(daemon), "gwd_upstream_target_healthy", upstream="pool", target=f"127.0.0.1:{failing}") == 1,
                 10, "the healthy gauge")
        assert admin_view()[failing]["health"] == "healthy"
