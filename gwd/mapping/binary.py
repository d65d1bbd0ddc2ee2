"""Binary media types: which bodies an API treats as bytes rather than text, by AWS's REST API rules.

``binary_media_types = ["image/*", "application/octet-stream"]`` lists
media types, exact or with a ``*`` subtype (``*/*`` is every type).  A
request body of such a type reaches a payload 1.0 function base64-encoded;
a function's base64 answer reaches the client as bytes only when the
first media type the client's ``Accept`` names is one of them.
"""

from __future__ import annotations


class BinaryTypes:
    """A compiled ``binary_media_types`` list: ``matches("image/png")``, ``accepted(accept_header)``."""

    __slots__ = ("_exact", "_families", "_all")

    def __init__(self, patterns: tuple[str, ...]) -> None:
        lowered = [pattern.strip().lower() for pattern in patterns]
        self._all = "*/*" in lowered
        self._families = frozenset(pattern[:-2] for pattern in lowered if pattern.endswith("/*") and pattern != "*/*")
        self._exact = frozenset(pattern for pattern in lowered if not pattern.endswith("/*"))

    def __bool__(self) -> bool:
        return self._all or bool(self._families) or bool(self._exact)

    def matches(self, content_type: str | None) -> bool:
        """Whether a body of this ``Content-Type`` (parameters allowed) is binary."""
        if not content_type:
            return False
        media = content_type.partition(";")[0].strip().lower()
        return self._all or media in self._exact or media.partition("/")[0] in self._families

    def accepted(self, accept: str | None) -> bool:
        """Whether the first media type of an ``Accept`` header is binary (AWS's rule for answering with bytes)."""
        return self.matches(accept.partition(",")[0]) if accept else False
