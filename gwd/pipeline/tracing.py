"""W3C Trace Context: continue a client's ``traceparent``, or start a trace, for the backend and the access log.

A valid incoming ``traceparent`` keeps its trace id and flags; the backend
gets it with a new parent id (the span of gwd's call).  Without one, the
trace id is the request id gwd made (32 hex digits once its dashes are
gone, so the log line and the trace join on one value), or a random one
when the client chose the request id; the flags then say "not sampled",
since gwd records no spans itself.  ``tracestate`` passes through as sent.
"""

from __future__ import annotations

import random
import re

_TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_HEX32 = re.compile(r"[0-9a-f]{32}")
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16
NOT_SAMPLED = "00"


def incoming(value: str | None) -> tuple[str, str] | None:
    """(trace id, flags) of a valid version-00 ``traceparent``, or None (absent, malformed, or all-zero ids)."""
    if value is None:
        return None
    found = _TRACEPARENT.fullmatch(value.strip())
    if found is None or found.group(1) == _ZERO_TRACE or found.group(2) == _ZERO_SPAN:
        return None
    return found.group(1), found.group(3)


def new_trace_id(request_id: str) -> str:
    """A trace id for a request that came without one."""
    candidate = request_id.replace("-", "")
    if _HEX32.fullmatch(candidate) and candidate != _ZERO_TRACE:
        return candidate
    return f"{random.getrandbits(128) | 1:032x}"


def traceparent_line(trace_id: str, flags: str) -> bytes:
    """The ``traceparent`` header line for a backend call: the trace, and a new span id as its parent."""
    return b"traceparent: 00-%s-%016x-%s\r\n" % (trace_id.encode(), random.getrandbits(64) | 1, flags.encode())
