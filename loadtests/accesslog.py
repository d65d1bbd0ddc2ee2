"""What the access log costs: gwd with the log off, to a file, and to stdout, in one run.

    python3 loadtests/accesslog.py [--seconds 5] [--rounds 3] [--workers 2]

Each round drives every variant in turn with the same wrk command (rounds
interleave, so drift on a noisy machine hits all variants alike) and prints
requests/s and latency with each variant's ratio to the log-off run.  Exits
non-zero if logging to a file keeps less than ``--min-ratio`` of the log-off
throughput (the median, over rounds, of the ratio within a round).
"""

from __future__ import annotations

import sys
from contextlib import ExitStack

from harness import load_test_parser, measure, paired_ratio, print_table, require_tools, running_gwd

ROUTE = """
[[routes]]
route = "GET /hello"
integration = { type = "mock", body = '{"message": "Hello from gwd"}' }
"""

VARIANTS = {
    "gwd, access log off": '[log]\naccess = "off"\n',
    "gwd, access log to a file": '[log]\naccess = "{tmp}/access.log"\n',
    "gwd, access log to stdout": '[log]\naccess = "stdout"\n',
}


def main() -> int:
    parser = load_test_parser(__doc__, seconds=5, rounds=3)
    parser.add_argument("--min-ratio", type=float, default=0.70, help="file-log throughput / log-off throughput bar")
    args = parser.parse_args()
    require_tools("wrk")
    with ExitStack() as stack:
        ports = {name: stack.enter_context(running_gwd(log + ROUTE, args.workers)) for name, log in VARIANTS.items()}
        summaries = measure(ports, args.seconds, args.rounds)
    reference = summaries["gwd, access log off"]
    print_table(list(summaries.values()), reference, "log off")
    ratio = paired_ratio(summaries["gwd, access log to a file"], reference)
    errors = sum(r.errors for s in summaries.values() for r in s.rounds)
    verdict = "PASS" if ratio >= args.min_ratio and not errors else "FAIL"
    print(f"{verdict}: file logging keeps {ratio:.2f}x of log-off throughput (bar {args.min_ratio:.2f}x), {errors} errors")
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
