"""Upstream targets' health as the daemon's one checker last found it: shared memory, one writer, every worker reading.

Active health checks run once per daemon, not once per worker: the worker
holding the table's leader lock (an ``fcntl`` lock the kernel drops when
its holder exits) runs them and writes each target's state here; every
worker reads the states a few times per check interval.  The table is an
anonymous shared mapping made before the workers fork, as the throttle
buckets are, so it outlives reloads; rows are keyed by a name's hash
(``upstream``, target address and check path) and never freed.
"""

from __future__ import annotations

import fcntl
import mmap
import os
from datetime import datetime, timezone
from typing import Any

from gwd.config.model import UpstreamConfig

from gwd.stores.rows import claim_row

ROWS = 4096
"""Checked targets the table holds over the daemon's life."""
UNKNOWN, HEALTHY, UNHEALTHY = 0, 1, 2
WHY_BYTES = 120
"""A state change's reason, UTF-8, cut to this many bytes."""


class HealthTable:
    """Per-target health states, shared by every process forked after its creation."""

    __slots__ = ("_memory", "_keys", "_states", "_since", "_why", "_lock_fd", "_leading")

    def __init__(self) -> None:
        self._memory = mmap.mmap(-1, ROWS * (8 * 3 + WHY_BYTES))
        view = memoryview(self._memory)
        self._keys = view[: ROWS * 8].cast("Q")  # a row's name hash; 0: free
        self._states = view[ROWS * 8 : ROWS * 16].cast("q")
        self._since = view[ROWS * 16 : ROWS * 24].cast("d")  # time.time() of the last change
        self._why = view[ROWS * 24 :]  # the last change's reason, NUL-padded
        # Byte 0 of it is the leader lock; byte 1 guards claiming rows.
        self._lock_fd = os.memfd_create("gwd-health-locks", os.MFD_CLOEXEC)
        self._leading = False

    def row(self, name: str) -> int:
        """The row of a checked target, claimed on first use; raises TableFull."""
        return claim_row(self._keys, self._lock_fd, 1, name, "checked targets")

    def lead(self) -> bool:
        """Whether this process runs the checks: it holds the leader lock, or takes it now that nobody does."""
        if not self._leading:
            try:
                fcntl.lockf(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, 0)
            except OSError:
                return False
            self._leading = True
        return True

    def step_down(self) -> None:
        """Let another worker lead (this one is draining)."""
        if self._leading:
            fcntl.lockf(self._lock_fd, fcntl.LOCK_UN, 1, 0)
            self._leading = False

    def state(self, row: int) -> int:
        """UNKNOWN (not yet decided), HEALTHY or UNHEALTHY."""
        return self._states[row]

    def change(self, row: int) -> tuple[float, str]:
        """When the row's state last changed (time.time(); 0 never), and why."""
        why = bytes(self._why[row * WHY_BYTES : (row + 1) * WHY_BYTES]).rstrip(b"\0")
        return self._since[row], why.decode("utf-8", "replace")

    def set(self, row: int, state: int, since: float, why: str) -> None:
        encoded = why.encode()[:WHY_BYTES]
        self._why[row * WHY_BYTES : (row + 1) * WHY_BYTES] = encoded.ljust(WHY_BYTES, b"\0")
        self._since[row] = since
        self._states[row] = state


def target_row_name(upstream: str, target: str, path: str) -> str:
    """The name a checked target's row is claimed by: its upstream, address and check path."""
    return f"{upstream}\0{target}\0{path}"


def upstreams_report(upstreams: tuple[UpstreamConfig, ...], table: HealthTable) -> dict[str, Any]:
    """The admin listener's ``/upstreams``: each target's health as the daemon's checks last found it."""
    report = []
    for upstream in upstreams:
        targets = []
        for target in upstream.targets:
            entry: dict[str, Any] = {"address": str(target), "weight": target.weight, "health": "unchecked"}
            if upstream.health is not None:
                row = table.row(target_row_name(upstream.name, str(target), upstream.health.path))
                state = table.state(row)
                since, why = table.change(row)
                entry["health"] = {UNKNOWN: "checking", HEALTHY: "healthy", UNHEALTHY: "unhealthy"}[state]
                if since:
                    entry["since"] = datetime.fromtimestamp(since, timezone.utc).isoformat(timespec="seconds")
                    entry["why"] = why
            targets.append(entry)
        report.append({"name": upstream.name, "algorithm": upstream.algorithm, "targets": targets})
    return {"upstreams": report}
