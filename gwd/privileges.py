"""Dropping root: bind first, then become ``server.user`` before any worker starts.

Started as root without systemd (which would start gwd as its user itself),
the supervisor binds its sockets, hands the state directory, the metrics
directory and the access-log file to the user, and gives up root for good:
supplementary groups cleared, then the group, then the user.  Every worker
forked after that runs as the user too.
"""

from __future__ import annotations

import os
import pwd


class PrivilegeError(Exception):
    """The daemon cannot become the configured user; the message says why."""


def drop_to(user: str, owned_paths: list[str]) -> None:
    """Become ``user`` (and its primary group) after giving it ``owned_paths`` (directories recursively)."""
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        raise PrivilegeError(f"no user named {user!r}") from None
    if os.geteuid() != 0:
        if os.geteuid() == entry.pw_uid:
            return  # already that user
        raise PrivilegeError(f"server.user = {user!r} needs gwd to be started as root (it runs as uid {os.geteuid()})")
    for path in owned_paths:
        _chown_tree(path, entry.pw_uid, entry.pw_gid)
    os.setgroups([])
    os.setgid(entry.pw_gid)
    os.setuid(entry.pw_uid)
    if os.getuid() != entry.pw_uid or os.geteuid() != entry.pw_uid:
        raise PrivilegeError(f"still uid {os.geteuid()} after setuid({entry.pw_uid})")


def _chown_tree(path: str, uid: int, gid: int) -> None:
    if not os.path.exists(path):
        return
    os.chown(path, uid, gid)
    if os.path.isdir(path):
        for root, directories, files in os.walk(path):
            for name in directories + files:
                os.chown(os.path.join(root, name), uid, gid, follow_symlinks=False)
