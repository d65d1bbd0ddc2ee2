"""How many invocations of each function run now, whichever worker runs them: shared memory.

The same table counts the requests in flight to each upstream with a
``max_requests`` (rows named ``upstream:NAME``).

A function's ``concurrency`` is a limit per daemon, so the count lives in
an anonymous shared mapping made before the workers fork (as the throttle
buckets do, and it outlives reloads the same way).  Each function has a
row (found by its name's hash): a total, and per process that ran it one
cell of (pid, count).  Taking and giving back a slot is one step under the
row's byte-range lock (``fcntl``; the kernel drops it if its holder dies).
A worker that dies with invocations running leaves its cell's count in the
total; when a row is full, cells of processes that are gone are cleared
before anyone is refused, so a killed worker never shrinks a limit for
good.
"""

from __future__ import annotations

import fcntl
import logging
import mmap
import os

from gwd.stores.rows import claim_row

ROWS = 1024
"""Function and upstream names the table holds over the daemon's life (rows are never freed)."""
CELLS = 64
"""Processes that may run one function at once (workers of all generations still draining)."""

log = logging.getLogger("gwd.functions")


class InvocationSlots:
    """Per-function counts of running invocations, shared by every process forked after its creation."""

    __slots__ = ("_memory", "_keys", "_totals", "_pids", "_counts", "_lock_fd", "_pid", "_own")

    def __init__(self) -> None:
        self._memory = mmap.mmap(-1, ROWS * 8 * 2 + ROWS * CELLS * 8 * 2)
        view = memoryview(self._memory)
        rows, cells = ROWS * 8, ROWS * CELLS * 8
        self._keys = view[:rows].cast("Q")  # a row's name hash; 0: free
        self._totals = view[rows : 2 * rows].cast("q")
        self._pids = view[2 * rows : 2 * rows + cells].cast("q")
        self._counts = view[2 * rows + cells :].cast("q")
        # Byte ``row`` of it locks a row; byte ROWS guards claiming rows.
        self._lock_fd = os.memfd_create("gwd-invocation-locks", os.MFD_CLOEXEC)
        self._pid = 0  # the process _own belongs to (a forked child starts afresh)
        self._own: dict[int, int] = {}  # row -> this process's cell in it

    def row(self, name: str) -> int:
        """The row of the function (or ``upstream:NAME``) ``name``, claimed on first use; raises TableFull."""
        return claim_row(self._keys, self._lock_fd, ROWS, name, "function and upstream names")

    def take(self, row: int, limit: int) -> bool:
        """Count one more invocation of the row's function, unless ``limit`` run already."""
        fcntl.lockf(self._lock_fd, fcntl.LOCK_EX, 1, row)
        try:
            cell = self._cell(row)
            if self._totals[row] >= limit:
                self._clear_dead(row)
                if self._totals[row] >= limit:
                    return False
            if cell < 0:
                return False
            self._totals[row] += 1
            self._counts[cell] += 1
            return True
        finally:
            fcntl.lockf(self._lock_fd, fcntl.LOCK_UN, 1, row)

    def give_back(self, row: int) -> None:
        """One invocation :meth:`take` counted has ended."""
        fcntl.lockf(self._lock_fd, fcntl.LOCK_EX, 1, row)
        try:
            cell = self._cell(row)
            if self._counts[cell] > 0:
                self._counts[cell] -= 1
                self._totals[row] -= 1
        finally:
            fcntl.lockf(self._lock_fd, fcntl.LOCK_UN, 1, row)

    def running(self, row: int) -> int:
        """Invocations of the row's function running now, in the whole daemon."""
        return self._totals[row]

    def _cell(self, row: int) -> int:
        """This process's cell in the row (the row is locked), claimed on first use; -1 when none is free."""
        pid = os.getpid()
        if pid != self._pid:
            self._pid, self._own = pid, {}
        cell = self._own.get(row)
        if cell is not None:
            return cell
        first = row * CELLS
        pids = self._pids[first : first + CELLS].tolist()
        if pid in pids:  # a dead process's, whose pid this one was given
            cell = first + pids.index(pid)
        elif 0 in pids:
            cell = first + pids.index(0)
        else:
            self._clear_dead(row)
            pids = self._pids[first : first + CELLS].tolist()
            if 0 not in pids:
                log.error("shared count row %d: more than %d processes hold it at once; refusing", row, CELLS)
                return -1
            cell = first + pids.index(0)
        self._totals[row] -= self._counts[cell]
        self._pids[cell] = pid
        self._counts[cell] = 0
        self._own[row] = cell
        return cell

    def _clear_dead(self, row: int) -> None:
        """Drop the cells (and counts) of processes that no longer exist (the row is locked)."""
        first = row * CELLS
        for cell in range(first, first + CELLS):
            pid = self._pids[cell]
            if pid == 0 or pid == self._pid:
                continue
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                self._totals[row] -= self._counts[cell]
                self._pids[cell] = 0
                self._counts[cell] = 0
            except PermissionError:
                pass  # alive, as another user
