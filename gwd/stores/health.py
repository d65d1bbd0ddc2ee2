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

from gwd.stores.rows import claim_row

ROWS = 4096
"""Checked targets the table holds over the daemon's life."""
UNKNOWN, HEALTHY, UNHEALTHY = 0, 1, 2


class HealthTable:
    """Per-target health states, shared by every process forked after its creation."""

    __slots__ = ("_memory", "_keys", "_states", "_since", "_lock_fd", "_leading")

    def __init__(self) -> None:
        self._memory = mmap.mmap(-1, ROWS * 8 * 3)
        view = memoryview(self._memory)
        self._keys = view[: ROWS * 8].cast("Q")  # a row's name hash; 0: free
        self._states = view[ROWS * 8 : ROWS * 16].cast("q")
        self._since = view[ROWS * 16 :].cast("d")  # time.time() of the last change
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

    def state(self, row: int) -> tuple[int, float]:
        """(UNKNOWN, HEALTHY or UNHEALTHY, since when)."""
        return self._states[row], self._since[row]

    def set(self, row: int, state: int, since: float) -> None:
        self._states[row] = state
        self._since[row] = since
