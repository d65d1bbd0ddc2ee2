"""What throttling costs: gwd proxying with and without a per-client limit that never triggers.

    python3 loadtests/throttle.py [--seconds 5] [--rounds 5] [--workers 2]

Starts a backend (nginx answering itself, one worker) and three gwd
daemons proxying to it: one with a per-client limit (`client_throttle`,
keyed by client IP) set far above the offered load, one without, and, for
information, one whose limit has a burst of 100 (small enough that every
request checks the shared table; larger bursts are taken a lease of tokens
at a time, see gwd/stores/limiters.py).  Drives all three with the same
wrk command in interleaved rounds and prints the table.  The cost is one
minus the median, over rounds, of on/off requests/s within a round.  Exits
non-zero if throttling costs more than 10% of the requests/s.
"""

from __future__ import annotations

import sys
from contextlib import ExitStack

from harness import (
    backend_server,
    free_port,
    gwd_proxy_config,
    load_test_parser,
    measure,
    paired_ratio,
    print_table,
    require_tools,
    running_gwd,
    running_nginx,
)

LIMIT = "client_throttle = { rate = 1000000, burst = 1000000 }\n"
# A burst under 2 x LEASE_SHARE: checked in the shared table on every request.
EXACT_LIMIT = "client_throttle = { rate = 1000000, burst = 100 }\n"


def main() -> int:
    parser = load_test_parser(__doc__, seconds=5, rounds=5)
    parser.add_argument("--max-cost", type=float, default=0.10, help="largest acceptable loss of req/s")
    args = parser.parse_args()
    require_tools("wrk", "nginx")
    backend_port = free_port()
    with ExitStack() as stack:
        stack.enter_context(running_nginx(backend_server(backend_port), 1, [backend_port]))
        ports = {
            "gwd, throttling off": stack.enter_context(running_gwd(gwd_proxy_config(backend_port), args.workers)),
            "gwd, throttling on": stack.enter_context(running_gwd(gwd_proxy_config(backend_port, LIMIT), args.workers)),
            "gwd, on, burst 100": stack.enter_context(running_gwd(gwd_proxy_config(backend_port, EXACT_LIMIT), args.workers)),
        }
        summaries = measure(ports, args.seconds, args.rounds)
    off, on, exact = summaries["gwd, throttling off"], summaries["gwd, throttling on"], summaries["gwd, on, burst 100"]
    print_table([off, on, exact], off, "off")
    cost = 1 - paired_ratio(on, off)
    errors = sum(r.errors for s in summaries.values() for r in s.rounds)
    ok = cost <= args.max_cost and not errors
    print(f"{'PASS' if ok else 'FAIL'}: throttling costs {cost:.1%} of req/s (bar {args.max_cost:.0%}), {errors} errors")
    print(f"INFO: with a burst of 100 (no leases, the shared table on every request) it costs {1 - paired_ratio(exact, off):.1%}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
