"""What the response cache buys: a cached route against the same route uncached, and nginx.

    python3 loadtests/cache.py [--seconds 5] [--rounds 5] [--workers 2]

Starts a backend (nginx answering itself, one worker), nginx as a reverse
proxy in front of it (as in loadtests/proxy.py), and two gwd daemons
proxying to it with their access log on: one caching the route (every
request after the first is a hit), one not.  Drives all three with the same
`wrk -t1 -c64` command in interleaved rounds and prints the table.  Each bar
is the median, over rounds, of the ratio within a round.  Exits non-zero if
the cached route serves less than 2x the uncached one's requests/s or less
than 0.6x nginx's.
"""

from __future__ import annotations

import sys
from contextlib import ExitStack

from harness import (
    STATE,
    backend_and_nginx_proxy,
    gwd_proxy_config,
    load_test_parser,
    measure,
    paired_ratio,
    print_table,
    report,
    require_tools,
    running_gwd,
)

CACHED = 'cache = { ttl = "3600s" }\n'


def main() -> int:
    parser = load_test_parser(__doc__, seconds=5, rounds=5)
    args = parser.parse_args()
    require_tools("wrk", "nginx")
    with ExitStack() as stack:
        backend_port, nginx_port = stack.enter_context(backend_and_nginx_proxy(args.workers))
        ports = {
            "nginx proxy": nginx_port,
            "gwd, uncached": stack.enter_context(running_gwd(STATE + gwd_proxy_config(backend_port), args.workers)),
            "gwd, cache hits": stack.enter_context(running_gwd(STATE + gwd_proxy_config(backend_port, CACHED), args.workers)),
        }
        summaries = measure(ports, args.seconds, args.rounds)
    nginx, uncached, cached = summaries["nginx proxy"], summaries["gwd, uncached"], summaries["gwd, cache hits"]
    print_table([nginx, uncached, cached], uncached, "uncached")
    checks = [
        ("cache hits >= 2x the uncached route", paired_ratio(cached, uncached), 2.0, True),
        ("cache hits >= 0.6x nginx proxy", paired_ratio(cached, nginx), 0.6, True),
    ]
    return report(summaries, checks)


if __name__ == "__main__":
    sys.exit(main())
