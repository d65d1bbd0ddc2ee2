"""What balancing costs: an upstream of three targets against a route naming one backend.

    python3 loadtests/upstreams.py [--seconds 10] [--rounds 3] [--workers 2]

Starts, on 127.0.0.1 only, one nginx answering on three ports as the
backends and two gwd daemons with --workers N, no access log, no metrics:
one proxying GET /hello to the first backend by its URI, one to an
``[[upstreams]]`` entry holding all three (round robin, outlier ejection
and a retry policy on, as a production upstream has them).  Both get the
same wrk command (``-t1 -c64``), rounds interleaved; the bar is the median
over rounds of the upstream daemon's req/s over the other's, taken within
one round.  Exits non-zero if the bar fails or any request failed.
"""

from __future__ import annotations

import sys
from contextlib import ExitStack

from harness import (
    backend_server,
    free_port,
    load_test_parser,
    measure,
    paired_ratio,
    print_table,
    report,
    require_tools,
    running_gwd,
    running_nginx,
)

PLAIN = "gwd, one backend"
SINGLE = "gwd, upstream of 1"
BALANCED = "gwd, upstream of 3"
QUIET = '[log]\naccess = "off"\n\n[metrics]\nenabled = false\n\n'


def plain_config(port: int) -> str:
    return QUIET + f'[[routes]]\nroute = "GET /hello"\nintegration = {{ type = "http", uri = "http://127.0.0.1:{port}/hello" }}\n'


def balanced_config(ports: list[int]) -> str:
    targets = ", ".join(f'{{ address = "127.0.0.1:{port}" }}' for port in ports)
    return QUIET + (
        f'[[upstreams]]\nname = "backends"\ntargets = [{targets}]\nretries = {{ attempts = 2 }}\n\n'
        '[[routes]]\nroute = "GET /hello"\nintegration = { type = "http", uri = "http://upstream:backends/hello" }\n'
    )


def main() -> int:
    parser = load_test_parser(__doc__, seconds=10, rounds=3)
    args = parser.parse_args()
    require_tools("wrk", "nginx")
    ports = [free_port() for _ in range(3)]
    with ExitStack() as stack:
        stack.enter_context(running_nginx("".join(backend_server(port) for port in ports), 1, ports))
        plain = stack.enter_context(running_gwd(plain_config(ports[0]), args.workers))
        single = stack.enter_context(running_gwd(balanced_config(ports[:1]), args.workers))
        balanced = stack.enter_context(running_gwd(balanced_config(ports), args.workers))
        summaries = measure({PLAIN: plain, SINGLE: single, BALANCED: balanced}, args.seconds, args.rounds)
    reference = summaries[PLAIN]
    print(f"wrk -t1 -c64 -d{args.seconds}s, {args.rounds} interleaved rounds, {args.workers} workers per gwd")
    print_table(list(summaries.values()), reference, "one backend")
    ratio = paired_ratio(summaries[BALANCED], reference)
    return report(summaries, [("upstream of 3 >= 0.97x one backend (balancing costs < 3%)", ratio, 0.97, True)])


if __name__ == "__main__":
    sys.exit(main())
