"""Config keys declared once: their type, default, range and meaning.

The daemon-wide tables (``[server]``, ``[log]``, ``[throttle]``,
``[cache]``, ``[admin]``, ``[metrics]``) and the tables of listeners,
stages, routes, integrations, backend TLS, cache policies, authorizers and
usage plans.  The reader (:mod:`gwd.config.reader`) takes defaults and
ranges from here, so ``gwd check`` reports against them, and the README's
reference tables are :func:`reference_table`'s output (a test compares
them).  ``custom`` keys need checks of their own in the reader; their
default and meaning still live here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gwd.config.model import Address


@dataclass(frozen=True, slots=True)
class Key:
    table: str
    name: str
    kind: str  # integer, duration, size, boolean, string, address, networks, or custom
    default: Any
    low: float | None = None
    high: float | None = None
    shown: str | None = None  # the default as the README shows it, where it is not the default's own spelling
    label: str | None = None  # the README's key cell, where one row describes several keys
    meaning: str = ""

    def is_default(self, value: Any) -> bool:
        """Whether ``value`` (lists where the default is a tuple, as JSON and TOML give them) is the default."""
        default = self.default
        return value == (list(default) if isinstance(default, tuple) and isinstance(value, list) else default)

    def shown_default(self) -> str:
        """The default as a config would spell it."""
        if self.shown is not None:
            return self.shown
        value = self.default
        if self.kind == "boolean":
            return f"`{str(value).lower()}`"
        if self.kind == "integer":
            return f"`{value}`"
        if self.kind == "duration":
            return f'`"{value:g}s"`'
        if self.kind == "size":
            for unit, size in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
                if value % size == 0:
                    return f'`"{value // size}{unit}"`'
            return f'`"{value}B"`'
        return f'`"{value}"`'  # strings and addresses


COMPRESSION_ENCODINGS = ("br", "gzip")
COMPRESSED_TYPES = (
    "text/*", "application/json", "application/javascript", "application/xml", "image/svg+xml", "application/*+json",
    "application/*+xml",
)

KEYS: tuple[Key, ...] = (
    Key("server", "listen", "address", Address("127.0.0.1", 8080),
        meaning=(
            '`HOST:PORT` or `[IPV6]:PORT` to listen on.'
        ),
    ),
    Key("server", "workers", "integer", 0, low=0, high=1024,
        meaning=(
            'Worker processes; `0` means one per CPU this process may use.'
        ),
    ),
    Key("server", "drain_timeout", "duration", 30.0, low=0.0, high=3600.0,
        meaning=(
            'On SIGTERM and for workers retired by a reload: how long in-flight requests may take to finish.'
        ),
    ),
    Key("server", "keepalive_timeout", "duration", 75.0, low=0.0, high=3600.0,
        meaning=(
            'Idle client connections are closed after this.'
        ),
    ),
    Key("server", "backlog", "integer", 2048, low=1, high=65535,
        meaning=(
            "Length of the listening socket's accept queue (capped by the kernel's `net.core.somaxconn`)."
        ),
    ),
    Key("server", "reuse_port", "boolean", True,
        meaning=(
            'Each worker accepts on listening sockets of its own (`SO_REUSEPORT`), and the kernel spreads new '
            'connections evenly over them; `false`: the workers share one socket per address and race for '
            'each connection. Changes only with a restart.'
        ),
    ),
    Key("server", "trusted_proxies", "networks", (), shown='`[]`',
        meaning=(
            'CIDRs (`"10.0.0.0/8"`, `"::1/128"`) of load balancers in front of gwd. Their `X-Forwarded-For` '
            'is extended and their `X-Forwarded-Proto` kept; from any other client both are replaced.'
        ),
    ),
    Key("server", "upstream_keepalive", "integer", 64, low=0, high=65535,
        meaning=(
            'Idle keep-alive connections each worker keeps per backend (`0`: none). Connections a burst '
            'opened beyond this stay while traffic reuses them and close after 1 s idle, so concurrency above '
            'it does not open and close a connection per request; the rest close after 60 s idle.'
        ),
    ),
    Key("server", "max_connections", "integer", 0, low=0, high=1000000,
        meaning=(
            'Client connections one worker holds at once; `0`: as many as its open-files limit allows, '
            '`(limit - 64) / 2` (each client may need a backend connection too). gwd raises its soft '
            "open-files limit to the hard one at start (systemd's `LimitNOFILE=`, `ulimit -Hn`). Past the "
            'limit a new connection is answered `503 {"message":"Service Unavailable"}` with `Retry-After: 1`'
            ' and closed, never closed without an answer; the worker logs it once each time it fills up '
            '(again after falling 10% below). A backend connection that cannot be made for want of '
            'descriptors is a `503` too (`integrationError: "descriptors"`).'
        ),
    ),
    Key("server", "state_dir", "custom", None,
        shown="`$STATE_DIRECTORY` (systemd), else `/var/lib/gwd` for root, else `~/.local/state/gwd`",
        meaning=(
            'Where gwd keeps its database (`keys.db`: API keys, hashed, and quota counts). Created 0700 when '
            'needed.'
        ),
    ),
    Key("server", "tls", "custom", None, shown='none',
        meaning=(
            'HTTPS on the listener (below).'
        ),
    ),
    Key("server", "user", "custom", None, shown='none',
        meaning=(
            'Started as root (without systemd, which starts gwd as its user itself): bind the sockets, give '
            'the state directory, the metrics directory and the access-log file to this user, then become it '
            "(and its primary group) before any worker starts. The access log's directory must be writable by"
            ' it for SIGUSR1 reopening after rotation. Read at start.'
        ),
    ),
    Key("server", "max_body", "size", 10 * 1024**2,
        meaning=(
            'The largest request body forwarded to a backend (see Request limits).'
        ),
    ),
    Key("server", "function_threads", "integer", 32, low=1, high=1024,
        meaning=(
            'Threads per worker that run plain (not `async def`) Python function handlers: more invocations '
            'at once than this wait for a thread (their `timeout` counts the wait).'
        ),
    ),
    Key("server", "apis", "custom", (), shown='`[]`',
        meaning=(
            'Files of more APIs, one API each: paths or globs (`"/etc/gwd/apis/*.toml"`), relative to this '
            "file's directory. Each may hold `name`, `[[stages]]`, `[[routes]]`, `[[authorizers]]`, "
            "`[[usage_plans]]`, `[models]`, `[gateway_responses]`, `binary_media_types`, `cors` and "
            "`compression`, as this file may for its own API. A glob that matches no file is an error."
        ),
    ),
    Key("server", "header_timeout", "duration", 10.0, low=0.1, high=3600.0,
        meaning=(
            'A new connection must send its first complete request head within this.'
        ),
    ),
    Key("server", "body_timeout", "duration", 30.0, low=0.1, high=3600.0,
        meaning=(
            'The longest pause allowed while a request body is forwarded.'
        ),
    ),
    Key("server", "worker_timeout", "custom", 30.0, low=0.0, high=3600.0, shown='`"30s"`',
        meaning=(
            'A worker that sends no heartbeat this long (its event loop is stuck) is killed and replaced; `0`'
            ' (or `"0s"`) never. At least 1 s. A starting worker has 60 s.'
        ),
    ),
    Key("log", "access", "string", "stdout",
        meaning=(
            'Where access-log lines go: `"stdout"` (journald under systemd), `"off"`, or an absolute file '
            'path (its directory must exist; reopened on SIGUSR1).'
        ),
    ),
    Key("log", "level", "string", "info",
        meaning=(
            "The daemon's own log on stderr: `debug`, `info`, `warning` or `error`."
        ),
    ),
    Key("throttle", "table_size", "integer", 65536, low=64, high=16777216,
        meaning=(
            'Token buckets kept in shared memory (24 bytes each), shared by all workers. When more keys are '
            'active, the least recently used buckets are evicted (a returning client starts with a full '
            'bucket). Read at start-up; a reload does not resize it.'
        ),
    ),
    Key("throttle", "backend", "string", "memory",
        meaning=(
            'Where buckets live: `"memory"` (this daemon\'s shared memory) or a Redis URL '
            '(`"redis://127.0.0.1:6379/0"`, `rediss://`, `unix://`), which makes each limit one limit across '
            'every daemon using that Redis.'
        ),
    ),
    Key("throttle", "fail_open", "boolean", True,
        meaning=(
            'With a Redis backend that cannot be reached: `true` serves without limits (and logs it), `false`'
            ' answers `503 {"message":"Service Unavailable"}`. Redis is tried again every second; the daemon '
            'keeps running and logs when Redis answers again.'
        ),
    ),
    Key("cache", "backend", "string", "memory",
        meaning=(
            'Where cached responses live: `"memory"` (each worker its own, bounded by `max_bytes`) or a Redis'
            ' URL (`"redis://127.0.0.1:6379/1"`), shared by every worker of every daemon using it, bounded by'
            " that Redis's own `maxmemory` policy."
        ),
    ),
    Key("cache", "max_bytes", "size", 64 * 1024**2,
        meaning=(
            'The memory cache\'s size in each worker (`"512MiB"`, `"2GiB"`; at least `"1MiB"`). Past it, the '
            'least recently used responses are evicted; a response larger than an eighth of it is not stored.'
        ),
    ),
    Key("admin", "listen", "custom", Address("127.0.0.1", 9180), shown='`"127.0.0.1:9180"`',
        meaning=(
            'Where the supervisor answers `GET /metrics`, `/healthz`, `/readyz` and `/upstreams`; `"off"` for none. Keep it'
            ' on loopback or a management network. Read at start (a reload does not move it).'
        ),
    ),
    Key("metrics", "enabled", "boolean", True,
        meaning=(
            'Count requests for `/metrics`. Read at start.'
        ),
    ),
    Key("metrics", "server_timing", "boolean", False,
        meaning=(
            "Add `Server-Timing: total;dur=MS, integration;dur=MS` to responses: gwd's whole time and the "
            "backend's part (for browsers' developer tools)."
        ),
    ),
    Key("metrics", "per_key", "boolean", False,
        meaning=(
            'Also count requests per API key id (`gwd_api_key_requests_total{key_id}`): a series per key, so '
            'off by default.'
        ),
    ),
    Key("listener_tls", "cert", "custom", None, label='`cert`, `key`', shown='(required)',
        meaning=(
            'The server certificate (PEM, chain allowed) and its private key, readable by its owner only (see'
            ' TLS and mTLS to backends for the checks; `gwd certs issue DIR --name server --san HOST` makes '
            'one).'
        ),
    ),
    Key("listener_tls", "client_ca", "custom", None, shown='none',
        meaning=(
            'PEM file of the CAs that sign client certificates; required unless `client_auth` is `"none"`.'
        ),
    ),
    Key("listener_tls", "client_auth", "string", "none",
        meaning=(
            '`"none"`: no client certificates; `"optional"`: a client may present one, and it must verify; '
            '`"require"`: the handshake fails without a verified one.'
        ),
    ),
    Key("stage", "name", "custom", None, shown='(required)',
        meaning=(
            'Letters, digits, `-`, `_`. Requests to `/NAME/...` are served by this stage with `/NAME` removed'
            ' before route matching. A stage named `"$default"` is served with no prefix.'
        ),
    ),
    Key("stage", "variables", "custom", {}, shown='`{}`',
        meaning=(
            'Stage variables (strings), used as `${stageVariables.NAME}` in integrations.'
        ),
    ),
    Key("stage", "throttle", "custom", None, shown='none',
        meaning=(
            '`{ rate = R, burst = B }`: the default limit of each route of the stage, all clients together '
            '(see Throttling).'
        ),
    ),
    Key("stage", "client_throttle", "custom", None, shown='none',
        meaning=(
            '`{ rate = R, burst = B, key = "ip" }`: the default limit of each client on each route of the '
            'stage.'
        ),
    ),
    Key("stage", "cache", "custom", None, shown='none',
        meaning=(
            'The default response cache policy of each route of the stage (see Response cache).'
        ),
    ),
    Key("stage", "backend_tls", "custom", None, shown='none',
        meaning=(
            "The default `tls` of the stage's `https://` integrations (see TLS and mTLS to backends)."
        ),
    ),
    Key("stage", "allow", "custom", (), label='`allow`, `deny`', shown='`[]`',
        meaning=(
            "The stage's resource policy (see Resource policies)."
        ),
    ),
    Key("stage", "listen", "custom", (), shown='`[]`',
        meaning=(
            'A private stage: `["10.0.0.5:8080"]` serves this stage only on these addresses (still under its '
            '`/NAME` prefix, or none for `$default`), and they serve nothing else; `server.listen` then does '
            'not serve it. Private stages may share addresses; `server.listen` cannot be one. A reload may '
            'add, move or drop them: addresses both configs use stay open.'
        ),
    ),
    Key("mock", "type", "custom", None, shown='(required)',
        meaning=(
            '`"mock"`.'
        ),
    ),
    Key("mock", "status", "integer", 200, low=100, high=599,
        meaning=(
            'Response status, 100-599.'
        ),
    ),
    Key("mock", "headers", "custom", {}, shown='`{}`',
        meaning=(
            'Response headers; `content-type` defaults to `application/json`.'
        ),
    ),
    Key("mock", "body", "string", "",
        meaning=(
            "Response body. `{name}` is replaced by the route's path parameter of that name (for `{proxy+}`, "
            "write `{proxy}`), and `${stageVariables.NAME}` by the stage's variable (every stage must define "
            "it). Other braces, such as JSON's, are left alone."
        ),
    ),
    Key("mock", "delay", "duration", 0.0, low=0.0, high=300.0,
        meaning=(
            'Wait this long before answering: a simulated slow backend (at most `"300s"`).'
        ),
    ),
    Key("http", "type", "custom", None, shown='(required)',
        meaning=(
            '`"http"`.'
        ),
    ),
    Key("http", "uri", "custom", None, shown='(required)',
        meaning=(
            'The backend URL, `http://` or `https://` (certificates verified), as a template: `{name}` is the'
            " route's path parameter (percent-encoded again; `{proxy}` for a `{proxy+}` route keeps its "
            "slashes), `${stageVariables.NAME}` the stage's variable (every stage must define it; the URL is "
            "validated for each stage at load). The client's query string is appended to the URI's own."
        ),
    ),
    Key("http", "method", "custom", None, shown="the client's",
        meaning=(
            'Send this method instead.'
        ),
    ),
    Key("http", "timeout", "duration", 29.0, low=0.05, high=3600.0,
        meaning=(
            'How long the backend may take to start its response, and the longest pause between two pieces of'
            ' its body. Past it: `504 {"message":"Endpoint request timed out"}`. Checked every 100 ms.'
        ),
    ),
    Key("http", "connect_timeout", "duration", 5.0, low=0.05, high=600.0,
        meaning=(
            'How long connecting to the backend may take (then `504`).'
        ),
    ),
    Key("http", "preserve_host", "boolean", False,
        meaning=(
            "Send the client's `Host` instead of the backend's."
        ),
    ),
    Key("http", "tls", "custom", None, shown="the stage's `backend_tls`",
        meaning=(
            'How to speak TLS to an `https://` backend (below).'
        ),
    ),
    Key("http", "request_parameters", "custom", {}, shown='`{}`',
        meaning=(
            'Parameter mapping for the backend request (see Parameter mapping): `{ "append:header.X-User" = '
            '"$context.authorizer.claims.sub", "overwrite:path" = "/v2/$request.path.id", '
            '"remove:header.cookie" = "" }`, or REST\'s `"integration.request.header.X-User" = '
            '"context.authorizer.claims.sub"`.'
        ),
    ),
    Key("http", "response_parameters", "custom", {}, shown='`{}`',
        meaning=(
            'Parameter mapping for the response: `append:`, `overwrite:` or `remove:` `header.NAME`, and '
            '`overwrite:statuscode`.'
        ),
    ),
    Key("function", "type", "custom", None, shown='(required)',
        meaning=(
            '`"function"`.'
        ),
    ),
    Key("function", "handler", "custom", None, shown='(required)',
        meaning=(
            'The handler: `"todos.get:handler"` (module, then function) or AWS\'s `"todos/get.handler"`; the '
            'module is a `.py` file (or package) under `code_dir`. `gwd check` finds the file, compiles it and '
            'looks for the function without running it: a missing module, a missing function or a syntax error '
            'is reported with its file and line.'
        ),
    ),
    Key("function", "payload_format", "custom", "2.0",
        meaning=(
            'The event the handler gets and the answer it gives: `"2.0"` (HTTP API) or `"1.0"` (REST API, '
            'proxy integration). See Function integrations.'
        ),
    ),
    Key("function", "name", "custom", None, shown='the handler, with `.`, `/` and `:` as `-`',
        meaning=(
            "The function's name (`[A-Za-z0-9_-]`, at most 64): in its context, its ARN, metrics and the log. "
            'Routes naming the same function share its concurrency and must configure it alike.'
        ),
    ),
    Key("function", "code_dir", "custom", None, shown="the config file's directory",
        meaning=(
            "Where the handler's module lives (put first on the workers' `sys.path`)."
        ),
    ),
    Key("function", "timeout", "duration", 29.0, low=0.05, high=900.0,
        meaning=(
            'How long an invocation may take; past it the client gets `504 {"message":"Endpoint request timed '
            'out"}` (`integrationError: "timeout"`). An `async def` handler is cancelled then; a plain one '
            'cannot be stopped, and holds its concurrency slot until it returns.'
        ),
    ),
    Key("function", "memory_mb", "integer", 128, low=128, high=10240,
        meaning=(
            "What the handler's `context.memory_limit_in_mb` and `AWS_LAMBDA_FUNCTION_MEMORY_SIZE` say (not "
            'enforced).'
        ),
    ),
    Key("function", "concurrency", "integer", 1000, low=1, high=100000,
        meaning=(
            'The most invocations of the function at once in the daemon (all workers together, kept in shared '
            'memory); one more gets `429 {"message":"Too Many Requests"}` at once.'
        ),
    ),
    Key("function", "runtime", "custom", None, shown='`"python"` for a `.py` handler, `"process"` for a `.js`, `.mjs` or `.cjs` one',
        meaning=(
            '`"python"`: the handler runs inside each worker. `"process"`: it runs in runtime processes '
            '(below) that speak the AWS Lambda Runtime API, which gwd serves to each of them on 127.0.0.1.'
        ),
    ),
    Key("function", "command", "custom", None, shown="by the handler's file",
        meaning=(
            "A runtime process's command (a list: program, then arguments), run in `code_dir` with the "
            "function's environment, `_HANDLER` and `AWS_LAMBDA_RUNTIME_API`. By default gwd's own bootstraps: "
            "for a `.py` handler its Python runtime (with gwd's interpreter), for a `.js`, `.mjs` or `.cjs` one its "
            "Node.js runtime (with the system's `node`). AWS's own Python client is `[\"python3\", \"-m\", "
            '\"awslambdaric\", \"MODULE.FUNCTION\"]` (`pip install awslambdaric`). Any custom runtime works; with a '
            '`command` the handler need not be a file gwd can find.'
        ),
    ),
    Key("function", "min_instances", "integer", 0, low=0, high=64,
        meaning=(
            'Runtime processes each worker keeps running, started with the worker.'
        ),
    ),
    Key("function", "max_instances", "integer", 2, low=1, high=256,
        meaning=(
            'Runtime processes each worker runs at most; more invocations at once wait (their `timeout` '
            'counting) for one to be free. Each process started is a cold start.'
        ),
    ),
    Key("function", "idle_timeout", "duration", 600.0, low=1.0, high=86400.0,
        meaning=(
            'A runtime process beyond `min_instances` that has had no invocation this long is stopped.'
        ),
    ),
    Key("function", "environment", "custom", {}, shown='`{}`',
        meaning=(
            "Environment variables the handler sees in `os.environ` (over the daemon's own) while it runs and "
            'while its module is imported; values may use `${stageVariables.NAME}`.'
        ),
    ),
    Key("aws", "type", "custom", None, shown='(required)',
        meaning=(
            '`"aws"`.'
        ),
    ),
    Key("aws", "service", "custom", None, shown='(required)',
        meaning=(
            "The service as botocore names it (`\"dynamodb\"`, `\"sqs\"`, `\"sns\"`, `\"kinesis\"`, `\"s3\"`, ...). "
            "Its protocol comes from botocore's model: JSON services get `X-Amz-Target` and "
            '`Content-Type: application/x-amz-json-1.0` (or 1.1), query services a form body with `Action` and '
            '`Version`, REST services (S3) a path and method.'
        ),
    ),
    Key("aws", "action", "custom", None, shown='(required for JSON and query services)',
        meaning=(
            'The operation (`"PutItem"`, `"Query"`): checked against the service\'s model at load. The '
            "request template's output is its input."
        ),
    ),
    Key("aws", "path", "custom", None, shown='(required for REST services)',
        meaning=(
            'A REST service\'s request path, with the route\'s `{param}` slots: `"/my-bucket/{key}"` for S3.'
        ),
    ),
    Key("aws", "method", "custom", "GET",
        meaning=(
            "The HTTP method for `path` (actions are always `POST`)."
        ),
    ),
    Key("aws", "region", "custom", None, shown='`AWS_REGION`, else `"us-east-1"`',
        meaning=(
            'The region in the signature (and in the default endpoint).'
        ),
    ),
    Key("aws", "endpoint", "custom", None, shown="the service's AWS endpoint for the region",
        meaning=(
            '`scheme://host[:port]`: a local emulator, DynamoDB Local, ScyllaDB Alternator, MinIO, or any '
            'compatible service.'
        ),
    ),
    Key("aws", "credentials", "custom", "env",
        meaning=(
            '`"env"` (the daemon\'s `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`), '
            '`"profile:NAME"` (the shared credentials and config files), or `{ access_key_id_env = "...", '
            'secret_access_key_env = "...", session_token_env = "..." }` (the names of variables holding them). '
            "Checked at load; signed with botocore's Signature Version 4 signer. Keys never reach the log."
        ),
    ),
    Key("aws", "timeout", "duration", 29.0, low=0.05, high=3600.0,
        meaning=(
            'How long the service may take to answer (then `504`).'
        ),
    ),
    Key("aws", "connect_timeout", "duration", 5.0, low=0.05, high=600.0,
        meaning=(
            'How long connecting to the endpoint may take (then `504`).'
        ),
    ),
    Key("aws", "tls", "custom", None, shown='none',
        meaning=(
            'Backend TLS for an https endpoint, as `http`\'s.'
        ),
    ),
    Key("mapping", "request_templates", "custom", {}, shown='`{}`',
        meaning=(
            'VTL templates by the request\'s media type (`{ "application/json" = "..." }`, or `"@file.vtl"` '
            "relative to the config): the output is the integration's request body (a function's event). A "
            'request with no `Content-Type` counts as `application/json`.'
        ),
    ),
    Key("mapping", "passthrough_behavior", "custom", "when_no_match",
        meaning=(
            'A request whose media type has no template: `"when_no_match"` passes its body through, '
            '`"when_no_templates"` passes it only when no template is configured at all, `"never"` refuses it; '
            'refused is `415 {"message":"Unsupported Media Type"}`.'
        ),
    ),
    Key("mapping", "response_templates", "custom", {}, shown='`{}`',
        meaning=(
            "VTL templates for the integration's answer, by media type: the default integration response's "
            "templates. The one named by the client's `Accept` is used, else the first; it sets `Content-Type`."
        ),
    ),
    Key("mapping", "content_handling", "custom", None, shown="the body as it is",
        meaning=(
            "The request body before its template: `\"convert_to_text\"` base64-encodes a body of one of the "
            "API's `binary_media_types`, `\"convert_to_binary\"` decodes a base64 body to bytes (not base64: `400`)."
        ),
    ),
    Key("mapping", "responses", "custom", (), shown='`[]`',
        meaning=(
            'Integration responses, tried in order (below); an entry without `selection_pattern` is the '
            'default.'
        ),
    ),
    Key("integration_response", "selection_pattern", "custom", None, shown='none (the default entry)',
        meaning=(
            "A regular expression the whole status of an `http`, `aws` or `mock` answer (`\"4\\\\d{2}\"`), or "
            "a function error's `errorMessage` (`\"NotFound.*\"`), must match."
        ),
    ),
    Key("integration_response", "status", "custom", None, shown="the integration's own",
        meaning=(
            "The client's status."
        ),
    ),
    Key("integration_response", "templates", "custom", {}, shown='`{}`',
        meaning=(
            'Response templates by media type, as `response_templates`; none: the body passes through.'
        ),
    ),
    Key("integration_response", "content_handling", "custom", None, shown="the body as it is",
        meaning=(
            "An answer sent without a template: `\"convert_to_binary\"` decodes the integration's base64 body to bytes "
            "(not base64: `502`), `\"convert_to_text\"` base64-encodes it."
        ),
    ),
    Key("integration_response", "headers", "custom", {}, shown='`{}`',
        meaning=(
            "Headers of the client's response: `{ \"X-Source\" = \"'gwd'\" }` (a quoted literal) or "
            '`"integration.response.header.NAME"` (the integration\'s header).'
        ),
    ),
    Key("gateway_response", "status", "custom", None, shown="the error's own",
        meaning=(
            "The status of the response."
        ),
    ),
    Key("gateway_response", "headers", "custom", {}, shown='`{}`',
        meaning=(
            "Headers added to the error's own (`Retry-After`, `WWW-Authenticate`, ...)."
        ),
    ),
    Key("gateway_response", "template", "custom", None, shown="the error's own body",
        meaning=(
            'A VTL template for the body (inline or `"@file.vtl"`), sent as `application/json`: '
            '`$context.error.message`, `$context.error.messageString` (the message as a JSON string, quotes '
            'included), `$context.error.responseType`, `$context.requestId`, `httpMethod`, `path`, '
            '`resourcePath`, `stage`, `identity.sourceIp`, and `$stageVariables`.'
        ),
    ),
    Key("backend_tls", "client_cert", "custom", None, label='`client_cert`, `client_key`', shown='none',
        meaning=(
            'The certificate (PEM, chain allowed) and private key gwd presents to a backend that asks for '
            'one. The key file must be readable by its owner only (`chmod 600`): gwd refuses to start, or to '
            'reload, with a key others may read, and says which file.'
        ),
    ),
    Key("backend_tls", "ca", "custom", None, shown="the system's CAs",
        meaning=(
            'PEM file of the CAs that sign backend certificates.'
        ),
    ),
    Key("backend_tls", "server_name", "custom", None, shown="the URI's host",
        meaning=(
            "The name sent as SNI and expected in the backend's certificate (for a backend addressed by IP "
            'whose certificate names a DNS name).'
        ),
    ),
    Key("backend_tls", "insecure_skip_verify", "boolean", False,
        meaning=(
            '`true` accepts any backend certificate, and logs a warning at every start and reload. Not '
            "allowed together with `client_cert`: the gateway's certificate is never presented to a backend "
            'it has not verified.'
        ),
    ),
    Key("cache_policy", "enabled", "boolean", True,
        meaning=(
            '`false`: no caching for this route or stage.'
        ),
    ),
    Key("cache_policy", "ttl", "duration", 300.0, low=0.001, high=3600.0,
        meaning=(
            'How long a response is served from the cache (at most `"3600s"`).'
        ),
    ),
    Key("cache_policy", "key.query", "custom", (), shown='`[]`',
        meaning=(
            'Query parameters that are part of the cache key; their order in the request does not matter. '
            'Other parameters are not in the key.'
        ),
    ),
    Key("cache_policy", "key.headers", "custom", (), shown='`[]`',
        meaning=(
            'Request headers that are part of the cache key. `Accept-Encoding` always is, so a compressed '
            'body never reaches a client that did not ask for it.'
        ),
    ),
    Key("cache_policy", "statuses", "custom", (200,), shown='`[200]`',
        meaning=(
            'Response statuses that are cached.'
        ),
    ),
    Key("cache_policy", "per_identity", "boolean", False,
        meaning=(
            'Requests with `Authorization` or `x-api-key` bypass the cache unless this is `true`; then each '
            'caller (a digest of those headers) has entries of its own.'
        ),
    ),
    Key("cache_policy", "respect_backend", "boolean", True,
        meaning=(
            "A backend's `Cache-Control: s-maxage` (else `max-age`) shorter than `ttl` shortens it for that "
            'response.'
        ),
    ),
    Key("cache_policy", "invalidation", "string", "require_key",
        meaning=(
            'What a client\'s `Cache-Control: max-age=0` (or `no-cache`) does: `"require_key"`: it fetches the'
            " response again and replaces the entry only when the request's `x-api-key` is a key created with"
            ' `--permission cache-invalidate` (any other request is served as usual); `"allow"`: any client\'s'
            ' does; `"ignore"`: nobody\'s does.'
        ),
    ),
    Key("jwt_authorizer", "name", "custom", None, shown='(required)',
        meaning=(
            "What routes' `authorizer` names."
        ),
    ),
    Key("jwt_authorizer", "issuer", "custom", None, shown='(required)',
        meaning=(
            'The `iss` tokens must carry.'
        ),
    ),
    Key("jwt_authorizer", "audience", "custom", None, shown='(required)',
        meaning=(
            'The `aud` (a string or a list: any of them) tokens must be for.'
        ),
    ),
    Key("jwt_authorizer", "jwks_uri", "custom", None, shown='none',
        meaning=(
            "The issuer's JSON Web Key Set, fetched (1.5 s timeout) when first needed and again when a token "
            'names a `kid` not in it (a rotated-in key), at most once a minute.'
        ),
    ),
    Key("jwt_authorizer", "public_keys", "custom", (), shown='`[]`',
        meaning=(
            'PEM files of public keys (or certificates), instead of or besides `jwks_uri`; a token without a '
            "`kid` is checked with the one key of its algorithm's family."
        ),
    ),
    Key("jwt_authorizer", "algorithms", "custom", ("RS256", "ES256", "EdDSA"), shown='`["RS256", "ES256", "EdDSA"]`',
        meaning=(
            'The `alg` values accepted (`RS256`-`RS512`, `PS256`-`PS512`, `ES256`-`ES512`, `EdDSA`, `HS256`).'
            ' `none` is never accepted. An asymmetric algorithm is checked only with a key of its own family,'
            " so a token HMAC-signed with the issuer's public key fails."
        ),
    ),
    Key("jwt_authorizer", "secret_file", "custom", None, shown='none',
        meaning=(
            'The shared secret for `HS256`, which must also be listed in `algorithms`; the file must be '
            'readable by its owner only.'
        ),
    ),
    Key("jwt_authorizer", "leeway", "duration", 60.0, low=0.0, high=3600.0,
        meaning=(
            'Clock skew allowed on `exp` and `nbf`. `exp`, `iss` and `aud` are required.'
        ),
    ),
    Key("jwt_authorizer", "header", "custom", "Authorization", shown='`"Authorization"`',
        meaning=(
            'Where the token is.'
        ),
    ),
    Key("jwt_authorizer", "claim_headers", "custom", {}, shown='`{}`',
        meaning=(
            'Claims passed to the backend, as `{ claim = "Header-Name" }`.'
        ),
    ),
    Key("request_authorizer", "name", "custom", None, shown='(required)',
        meaning=(
            "What routes' `authorizer` names."
        ),
    ),
    Key("request_authorizer", "uri", "custom", None, label='`uri` or `function`', shown='(one required)',
        meaning=(
            'Who decides.'
        ),
    ),
    Key("request_authorizer", "identity_sources", "custom", (), shown='(required)',
        meaning=(
            'What identifies a caller: `"header:NAME"`, `"query:NAME"`, `"ip"`. A request missing one gets '
            '`401` without asking.'
        ),
    ),
    Key("request_authorizer", "ttl", "duration", 300.0, low=0.0, high=3600.0,
        meaning=(
            'How long a decision is remembered per identity (a digest of those values), per worker; `"0s"` '
            'asks every time.'
        ),
    ),
    Key("request_authorizer", "timeout", "duration", 2.0, low=0.01, high=30.0,
        meaning=(
            'How long the authorizer may take.'
        ),
    ),
    Key("request_authorizer", "context_headers", "custom", {}, shown='`{}`',
        meaning=(
            'Context values passed to the backend, as `{ key = "Header-Name" }`.'
        ),
    ),
    Key("usage_plan", "name", "custom", None,
        meaning=(
            '(required) What `gwd keys create --plan` names.'
        ),
    ),
    Key("usage_plan", "throttle", "custom", None,
        meaning=(
            '`{ rate, burst }`: a token bucket per key of the plan, on every route that takes keys.'
        ),
    ),
    Key("usage_plan", "quota", "custom", None,
        meaning=(
            '`{ limit = N, period = "day" | "week" | "month" }`: at most N requests per key per UTC day, week'
            ' (from Monday) or month. Past it: `429 {"message":"Limit Exceeded"}`. With the memory backend, '
            'counts are kept in `state_dir/keys.db`, committed before each request goes on, so they are '
            'shared by all workers and survive a restart, SIGTERM or SIGKILL alike (a counted request costs '
            'one SQLite write, about 16 us). With a Redis backend they are counted in Redis (one quota across'
            " all daemons; as durable as that Redis's persistence settings make them), as `gwd:quota:*` "
            'counters and a per-key `gwd:usage:KEY_ID` hash of daily counts. `gwd usage` prints them from '
            'wherever they are kept.'
        ),
    ),
    Key("route", "throttle", "custom", None, label='`throttle`, `client_throttle`',
        meaning=(
            "The route's own limits, replacing the stage's (see Throttling)."
        ),
    ),
    Key("route", "api_key_required", "boolean", False,
        meaning=(
            '`true`: requests need a valid, unrevoked key in `x-api-key`, else `403 {"message":"Forbidden"}`;'
            " the key's usage plan applies. Default `false`."
        ),
    ),
    Key("route", "cache", "custom", None,
        meaning=(
            "The route's response cache policy, replacing the stage's; `cache = { enabled = false }` turns "
            "the stage's off for this route (see Response cache)."
        ),
    ),
    Key("route", "allow", "custom", (), label='`allow`, `deny`',
        meaning=(
            "The route's resource policy, applied together with the stage's (see Resource policies)."
        ),
    ),
    Key("route", "authorizer", "custom", None, label='`authorizer`, `scopes`',
        meaning=(
            'The `[[authorizers]]` entry that must let requests in, and for a JWT authorizer the scopes the '
            'token must grant, all of them (see Authorizers).'
        ),
    ),
    Key("route", "client_cert_subject", "custom", None,
        meaning=(
            "A regular expression the whole subject of the client's verified certificate must match (RFC "
            '4514, as `"CN=billing,O=Example"`), else `403 {"message":"Forbidden"}`. Needs `[server] tls` '
            'with `client_auth` `"optional"` or `"require"`.'
        ),
    ),
    Key("route", "request_validator", "custom", None,
        meaning=(
            'What is checked before the integration: `"params"` (`required_parameters`), `"body"` (the body '
            'against `request_model`) or `"all"`. Failures: `400 {"message":"Invalid request body"}` and `400 '
            '{"message":"Missing required request parameters: [q, x-tenant]"}`, the detail in the access log\'s '
            '`validationError`; nothing reaches the integration (see Request validation).'
        ),
    ),
    Key("route", "request_model", "custom", None,
        meaning=(
            'The `[models]` entry each request media type\'s body must match: `{ "application/json" = "Pet" }`; '
            '`"$default"` for any other type.'
        ),
    ),
    Key("route", "required_parameters", "custom", None,
        meaning=(
            'Parameters the request must carry: `["querystring.q", "header.x-tenant", "path.id"]`.'
        ),
    ),
    Key("route", "route", "custom", None,
        meaning=(
            'The route key, as in AWS HTTP APIs: `METHOD /path`, where METHOD is `GET`, `HEAD`, `POST`, '
            '`PUT`, `PATCH`, `DELETE`, `OPTIONS` or `ANY`; or `$default`, which catches every request no '
            'other route matches. Path segments are literals, `{name}` (one non-empty segment) or, as the '
            'last segment, `{name+}` (one or more segments, the rest of the path).'
        ),
    ),
    Key("route", "integration", "custom", None,
        meaning=(
            'What answers the route (below).'
        ),
    ),
    Key("domain", "name", "custom", None, shown='(required)',
        meaning=(
            'The custom domain name, as clients send it in `Host`: `"api.example.com"`, or `"*.example.com"` for '
            'any one label more (an exact name wins over a wildcard).'
        ),
    ),
    Key("domain", "mappings", "custom", None, shown='(required)',
        meaning=(
            '`[{ base_path = "v1", api = "pets", stage = "prod" }, ...]`: requests whose path starts with a base '
            'path (the longest that matches; `""` matches every path) reach that API\'s stage with the base path '
            'removed. `api` may be left out when the daemon has one API.'
        ),
    ),
    Key("domain", "tls", "custom", None, shown='`[server] tls`',
        meaning=(
            '`{ cert = "api.pem", key = "api.key" }`: the certificate presented to clients that ask for this '
            'name by SNI on the HTTPS listener (which `[server] tls` makes; its certificate serves other names).'
        ),
    ),
    Key("domain", "default_api", "custom", None, shown='the only API, without `[[domains]]`',
        label="`default_api` (top level)",
        meaning=(
            "The API whose stages (by path prefix, as `/prod/pets`) serve requests whose `Host` names no "
            "`[[domains]]` entry. Unset, such requests get `404`, except that a daemon with one API and no "
            "domains serves it."
        ),
    ),
    Key("api", "name", "custom", None, shown="the file's name without `.toml`; `\"default\"` in the main file",
        meaning=(
            "The API's name: unique in the daemon; domain mappings, `default_api`, the `api` metric label and "
            "access-log field, and `gwd export --api` use it."
        ),
    ),
    Key("upstream", "name", "custom", None, shown='(required)',
        meaning=(
            'What `http` integrations call it: `uri = "http://upstream:NAME/path/{proxy}"` (`https://` for an '
            'upstream whose `scheme` is `"https"`).'
        ),
    ),
    Key("upstream", "targets", "custom", None, shown='(required)',
        meaning=(
            '`[{ address = "10.0.0.7:8080", weight = 2 }, ...]`: the backends (`HOST:PORT`, `[IPV6]:PORT`), each '
            'taking requests in proportion to its `weight` (1 to 1000, default 1). A `HOST` name is resolved '
            'when connecting.'
        ),
    ),
    Key("upstream", "scheme", "string", "http",
        meaning=(
            '`"http"` or `"https"`: how gwd speaks to every target.'
        ),
    ),
    Key("upstream", "tls", "custom", None, shown="the stage's `backend_tls`",
        meaning=(
            'Backend TLS for an https upstream, as an `http` integration\'s `tls`; a route\'s own `tls` wins over '
            'it, and it over the stage\'s `backend_tls`.'
        ),
    ),
    Key("upstream", "algorithm", "string", "round_robin",
        meaning=(
            '`"round_robin"` (smooth weighted, as nginx\'s), `"least_requests"` (the target with the fewest '
            'requests in flight for its weight, in each worker), or `"consistent_hash"` (by `hash_on`; a '
            'target that leaves moves only its own keys, and a target past 1.25x the average load passes the '
            'key on, so one hot key cannot melt it).'
        ),
    ),
    Key("upstream", "hash_on", "string", "ip",
        meaning=(
            'For `consistent_hash`: `"ip"` (the client\'s address), `"header:NAME"`, `"cookie:NAME"` or '
            '`"path:NAME"` (a path parameter); a request without the value hashes as an empty one.'
        ),
    ),
    Key("upstream", "eject_after", "integer", 5, low=0, high=1000,
        meaning=(
            'Consecutive failures of a target (connect failures, resets, timeouts, 5xx answers) after which a '
            'worker stops sending it requests for `eject_for`; `0`: never.'
        ),
    ),
    Key("upstream", "eject_for", "duration", 30.0, low=0.1, high=3600.0,
        meaning=(
            'How long the first ejection lasts; each ejection of the same target doubles it (up to 10 times the '
            'setting); a success resets it.'
        ),
    ),
    Key("upstream", "max_ejected_percent", "integer", 50, low=0, high=100,
        meaning=(
            'At most this share of the targets is ejected at once (at least one target stays), so a fault that '
            'fails every target cannot leave none.'
        ),
    ),
    Key("upstream", "slow_start", "duration", 0.0, low=0.0, high=3600.0,
        meaning=(
            'A target back from ejection takes a share of its weight growing from 5% to all of it over this time, '
            'so a backend that has just recovered is not flooded (`round_robin` and `least_requests`); `0`: its '
            'whole share at once.'
        ),
    ),
    Key("upstream", "max_requests", "integer", 0, low=0, high=1000000,
        meaning=(
            'Requests in flight to the upstream, counted across all workers; more get `503 {"message":"Service '
            'Unavailable"}` at once (circuit breaking). `0`: no limit.'
        ),
    ),
    Key("upstream", "retries", "custom", None, shown='none',
        meaning=(
            'When a failed request is tried again on another target (below).'
        ),
    ),
    Key("upstream", "health", "custom", None, shown='none',
        meaning=(
            'Active health checks (below).'
        ),
    ),
    Key("health", "path", "string", "/healthz",
        meaning=(
            'What is fetched from each target (`GET`, `Host` the target\'s address, `Connection: close`).'
        ),
    ),
    Key("health", "interval", "duration", 5.0, low=0.1, high=3600.0,
        meaning=(
            "Time between two checks of a target. One worker of the daemon runs them all (another takes over "
            "within a second when it exits or drains); every worker reads the results several times an interval."
        ),
    ),
    Key("health", "timeout", "duration", 2.0, low=0.05, high=600.0,
        meaning=(
            'A check not answered (status line read) within this fails.'
        ),
    ),
    Key("health", "healthy_threshold", "integer", 2, low=1, high=100,
        meaning=(
            'Consecutive passes that bring an unhealthy target back (with `slow_start`, gradually).'
        ),
    ),
    Key("health", "unhealthy_threshold", "integer", 3, low=1, high=100,
        meaning=(
            'Consecutive failures (a refused or broken connection, a timeout, a status not in `expect_status`) '
            'after which a target gets no requests. If every target is unhealthy, requests go to all of them, '
            'as if none were.'
        ),
    ),
    Key("health", "expect_status", "custom", (200,), shown='`[200]`',
        meaning=(
            'Statuses that pass.'
        ),
    ),
    Key("retries", "attempts", "integer", 2, low=1, high=10,
        meaning=(
            'Tries after the first, each on a target not yet tried, while the route\'s `timeout` has time left.'
        ),
    ),
    Key("retries", "on", "custom", ("connect-failure", "refused", "reset"),
        shown='`["connect-failure", "refused", "reset"]`',
        meaning=(
            'What is retried: `"connect-failure"` (no connection made: refused, timed out, unresolvable), '
            '`"refused"` (refused only), `"reset"` (the connection broke before any response byte), '
            '`"timeout"` (no response within `timeout`), and the statuses `"502"`, `"503"`, `"504"`. Only '
            'requests without a body and with an idempotent method are retried.'
        ),
    ),
    Key("retries", "budget", "custom", 0.2, shown='`"20%"`',
        meaning=(
            "Each worker's retries are at most this share of its requests to the upstream, plus 10, so retries "
            "cannot multiply an outage."
        ),
    ),
    Key("cors", "allow_origins", "custom", (), shown='`[]`',
        meaning=(
            'Origins (`"https://app.example.com"`, scheme, host and port as a browser sends them) whose pages may '
            'call the API, or `"*"` for any.'
        ),
    ),
    Key("cors", "allow_methods", "custom", ("*",), shown='`["*"]`',
        meaning=(
            'Methods a preflight may be allowed; `"*"` answers with the one the browser asked for.'
        ),
    ),
    Key("cors", "allow_headers", "custom", (), shown='`[]`',
        meaning=(
            'Request headers a preflight may be allowed (beyond the CORS-safelisted ones); `"*"` answers with '
            'those the browser asked for.'
        ),
    ),
    Key("cors", "expose_headers", "custom", (), shown='`[]`',
        meaning=(
            "Response headers a page's script may read, beyond the safelisted ones."
        ),
    ),
    Key("cors", "max_age", "integer", 0, low=0, high=86400,
        meaning=(
            "Seconds a browser may keep a preflight's answer; `0` sends no `Access-Control-Max-Age` (browsers "
            "then keep it 5 s)."
        ),
    ),
    Key("cors", "allow_credentials", "boolean", False,
        meaning=(
            'Pages may send cookies and `Authorization`; refused at load together with `"*"` in `allow_origins`.'
        ),
    ),
    Key("compression", "min_size", "integer", 1024, low=0, high=10 * 1024**2,
        meaning=(
            "Bodies of at least this many bytes are compressed (AWS's `minimumCompressionSize`); a streamed "
            "body of unknown length always is."
        ),
    ),
    Key("compression", "encodings", "custom", COMPRESSION_ENCODINGS, shown='`["br", "gzip"]`',
        meaning=(
            "The encodings gwd may answer in, in its order of preference (`br`, `gzip`): the client's "
            "`Accept-Encoding` q-values decide, this order breaks ties."
        ),
    ),
    Key("compression", "types", "custom", COMPRESSED_TYPES,
        shown='`["text/*", "application/json", "application/javascript", "application/xml", "image/svg+xml", '
        '"application/*+json", "application/*+xml"]`',
        meaning=(
            "`Content-Type`s compressed: exact, `type/*`, or `type/*+suffix`."
        ),
    ),
    Key("compression", "gzip_level", "integer", 6, low=1, high=9,
        meaning=(
            "zlib's level for gzip: 1 is fastest, 9 smallest."
        ),
    ),
    Key("compression", "br_quality", "integer", 4, low=0, high=11,
        meaning=(
            "Brotli's quality: 0 is fastest, 11 smallest (and far too slow for responses made per request)."
        ),
    ),
)

BY_TABLE: dict[str, dict[str, Key]] = {}
for _key in KEYS:
    BY_TABLE.setdefault(_key.table, {})[_key.name] = _key


def reference_table(tables: tuple[str, ...], qualified: bool = False, defaults: bool = True) -> str:
    """The README's ``| key | default | meaning |`` table of ``tables``' keys.

    ``qualified`` names them ``table.key``; without ``defaults`` the table
    has no default column (the tables of keys that have none worth one).
    """
    lines = ["| key | default | meaning |", "| --- | --- | --- |"] if defaults else ["| key | meaning |", "| --- | --- |"]
    for key in KEYS:
        if key.table in tables:
            name = key.label or (f"`{key.table}.{key.name}`" if qualified else f"`{key.name}`")
            default = f" {key.shown_default()} |" if defaults else ""
            lines.append(f"| {name} |{default} {key.meaning} |")
    return "\n".join(lines)
