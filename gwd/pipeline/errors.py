"""Gateway errors: how a stage says "answer the client with this status".

A stage raises :class:`GatewayError`; the pipeline entry renders it, in one
place, as AWS-style JSON ``{"message": ...}``.  Bodies are encoded once per
error kind, not per request.
"""

from __future__ import annotations

import orjson
from aiohttp import web


class GatewayError(Exception):
    """A client-facing failure with its HTTP status and message."""

    __slots__ = ("status", "body", "headers", "close")

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None, close: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.body = orjson.dumps({"message": message})
        self.headers = headers
        self.close = close  # the connection closes after it (the request's body was not read to its end)

    def render(self) -> web.Response:
        response = web.Response(status=self.status, body=self.body, content_type="application/json")
        if self.headers:
            response.headers.update(self.headers)
        if self.close:
            response.force_close()
        return response


def closing_response(status: int, reason: str, message: str, extra_header_lines: bytes = b"") -> bytes:
    """A whole ``Connection: close`` error response as bytes, for a connection answered before any request object exists."""
    body = orjson.dumps({"message": message})
    return (
        b"HTTP/1.1 %d %s\r\nServer: gwd\r\nContent-Type: application/json\r\n%bConnection: close\r\n"
        b"Content-Length: %d\r\n\r\n%b" % (status, reason.encode(), extra_header_lines, len(body), body)
    )


NOT_FOUND = GatewayError(404, "Not Found")
INTERNAL_ERROR = GatewayError(500, "Internal Server Error")
