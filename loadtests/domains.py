"""What custom domain names cost: Host and base-path matching with 100 domains against none.

    python3 loadtests/domains.py [--seconds 10] [--rounds 3] [--workers 2]

Starts, on 127.0.0.1 only, nginx answering as the backend and two gwd
daemons with --workers N proxying GET /hello to it, no access log, no
metrics: one without domains (requests for ``/hello``), one with 100
``[[domains]]`` of two base paths each (``v1`` and ``""``), driven with
``Host: api50.example.com`` on ``/v1/hello``.  Both get the same wrk
command (``-t1 -c64``, a Lua script setting the Host header), rounds
interleaved; the bar is the median over rounds of the domains daemon's
req/s over the other's, taken within one round.  Exits non-zero if the bar
fails or any request failed.
"""

from __future__ import annotations

import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

from harness import (
    Target,
    backend_and_nginx_proxy,
    load_test_parser,
    measure,
    paired_ratio,
    print_table,
    report,
    require_tools,
    running_gwd,
)

DOMAINS = 100
HOST_SCRIPT = 'wrk.headers["Host"] = "%s"\n'


def config(backend_port: int, domains: int) -> str:
    lines = ['[log]\naccess = "off"\n\n[metrics]\nenabled = false\n']
    for n in range(domains):
        lines.append(
            f'[[domains]]\nname = "api{n}.example.com"\n'
            'mappings = [{ base_path = "v1", stage = "$default" }, { base_path = "", stage = "$default" }]\n'
        )
    lines.append(f'[[routes]]\nroute = "GET /hello"\nintegration = {{ type = "http", uri = "http://127.0.0.1:{backend_port}/hello" }}\n')
    return "\n".join(lines)


def main() -> int:
    parser = load_test_parser(__doc__, seconds=10, rounds=3)
    args = parser.parse_args()
    require_tools("wrk", "nginx")
    with tempfile.TemporaryDirectory() as scratch, ExitStack() as stack:
        backend_port, _ = stack.enter_context(backend_and_nginx_proxy(args.workers))
        mapped_host = Path(scratch) / "mapped.lua"
        mapped_host.write_text(HOST_SCRIPT % f"api{DOMAINS // 2}.example.com")
        plain_host = Path(scratch) / "plain.lua"
        plain_host.write_text(HOST_SCRIPT % "127.0.0.1")
        plain = stack.enter_context(running_gwd(config(backend_port, 0), args.workers))
        mapped = stack.enter_context(running_gwd(config(backend_port, DOMAINS), args.workers))
        targets = {
            "gwd, no domains": Target(plain, "/hello", script=str(plain_host)),
            f"gwd, {DOMAINS} domains": Target(mapped, "/v1/hello", script=str(mapped_host)),
        }
        summaries = measure(targets, args.seconds, args.rounds)
    reference = summaries["gwd, no domains"]
    print(f"wrk -t1 -c64 -d{args.seconds}s, {args.rounds} interleaved rounds, {args.workers} workers per gwd")
    print_table(list(summaries.values()), reference, "none")
    ratio = paired_ratio(summaries[f"gwd, {DOMAINS} domains"], reference)
    return report(summaries, [(f"{DOMAINS} domains >= 0.97x no domains (Host and base path cost < 3%)", ratio, 0.97, True)])


if __name__ == "__main__":
    sys.exit(main())
