"""The daemon's own log (not the access log): plain lines on stderr, for journald or a terminal."""

from __future__ import annotations

import logging
import sys
import time


def setup_logging(level: str) -> None:
    """Send gwd's messages to stderr, one UTC-stamped line each, at ``level`` and above."""
    formatter = logging.Formatter(
        "%(asctime)s.%(msecs)03dZ %(levelname)s [%(process)d] %(name)s: %(message)s", "%Y-%m-%dT%H:%M:%S"
    )
    formatter.converter = time.gmtime
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
