"""The proxy benchmark: gwd against the direct backend, nginx and an Express gateway, in one run.

    python3 loadtests/proxy.py [--seconds 10] [--rounds 3] [--workers 2]

Starts, on 127.0.0.1 only:
  - the backend: nginx answering a small JSON body itself (one worker), the
    fastest backend this machine has, so the proxies are what is measured;
  - nginx as a reverse proxy, configured as in production: upstream
    keep-alive, HTTP/1.1 to the backend, its access log on (to a file);
  - gwd with --workers N and its access log on (to a file);
  - the Express gateway (Node cluster + http-proxy-middleware) when `node` is
    installed and `npm install` has been run in loadtests/express;
  - gwd with a 5-route and with a 5,000-route table, for the cost of routing.

Each system gets a warm-up, then the same `wrk -t1 -c64 -d{seconds}s` run per
round, rounds interleaved.  Prints requests/s (median, min-max), p50 and
p99 latency, and ratios to the direct backend and to nginx; then checks the
performance bar, each ratio taken as the median over rounds of the ratio
within a round, and exits non-zero if any part fails.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Iterator

from harness import (
    backend_and_nginx_proxy,
    free_port,
    gwd_proxy_config,
    load_test_parser,
    measure,
    paired_ratio,
    report,
    require_tools,
    running_gwd,
    stop,
    wait_for_port,
)

EXPRESS_DIR = Path(__file__).resolve().parent / "express"


@contextmanager
def running_express(port: int, backend_url: str, workers: int) -> Iterator[None]:
    proc = subprocess.Popen(
        ["node", str(EXPRESS_DIR / "gateway.js"), str(port), backend_url, str(workers)],
        stdout=subprocess.DEVNULL,
        cwd=EXPRESS_DIR,
    )
    try:
        wait_for_port(port, proc, "the Express gateway")
        yield
    finally:
        stop(proc)


def gwd_routing_config(backend_port: int, routes: int) -> str:
    """``routes`` routes of the shapes real APIs have; the measured one is the last in the file."""
    lines = ['[log]\naccess = "{tmp}/access.log"\n']
    for i in range(routes - 1):
        lines.append(f'[[routes]]\nroute = "GET /svc{i}/items/{{id}}"\nintegration = {{ type = "http", uri = "http://127.0.0.1:{backend_port}/hello" }}\n')
    lines.append(f'[[routes]]\nroute = "GET /hello"\nintegration = {{ type = "http", uri = "http://127.0.0.1:{backend_port}/hello" }}\n')
    return "\n".join(lines)


def main() -> int:
    parser = load_test_parser(__doc__, seconds=10, rounds=3)
    args = parser.parse_args()
    require_tools("wrk", "nginx")
    with_express = shutil.which("node") is not None and (EXPRESS_DIR / "node_modules").is_dir()
    if not with_express:
        print("Express gateway skipped: needs `node` and `npm install` in loadtests/express", file=sys.stderr)

    express_port = free_port()
    systems: dict[str, int] = {}
    with ExitStack() as stack:
        backend_port, nginx_port = stack.enter_context(backend_and_nginx_proxy(args.workers))
        systems["direct backend (nginx)"] = backend_port
        systems["nginx proxy"] = nginx_port
        systems["gwd proxy"] = stack.enter_context(running_gwd(gwd_proxy_config(backend_port), args.workers))
        if with_express:
            stack.enter_context(running_express(express_port, f"http://127.0.0.1:{backend_port}", args.workers))
            systems["express gateway"] = express_port
        systems["gwd, 5 routes"] = stack.enter_context(running_gwd(gwd_routing_config(backend_port, 5), args.workers))
        systems["gwd, 5000 routes"] = stack.enter_context(running_gwd(gwd_routing_config(backend_port, 5000), args.workers))
        summaries = measure(systems, args.seconds, args.rounds)

    direct, nginx, gwd = summaries["direct backend (nginx)"], summaries["nginx proxy"], summaries["gwd proxy"]
    header = f"{'system':<24} {'req/s med':>10} {'req/s min-max':>21} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} {'vs direct':>9} {'vs nginx':>9}"
    print(f"wrk -t1 -c64 -d{args.seconds}s, {args.rounds} interleaved rounds, {args.workers} workers per proxy")
    print(header)
    for summary in summaries.values():
        print(summary.row(direct) + f" {summary.median_rps / nginx.median_rps:>8.2f}x")

    # Each bar is judged on the median of within-round ratios (see harness.paired_ratio).
    checks = [
        ("gwd req/s >= 0.35x nginx", paired_ratio(gwd, nginx), 0.35, True),
        ("gwd p99 <= 3x nginx p99", paired_ratio(gwd, nginx, "p99_ms"), 3.0, False),
        ("5000-route table >= 0.95x 5-route table", paired_ratio(summaries["gwd, 5000 routes"], summaries["gwd, 5 routes"]), 0.95, True),
    ]
    if with_express:
        checks.append(("gwd req/s >= 3x Express", paired_ratio(gwd, summaries["express gateway"]), 3.0, True))
    return report(summaries, checks)


if __name__ == "__main__":
    sys.exit(main())
