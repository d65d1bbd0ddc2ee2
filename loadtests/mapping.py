"""REST mapping's benchmark: a route with a request template and a body model against the plain proxy route.

    python3 loadtests/mapping.py [--seconds 10] [--rounds 3] [--workers 2]

Starts, on 127.0.0.1 only, nginx answering as the backend and one gwd with
--workers N proxying POST requests to it on two routes: ``/plain`` (no
templates, validators or mappings) and ``/mapped`` (``request_validator =
"body"`` against a small draft-4 model, and a request template building
the backend's body from three fields).  Both get the same 60-byte JSON
body (``wrk -t1 -c64 -s post.lua``), rounds interleaved; the bar is the
median over rounds of the mapped route's req/s over the plain one's, taken
within one round.  Exits non-zero if the bar fails or any request failed.
"""

from __future__ import annotations

import json
import sys
import tempfile
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

BODY = '{"name": "rex", "age": 3, "tags": ["a", "b"], "owner": "ash"}'
TEMPLATE = '{"pet": "$input.path(\'$.name\')", "age": $input.json(\'$.age\'), "by": "$context.requestId"}'
POST_SCRIPT = f"""
wrk.method = "POST"
wrk.body = '{BODY}'
wrk.headers["Content-Type"] = "application/json"
"""


def config(backend_port: int) -> str:
    template = json.dumps(TEMPLATE)  # a JSON string is a TOML basic string
    return f"""
[log]
access = "off"

[models]
Pet = {{ type = "object", required = ["name", "age"], properties = {{ name = {{ type = "string" }}, age = {{ type = "integer", minimum = 0 }}, tags = {{ type = "array", items = {{ type = "string" }} }} }} }}

[[routes]]
route = "POST /plain"
integration = {{ type = "http", uri = "http://127.0.0.1:{backend_port}/plain" }}

[[routes]]
route = "POST /mapped"
request_validator = "body"
request_model = {{ "application/json" = "Pet" }}
integration = {{ type = "http", uri = "http://127.0.0.1:{backend_port}/mapped", request_templates = {{ "application/json" = {template} }} }}
"""


def main() -> int:
    parser = load_test_parser(__doc__, seconds=10, rounds=3)
    args = parser.parse_args()
    require_tools("wrk", "nginx")
    with tempfile.TemporaryDirectory() as scratch, backend_and_nginx_proxy(args.workers) as (backend_port, _):
        script = Path(scratch) / "post.lua"
        script.write_text(POST_SCRIPT)
        with running_gwd(config(backend_port), args.workers) as port:
            targets = {
                "gwd plain proxy route": Target(port, "/plain", script=str(script)),
                "gwd template + model": Target(port, "/mapped", script=str(script)),
            }
            summaries = measure(targets, args.seconds, args.rounds)
    plain = summaries["gwd plain proxy route"]
    print(f"wrk -t1 -c64 -d{args.seconds}s, POST {len(BODY)}-byte JSON, {args.rounds} interleaved rounds, {args.workers} workers")
    print_table(list(summaries.values()), plain, "plain")
    checks = [
        ("template + model route >= 0.7x the plain proxy route", paired_ratio(summaries["gwd template + model"], plain), 0.7, True),
    ]
    return report(summaries, checks)


if __name__ == "__main__":
    sys.exit(main())
