"""The worker core's benchmark: every performance bar of gwd's core in one run and one table.

    python3 loadtests/core.py [--seconds 10] [--rounds 3] [--workers 2]

Starts, on 127.0.0.1 only, the backend (nginx answering a small JSON body
itself, one worker), nginx as a production reverse proxy in front of it (as
in loadtests/proxy.py), and three gwd daemons with --workers N:

  - bare proxy: one route, no access log, no metrics;
  - full pipeline: a file access log, metrics, a per-client limit on the
    route that never triggers, and 1,000 other routes in the table;
  - cache hits: the route cached (every request after the first is a hit),
    access log on.

Each row is `wrk -t1 -c64` or `-c256` for `--seconds`, after a warm-up,
rounds interleaved.  Every bar is the median over rounds of a ratio taken
within one round.  Prints the table, then PASS/FAIL per bar, and exits
non-zero if any bar fails or any request failed.
"""

from __future__ import annotations

import sys
from contextlib import ExitStack

from harness import (
    STATE,
    Target,
    backend_and_nginx_proxy,
    gwd_proxy_config,
    load_test_parser,
    measure,
    paired_ratio,
    report,
    require_tools,
    running_gwd,
)

OTHER_ROUTES = 1000
NEVER_TRIGGERS = 'client_throttle = { rate = 10000000, burst = 10000000, key = "ip" }\n'


def bare_config(backend_port: int) -> str:
    return f"""
[log]
access = "off"

[metrics]
enabled = false

[[routes]]
route = "GET /hello"
integration = {{ type = "http", uri = "http://127.0.0.1:{backend_port}/hello" }}
"""


def full_pipeline_config(backend_port: int) -> str:
    """Access log to a file, metrics on, a per-client limit, and the measured route last after 1,000 others."""
    lines = [STATE, '[log]\naccess = "{tmp}/access.log"\n\n[metrics]\nenabled = true\n']
    for i in range(OTHER_ROUTES):
        lines.append(f'[[routes]]\nroute = "GET /svc{i}/items/{{id}}"\nintegration = {{ type = "http", uri = "http://127.0.0.1:{backend_port}/hello" }}\n')
    lines.append(f'[[routes]]\nroute = "GET /hello"\nintegration = {{ type = "http", uri = "http://127.0.0.1:{backend_port}/hello" }}\n{NEVER_TRIGGERS}')
    return "\n".join(lines)


def main() -> int:
    parser = load_test_parser(__doc__, seconds=10, rounds=3)
    args = parser.parse_args()
    require_tools("wrk", "nginx")
    with ExitStack() as stack:
        backend_port, nginx_port = stack.enter_context(backend_and_nginx_proxy(args.workers))
        bare = stack.enter_context(running_gwd(bare_config(backend_port), args.workers))
        full = stack.enter_context(running_gwd(full_pipeline_config(backend_port), args.workers))
        cached = stack.enter_context(running_gwd(STATE + gwd_proxy_config(backend_port, 'cache = { ttl = "3600s" }\n'), args.workers))
        targets = {
            "direct backend -c64": Target(backend_port),
            "nginx proxy -c64": Target(nginx_port),
            "nginx proxy -c256": Target(nginx_port, connections=256),
            "gwd bare proxy -c64": Target(bare),
            "gwd bare proxy -c256": Target(bare, connections=256),
            "gwd full pipeline -c64": Target(full),
            "gwd full pipeline -c256": Target(full, connections=256),
            "gwd cache hits -c64": Target(cached),
        }
        summaries = measure(targets, args.seconds, args.rounds)

    s = summaries
    nginx64, nginx256 = s["nginx proxy -c64"], s["nginx proxy -c256"]
    print(f"wrk -t1 -d{args.seconds}s, {args.rounds} interleaved rounds, {args.workers} workers per proxy")
    print(f"{'system':<26} {'req/s med':>10} {'req/s min-max':>21} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} {'vs nginx':>9}")
    for name, summary in s.items():
        reference = nginx256 if name.endswith("-c256") else nginx64
        print(summary.row(reference, 26))

    full64, full256, bare64 = s["gwd full pipeline -c64"], s["gwd full pipeline -c256"], s["gwd bare proxy -c64"]
    checks = [
        ("1. bare proxy >= 0.45x nginx, -c64", paired_ratio(bare64, nginx64), 0.45, True),
        ("2. full pipeline >= 0.40x nginx, -c64", paired_ratio(full64, nginx64), 0.40, True),
        ("2. full pipeline >= 0.36x nginx, -c256", paired_ratio(full256, nginx256), 0.36, True),
        ("2. full pipeline >= 0.90x bare proxy, -c64", paired_ratio(full64, bare64), 0.90, True),
        ("3. full pipeline p99 <= 2.5x nginx p99, -c256", paired_ratio(full256, nginx256, "p99_ms"), 2.5, False),
        ("3. full pipeline -c256 >= 0.9x its -c64", paired_ratio(full256, full64), 0.90, True),
        ("4. cache hits >= 0.8x nginx proxy, -c64", paired_ratio(s["gwd cache hits -c64"], nginx64), 0.80, True),
    ]
    return report(s, checks)


if __name__ == "__main__":
    sys.exit(main())
