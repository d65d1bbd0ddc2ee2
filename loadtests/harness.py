"""Shared pieces of the load tests: start gwd, drive it with wrk, summarise rounds.

Everything listens on 127.0.0.1, every run is bounded in time, and every
process started here is stopped before the script exits.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, NamedTuple

ROOT = Path(__file__).resolve().parent.parent
STATE = '[server]\nstate_dir = "{tmp}/state"\n'
"""Config text keeping a gwd's key database in its scratch directory ({tmp} is filled in by running_gwd)."""


def load_test_parser(description: str, seconds: int, rounds: int) -> argparse.ArgumentParser:
    """The options every load test takes: --seconds, --rounds, --workers; a script adds its own."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=seconds, help="length of each wrk run")
    parser.add_argument("--rounds", type=int, default=rounds)
    parser.add_argument("--workers", type=int, default=2, help="worker processes of each gwd (and nginx proxy, Express)")
    return parser


def require_tools(*names: str) -> None:
    """Exit with install advice when a tool is missing; never install anything silently."""
    missing = [name for name in names if shutil.which(name) is None]
    if missing:
        sys.exit(f"missing {', '.join(missing)}: install with `apt-get install {' '.join(missing)}` (Debian packages)")


_ports_handed_out: set[int] = set()


def free_port() -> int:
    """A free loopback port below the kernel's ephemeral range, handed out once per process.

    Port 0 would give one from the ephemeral range, which any outgoing connection
    made before the server binds it may take (the server then fails with
    EADDRINUSE); below the range only an explicit bind takes a port.
    """
    with open("/proc/sys/net/ipv4/ip_local_port_range") as ranges:
        ephemeral_low = int(ranges.read().split()[0])
    candidates = range(10000, ephemeral_low) if ephemeral_low > 11000 else range(1024, 10000)
    for _ in range(1000):
        port = random.choice(candidates)
        if port in _ports_handed_out:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _ports_handed_out.add(port)
        return port
    raise RuntimeError(f"no free loopback port in {candidates}")


@contextmanager
def running_gwd(config: str, workers: int) -> Iterator[int]:
    """Run ``gwd run`` on a config text; yield its port once every worker accepts."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="gwd-load-") as tmp:
        path = Path(tmp) / "gwd.toml"
        path.write_text(config.replace("{tmp}", tmp))
        stderr_path = Path(tmp) / "stderr.log"
        with open(stderr_path, "wb") as stderr, open(os.devnull, "wb") as devnull:
            proc = subprocess.Popen(
                [
                    sys.executable, "-m", "gwd", "run", "-c", str(path), "--listen", f"127.0.0.1:{port}",
                    "--workers", str(workers), "--admin-listen", f"127.0.0.1:{free_port()}",
                ],
                stdout=devnull,
                stderr=stderr,
                cwd=ROOT,
            )
            try:
                deadline = time.monotonic() + 60
                while "ready:" not in stderr_path.read_text():
                    if proc.poll() is not None or time.monotonic() > deadline:
                        sys.exit(f"gwd did not start:\n{stderr_path.read_text()}")
                    time.sleep(0.05)
                yield port
            finally:
                stop(proc)


def wait_for_port(port: int, proc: subprocess.Popen, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                sys.exit(f"{what} did not start (exit code {proc.poll()})")
            time.sleep(0.05)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def running_nginx(server_blocks: str, workers: int, ports: list[int]) -> Iterator[None]:
    """nginx in the foreground with the given ``server { }`` blocks, in a scratch prefix."""
    with tempfile.TemporaryDirectory(prefix="gwd-load-nginx-") as prefix:
        os.chmod(prefix, 0o755)
        conf = Path(prefix) / "nginx.conf"
        conf.write_text(
            f"""
worker_processes {workers};
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    keepalive_requests 1000000;
    {server_blocks.replace("{prefix}", prefix)}
}}
"""
        )
        proc = subprocess.Popen(["nginx", "-p", prefix, "-c", str(conf), "-g", "daemon off;"])
        try:
            for port in ports:
                wait_for_port(port, proc, "nginx")
            yield
        finally:
            stop(proc)


@contextmanager
def backend_and_nginx_proxy(workers: int) -> Iterator[tuple[int, int]]:
    """The reference pair every proxy benchmark measures against: (the backend's port, nginx proxying it)."""
    backend_port, nginx_port = free_port(), free_port()
    with running_nginx(backend_server(backend_port), 1, [backend_port]):
        with running_nginx(nginx_proxy_server(nginx_port, backend_port), workers, [nginx_port]):
            yield backend_port, nginx_port


BACKEND_BODY = '{"message":"hello from the backend"}'


def backend_server(port: int) -> str:
    """An nginx ``server`` block answering every request itself: the fastest backend there is here."""
    return f"""
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        access_log off;
        location / {{ default_type application/json; return 200 '{BACKEND_BODY}'; }}
    }}
"""


def nginx_proxy_server(port: int, backend_port: int) -> str:
    """nginx as a production reverse proxy: upstream keep-alive, HTTP/1.1 upstream, the stock access log."""
    return f"""
    upstream backend {{
        server 127.0.0.1:{backend_port};
        keepalive 64;
    }}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        access_log {{prefix}}/access.log;
        location / {{
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        }}
    }}
"""


def gwd_proxy_config(backend_port: int, route_extra: str = "") -> str:
    """gwd proxying GET /hello to the backend, access log to a file, plus ``route_extra`` route keys."""
    return f"""
[log]
access = "{{tmp}}/access.log"

[[routes]]
route = "GET /hello"
integration = {{ type = "http", uri = "http://127.0.0.1:{backend_port}/hello" }}
{route_extra}"""


@dataclass
class WrkResult:
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    errors: int


def run_wrk(url: str, seconds: int, connections: int = 64, threads: int = 1, script: str | None = None) -> WrkResult:
    """One wrk run; ``script`` is a wrk Lua script's path (a POST body, headers)."""
    output = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", *(["-s", script] if script else []), url],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 30,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", output))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if non_2xx:
        errors += int(non_2xx.group(1))
    return WrkResult(rps, _percentile(output, "50%"), _percentile(output, "99%"), errors)


