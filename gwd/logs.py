"""The daemon's own log (not the access log): plain lines on stderr, for journald or a terminal."""

from __future__ import annotations

import logging
import os
import sys
import time

_SYSLOG_PRIORITY = {"DEBUG": 7, "INFO": 6, "WARNING": 4, "ERROR": 3, "CRITICAL": 2}


class _JournalFormatter(logging.Formatter):
    """Lines starting ``<N>``, the syslog priority journald reads (so ``journalctl -p err`` works); no time stamp, journald keeps one."""

    def format(self, record: logging.LogRecord) -> str:
        # journald makes each line an entry: a traceback's lines keep the message's priority too.
        prefix = f"<{_SYSLOG_PRIORITY.get(record.levelname, 6)}>"
        return "\n".join(prefix + line for line in super().format(record).splitlines())


def setup_logging(level: str) -> None:
    """Send gwd's messages to stderr, one line each, at ``level`` and above.

    For a terminal or a file each line starts with a UTC time stamp; when
    stderr is journald's stream (``$JOURNAL_STREAM`` names it), with the
    message's priority instead.
    """
    if _stderr_is_journal():
        formatter: logging.Formatter = _JournalFormatter("%(levelname)s [%(process)d] %(name)s: %(message)s")
    else:
        formatter = logging.Formatter(
            "%(asctime)s.%(msecs)03dZ %(levelname)s [%(process)d] %(name)s: %(message)s", "%Y-%m-%dT%H:%M:%S"
        )
        formatter.converter = time.gmtime
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def _stderr_is_journal() -> bool:
    """systemd sets ``JOURNAL_STREAM=DEVICE:INODE`` of the stream it connected; a redirected stderr is another file."""
    expected = os.environ.get("JOURNAL_STREAM", "")
    try:
        stat = os.fstat(sys.stderr.fileno())
    except (OSError, ValueError):
        return False
    return expected == f"{stat.st_dev}:{stat.st_ino}"
