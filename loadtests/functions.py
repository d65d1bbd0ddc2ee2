"""Function integrations' benchmark: Lambda handlers run by gwd against a mock route with the same body.

    python3 loadtests/functions.py [--seconds 10] [--rounds 3] [--workers 2]

Starts, on 127.0.0.1 only, one gwd with --workers N serving a mock route
and the same 100-byte JSON body from function integrations (payload 2.0):

  - a plain Python handler in the worker (its thread pool);
  - an ``async def`` handler in the worker (on its event loop);
  - the plain handler in runtime processes (runtime = "process"): gwd's
    Python bootstrap, the default, and AWS's awslambdaric as a command,
    two processes per worker each (min_instances = max_instances = 2);
  - a Node.js handler in gwd's bootstrap, two processes per worker.

Each row is ``wrk -t1 -c64`` for ``--seconds`` after a warm-up, rounds
interleaved; each bar is the median over rounds of a ratio taken within
one round.  ``sam local start-api``, the usual local alternative, starts a
Docker container per invocation and cannot run here (no Docker): it is not
measured.  Exits non-zero if a bar fails or any request failed.
"""

from __future__ import annotations

import sys

from harness import ROOT, Target, load_test_parser, measure, paired_ratio, print_table, report, require_tools, running_gwd

CODE = ROOT / "loadtests" / "functions"
AWSLAMBDARIC = f'["{sys.executable}", "-m", "awslambdaric", "bench.handler"]'
BODY = '{"message": "hello from a function", "items": [1, 2, 3], "padding": "' + "x" * 29 + '"}'  # as bench.py's


def config() -> str:
    processes = "runtime = \"process\", min_instances = 2, max_instances = 2"
    return f"""
[log]
access = "off"

[[routes]]
route = "GET /mock"
integration = {{ type = "mock", headers = {{ "Content-Type" = "application/json" }}, body = '{BODY}' }}

[[routes]]
route = "GET /python"
integration = {{ type = "function", handler = "bench:handler", code_dir = "{CODE}" }}

[[routes]]
route = "GET /async"
integration = {{ type = "function", handler = "bench:async_handler", code_dir = "{CODE}" }}

[[routes]]
route = "GET /process"
integration = {{ type = "function", handler = "bench:handler", code_dir = "{CODE}", name = "bench-process", {processes} }}

[[routes]]
route = "GET /awslambdaric"
integration = {{ type = "function", handler = "bench:handler", code_dir = "{CODE}", name = "bench-ric", {processes}, command = {AWSLAMBDARIC} }}

[[routes]]
route = "GET /node"
integration = {{ type = "function", handler = "bench.handler", code_dir = "{CODE}", name = "bench-node", min_instances = 2, max_instances = 2 }}
"""


def main() -> int:
    parser = load_test_parser(__doc__, seconds=10, rounds=3)
    args = parser.parse_args()
    require_tools("wrk", "node")
    with running_gwd(config(), args.workers) as port:
        targets = {
            "gwd mock route": Target(port, "/mock"),
            "gwd python, in worker": Target(port, "/python"),
            "gwd python async, worker": Target(port, "/async"),
            "gwd python process x2": Target(port, "/process"),
            "gwd awslambdaric x2": Target(port, "/awslambdaric"),
            "gwd node bootstrap x2": Target(port, "/node"),
        }
        summaries = measure(targets, args.seconds, args.rounds)
    mock = summaries["gwd mock route"]
    print(f"wrk -t1 -c64 -d{args.seconds}s, {args.rounds} interleaved rounds, {args.workers} workers, 100-byte JSON body")
    print_table(list(summaries.values()), mock, "mock")
    print("sam local start-api: not measured (it runs each invocation in a Docker container; no Docker here)")
    checks = [
        ("python handler in the worker >= 0.8x the mock route", paired_ratio(summaries["gwd python, in worker"], mock), 0.8, True),
        ("async handler in the worker >= 0.8x the mock route", paired_ratio(summaries["gwd python async, worker"], mock), 0.8, True),
        ("python in runtime processes, 2 per worker >= 0.25x the mock route", paired_ratio(summaries["gwd python process x2"], mock), 0.25, True),
    ]
    return report(summaries, checks)


if __name__ == "__main__":
    sys.exit(main())
