"""Gateway errors: how a stage says "answer the client with this status".

A stage raises :class:`GatewayError`; the pipeline entry renders it, in one
place, as AWS-style JSON ``{"message": ...}``.  The body and header lines
are encoded once per error kind, not per request.
"""

from __future__ import annotations

import orjson

from gwd.http.message import Request, RequestBodyError, Response

_JSON = b"Content-Type: application/json\r\n"


class GatewayError(Exception):
    """A client-facing failure with its HTTP status and message.

    ``response_type`` is AWS's gateway response type for it (see
    :mod:`gwd.pipeline.gatewayresponses`); by default ``DEFAULT_4XX`` or
    ``DEFAULT_5XX`` by the status.
    """

    __slots__ = ("status", "body", "header_lines", "extra_lines", "close", "response_type")

    def __init__(
        self, status: int, message: str, headers: dict[str, str] | None = None, close: bool = False, response_type: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body = orjson.dumps({"message": message})
        self.extra_lines = b"".join(f"{name}: {value}\r\n".encode("latin-1") for name, value in (headers or {}).items())
        self.header_lines = _JSON + self.extra_lines
        self.close = close  # the connection closes after it (the request's body was not read to its end)
        self.response_type = response_type or ("DEFAULT_5XX" if status >= 500 else "DEFAULT_4XX")

    def render(self) -> Response:
        """A new response for it (each response gets its own request id lines)."""
        return Response(self.status, self.header_lines, self.body, close=self.close)


NOT_FOUND = GatewayError(404, "Not Found", response_type="RESOURCE_NOT_FOUND")
INTERNAL_ERROR = GatewayError(500, "Internal Server Error")
NOT_IMPLEMENTED = GatewayError(501, "Not Implemented")

BODY_TOO_LARGE = GatewayError(413, "Request Entity Too Large", close=True, response_type="REQUEST_TOO_LARGE")
BODY_TIMEOUT = GatewayError(408, "Request Timeout", close=True)
BODY_MALFORMED = GatewayError(400, "Bad Request", close=True)
_BODY_ERRORS = {413: BODY_TOO_LARGE, 408: BODY_TIMEOUT, 400: BODY_MALFORMED}


async def whole_body(request: Request, max_body: int) -> bytes:
    """The request's whole body, for an integration that needs it at once; its failures as the client's answer."""
    if (request.content_length or 0) > max_body:
        raise BODY_TOO_LARGE
    if not request.has_body:
        return b""
    try:
        return await request.body.read_all()
    except RequestBodyError as error:
        raise body_error(error) from None


def body_error(error: RequestBodyError) -> GatewayError:
    """What the client is answered when reading its request body failed (the connection closes after it)."""
    return _BODY_ERRORS.get(error.status) or GatewayError(error.status, str(error), close=True)
