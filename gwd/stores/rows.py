"""Rows of a shared-memory table claimed by a name's hash: how the invocation and health tables find their rows."""

from __future__ import annotations

import fcntl


class TableFull(Exception):
    """Every row is taken by another name."""


def claim_row(keys: memoryview, lock_fd: int, lock_byte: int, name: str, what: str) -> int:
    """The row of ``name`` in ``keys`` (each row's name hash, 0 when free), claimed on first use.

    Claiming holds byte ``lock_byte`` of ``lock_fd`` locked; probing is
    linear from the hash.  The hash is Python's, which forked workers share.
    Raises :class:`TableFull` naming ``what`` the rows hold.
    """
    rows = len(keys)
    key = (hash(name) & 0xFFFFFFFFFFFFFFFF) or 1
    start = key % rows
    fcntl.lockf(lock_fd, fcntl.LOCK_EX, 1, lock_byte)
    try:
        for probe in range(rows):
            row = (start + probe) % rows
            if keys[row] == key:
                return row
            if keys[row] == 0:
                keys[row] = key
                return row
    finally:
        fcntl.lockf(lock_fd, fcntl.LOCK_UN, 1, lock_byte)
    raise TableFull(f"more than {rows} {what} in this daemon's life; restart it")