def _percentile(output: str, label: str) -> float:
    value, unit = re.search(rf"^\s+{re.escape(label)}\s+([\d.]+)(us|ms|s)\s*$", output, re.M).groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


@dataclass
class Summary:
    name: str
    rounds: list[WrkResult]

    @property
    def median_rps(self) -> float:
        return statistics.median(r.requests_per_second for r in self.rounds)

    @property
    def median_p99(self) -> float:
        return statistics.median(r.p99_ms for r in self.rounds)

    def row(self, reference: Summary | None, width: int = 24) -> str:
        rates = [r.requests_per_second for r in self.rounds]
        ratio = f"{self.median_rps / reference.median_rps:.2f}x" if reference else "-"
        return (
            f"{self.name:<{width}} {self.median_rps:>10,.0f} {min(rates):>10,.0f}-{max(rates):<10,.0f}"
            f" {statistics.median(r.p50_ms for r in self.rounds):>8.2f} {self.median_p99:>8.2f}"
            f" {sum(r.errors for r in self.rounds):>7} {ratio:>9}"
        )


class Target(NamedTuple):
    """What one row of a benchmark drives: a port, a path, wrk's connection count, and a wrk Lua script (or None)."""

    port: int
    path: str = "/hello"
    connections: int = 64
    script: str | None = None


def measure(ports: dict[str, int | Target], seconds: int, rounds: int, path: str = "/hello") -> dict[str, Summary]:
    """Warm every system up, then run the same wrk command on each, round after round.

    A plain port is driven on ``path`` with 64 connections; a :class:`Target`
    says its own.  Interleaving the rounds spreads a noisy machine's drift
    over every system alike; every other round runs the systems in reverse
    order, so that none is always the one measured just after another.
    """
    targets = {name: target if isinstance(target, Target) else Target(target, path) for name, target in ports.items()}
    for target in targets.values():
        run_wrk(f"http://127.0.0.1:{target.port}{target.path}", 2, target.connections, script=target.script)
    summaries = {name: Summary(name, []) for name in targets}
    for round_number in range(rounds):
        order = list(targets.items())
        if round_number % 2:
            order.reverse()
        for name, target in order:
            url = f"http://127.0.0.1:{target.port}{target.path}"
            summaries[name].rounds.append(run_wrk(url, seconds, target.connections, script=target.script))
        print(f"round {round_number + 1}/{rounds} done", file=sys.stderr)
    return summaries


def paired_ratio(measured: Summary, reference: Summary, value: str = "requests_per_second") -> float:
    """The median over rounds of measured/reference, each pair taken in the same round.

    Runs of one round share the machine's load of the moment, so their ratio
    moves less than the ratio of two medians taken over different moments.
    """
    return statistics.median(
        getattr(mine, value) / getattr(theirs, value) for mine, theirs in zip(measured.rounds, reference.rounds)
    )


def report(summaries: dict[str, Summary], checks: list[tuple[str, float, float, bool]]) -> int:
    """Print the error count and each bar's PASS/FAIL; 1 if any failed.

    Each check is (label, value, bar, at_least): the value must be at least
    the bar, or (at_least False) at most.
    """
    errors = sum(r.errors for summary in summaries.values() for r in summary.rounds)
    failed = errors > 0
    print(f"{'PASS' if not errors else 'FAIL'}: {errors} socket errors or non-2xx responses")
    for label, value, bar, at_least in checks:
        ok = value >= bar if at_least else value <= bar
        failed |= not ok
        print(f"{'PASS' if ok else 'FAIL'}: {label}: {value:.2f}")
    return 1 if failed else 0


def print_table(summaries: list[Summary], reference: Summary, reference_label: str) -> None:
    print(f"{'system':<24} {'req/s med':>10} {'req/s min-max':>21} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} {'vs ' + reference_label:>9}")
    for summary in summaries:
        print(summary.row(reference))
