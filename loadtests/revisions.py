"""Before and after: gwd at a git revision against the working tree, in one run, on the plain proxy route.

    python3 loadtests/revisions.py [--base REV] [--seconds 10] [--rounds 6] [--workers 2] [--bar 0.95]

Checks out ``--base`` (default ``HEAD``) into a scratch git worktree and
starts, on 127.0.0.1 only, nginx answering as the backend, nginx proxying
it, gwd from that worktree and gwd from this tree, each with --workers N
and the same config (``GET /hello`` proxied, access log to a file).  The
rounds are interleaved, every other one in reverse order.  The bar is the
median over rounds of this tree's req/s over the base's, each pair taken
in the same round: a change that should cost the plain route nothing must
keep it at ``--bar`` or above.  The worktree is removed on exit.  Exits
non-zero if the bar fails or any request failed.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import harness
from harness import (
    ROOT,
    backend_and_nginx_proxy,
    gwd_proxy_config,
    load_test_parser,
    measure,
    paired_ratio,
    print_table,
    report,
    require_tools,
)


def main() -> int:
    parser = load_test_parser(__doc__, seconds=10, rounds=6)
    parser.add_argument("--base", default="HEAD", help="the git revision to compare with")
    parser.add_argument("--bar", type=float, default=0.95, help="this tree's req/s over the base's, at least")
    args = parser.parse_args()
    require_tools("wrk", "nginx", "git")
    with tempfile.TemporaryDirectory(prefix="gwd-base-") as scratch:
        base_tree = Path(scratch) / "base"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(base_tree), args.base], check=True)
        try:
            with backend_and_nginx_proxy(args.workers) as (backend_port, nginx_port):
                config = gwd_proxy_config(backend_port)
                with harness.running_gwd(config, args.workers) as now_port:
                    harness.ROOT = base_tree  # `python -m gwd` imports the package of the directory it runs in
                    try:
                        base = harness.running_gwd(config, args.workers)
                        base_port = base.__enter__()
                    finally:
                        harness.ROOT = ROOT
                    try:
                        targets = {"nginx proxy": nginx_port, f"gwd {args.base}": base_port, "gwd this tree": now_port}
                        summaries = measure(targets, args.seconds, args.rounds)
                    finally:
                        base.__exit__(None, None, None)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base_tree)], check=False)
    print(f"wrk -t1 -c64 -d{args.seconds}s, {args.rounds} interleaved rounds, {args.workers} workers, GET /hello proxied")
    print_table(list(summaries.values()), summaries["nginx proxy"], "nginx")
    ratio = paired_ratio(summaries["gwd this tree"], summaries[f"gwd {args.base}"])
    return report(summaries, [(f"this tree >= {args.bar}x gwd at {args.base}", ratio, args.bar, True)])


if __name__ == "__main__":
    sys.exit(main())
