"""What metrics cost: the same proxied route with [metrics] on and off, in one run.

    python3 loadtests/metrics.py [--seconds 3] [--rounds 30] [--workers 2]

Starts a backend (nginx answering itself) and two gwd daemons proxying to it
with their access logs on, one with metrics (the default) and one with
``[metrics] enabled = false``, and drives both with the same
``wrk -t1 -c64`` command in interleaved rounds.  Exits non-zero if metrics
cost more than 5% of requests/s (the median, over rounds, of the ratio
within a round), and prints the quartiles of those ratios.  Thirty short
rounds by default: the cost is a couple of percent, single rounds on a
shared 2-core machine differ by 4-10%, and the median of many short pairs
moves far less than that of a few long ones.
"""

from __future__ import annotations

import statistics
import sys
from contextlib import ExitStack

from harness import (
    STATE,
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

OFF = "[metrics]\nenabled = false\n"


def main() -> int:
    parser = load_test_parser(__doc__, seconds=3, rounds=30)
    args = parser.parse_args()
    require_tools("wrk", "nginx")
    backend_port = free_port()
    with ExitStack() as stack:
        stack.enter_context(running_nginx(backend_server(backend_port), 1, [backend_port]))
        ports = {
            "gwd, metrics off": stack.enter_context(running_gwd(OFF + STATE + gwd_proxy_config(backend_port), args.workers)),
            "gwd, metrics on": stack.enter_context(running_gwd(STATE + gwd_proxy_config(backend_port), args.workers)),
        }
        summaries = measure(ports, args.seconds, args.rounds)
    off, on = summaries["gwd, metrics off"], summaries["gwd, metrics on"]
    print_table([off, on], off, "metrics off")
    ratio = paired_ratio(on, off)
    if len(on.rounds) >= 2:
        ratios = [mine.requests_per_second / theirs.requests_per_second for mine, theirs in zip(on.rounds, off.rounds)]
        first, _, third = statistics.quantiles(ratios, n=4)
        print(f"per-round ratios of on to off: quartiles {first:.3f}, {ratio:.3f}, {third:.3f}")
    errors = sum(r.errors for s in summaries.values() for r in s.rounds)
    verdict = "PASS" if ratio >= 0.95 and not errors else "FAIL"
    print(f"{verdict}: metrics on keeps {ratio:.3f}x of metrics-off req/s (cost {(1 - ratio) * 100:.1f}%, bar 5%), {errors} errors")
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
