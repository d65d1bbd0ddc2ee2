"""Every scalar key of the daemon-wide tables, declared once: its type, default, range and meaning.

The reader (:mod:`gwd.config.reader`) takes defaults and ranges from here,
so ``gwd check`` reports against them, and the README's reference tables
for ``[server]``, ``[log]``, ``[throttle]``, ``[cache]``, ``[admin]`` and
``[metrics]`` are :func:`reference_table`'s output (a test compares them).
``custom`` keys need checks of their own in the reader; their default and
meaning still live here.
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
    meaning: str = ""

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
        if self.kind == "address":
            return f'`"{value}"`'
        return f'`"{value}"`'


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
    Key("server", "trusted_proxies", "networks", (), shown='`[]`',
        meaning=(
            'CIDRs (`"10.0.0.0/8"`, `"::1/128"`) of load balancers in front of gwd. Their `X-Forwarded-For` '
            'is extended and their `X-Forwarded-Proto` kept; from any other client both are replaced.'
        ),
    ),
    Key("server", "upstream_keepalive", "integer", 64, low=0, high=65535,
        meaning=(
            'Idle keep-alive connections each worker keeps per backend (`0`: none). Idle ones close after 60 '
            's.'
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
            'Where the supervisor answers `GET /metrics`, `/healthz` and `/readyz`; `"off"` for none. Keep it'
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
)

BY_TABLE: dict[str, dict[str, Key]] = {}
for _key in KEYS:
    BY_TABLE.setdefault(_key.table, {})[_key.name] = _key


def reference_table(tables: tuple[str, ...], qualified: bool = False) -> str:
    """The README's ``| key | default | meaning |`` table of ``tables``' keys; ``qualified`` names them ``table.key``."""
    lines = ["| key | default | meaning |", "| --- | --- | --- |"]
    for key in KEYS:
        if key.table in tables:
            name = f"{key.table}.{key.name}" if qualified else key.name
            lines.append(f"| `{name}` | {key.shown_default()} | {key.meaning} |")
    return "\n".join(lines)
