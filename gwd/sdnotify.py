"""systemd's readiness protocol (sd_notify) and socket activation, without libsystemd.

``notify`` sends one datagram to ``$NOTIFY_SOCKET`` (a path, or an abstract
name starting with ``@``); without that variable it does nothing, so the
daemon behaves the same outside systemd.  ``activated_sockets`` takes the
listening sockets systemd passed (``LISTEN_FDS`` from fd 3, when
``LISTEN_PID`` is this process).
"""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger("gwd.sdnotify")

SD_LISTEN_FDS_START = 3


def notify(*fields: str) -> None:
    """Send ``FIELD=value`` lines (``READY=1``, ``STATUS=...``) to the service manager, if there is one."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto("\n".join(fields).encode(), address)
    except OSError as exc:
        log.warning("cannot notify the service manager at %s: %s", os.environ.get("NOTIFY_SOCKET"), exc)


def watchdog_interval() -> float | None:
    """Seconds between WATCHDOG=1 pings (half of ``WATCHDOG_USEC``), when the service manager asks for them."""
    usec = os.environ.get("WATCHDOG_USEC", "")
    pid = os.environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0 or (pid and pid != str(os.getpid())):
        return None
    return int(usec) / 2_000_000


def activated_sockets() -> list[socket.socket]:
    """The listening sockets systemd passed to this process (none without socket activation)."""
    count = os.environ.get("LISTEN_FDS", "")
    if os.environ.get("LISTEN_PID") != str(os.getpid()) or not count.isdigit():
        return []
    for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        os.environ.pop(name, None)  # not for the workers
    sockets = []
    for fd in range(SD_LISTEN_FDS_START, SD_LISTEN_FDS_START + int(count)):
        sock = socket.socket(fileno=fd)
        sock.setblocking(False)
        os.set_inheritable(fd, False)
        sockets.append(sock)
    return sockets
