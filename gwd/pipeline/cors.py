"""CORS as HTTP APIs configure it: preflights answered by the gateway, ``Access-Control-*`` on every response.

A preflight (``OPTIONS`` with ``Origin`` and
``Access-Control-Request-Method``) is answered ``204`` by the gateway
itself, before any route's authorizer, API key or throttle, with the
policy of the route the request would reach (the API's when none does).
Every other response of a route with a policy, errors included, gets
``Access-Control-Allow-Origin`` for an allowed ``Origin``, and the header
lines an integration sent under ``Access-Control-`` are replaced, as AWS
ignores a backend's own.  The lines are added after the response cache, so
one cached entry serves every origin.  A disallowed origin gets no
``Access-Control-*`` header at all, which is how a browser learns it.
"""

from __future__ import annotations

from gwd.config.model import CorsConfig
from gwd.http.message import Headers, Response


class CorsPolicy:
    """One ``cors`` table, compiled: its header lines built once, at config load."""

    __slots__ = (
        "_origins",
        "_any_origin",
        "_credentials",
        "_vary",
        "_allow_methods",
        "_any_method",
        "_allow_headers",
        "_any_header",
        "_max_age",
        "_exposed",
    )

    def __init__(self, config: CorsConfig) -> None:
        self._origins = frozenset(origin.encode() for origin in config.allow_origins if origin != "*")
        self._any_origin = "*" in config.allow_origins
        self._credentials = b"Access-Control-Allow-Credentials: true\r\n" if config.allow_credentials else b""
        # A listed origin is echoed, so the answer varies with Origin; "*" alone does not.
        self._vary = b"Vary: Origin\r\n" if self._origins else b""
        self._any_method = "*" in config.allow_methods
        self._allow_methods = ", ".join(config.allow_methods).encode()
        self._any_header = "*" in config.allow_headers
        self._allow_headers = ", ".join(config.allow_headers).encode()
        self._max_age = b"Access-Control-Max-Age: %d\r\n" % config.max_age if config.max_age else b""
        self._exposed = (
            b"Access-Control-Expose-Headers: " + ", ".join(config.expose_headers).encode() + b"\r\n"
            if config.expose_headers
            else b""
        )

    def _allow_origin(self, origin: bytes | None) -> bytes:
        """The ``Access-Control-Allow-Origin`` line for ``origin`` (empty when it is not allowed)."""
        if origin is None:
            return b""
        if origin in self._origins:
            return b"Access-Control-Allow-Origin: " + origin + b"\r\n"
        if self._any_origin:
            return b"Access-Control-Allow-Origin: *\r\n"
        return b""

    def response_lines(self, origin: bytes | None) -> bytes:
        """The lines an actual (not preflight) response gets for a request from ``origin``."""
        allowed = self._allow_origin(origin)
        if not allowed:
            return self._vary
        return allowed + self._credentials + self._exposed + self._vary

    def preflight(self, headers: Headers) -> Response:
        """The gateway's answer to a preflight request."""
        allowed = self._allow_origin(headers.get(b"origin"))
        if not allowed:
            return Response(204, self._vary)
        if self._any_method:
            # "*" is no wildcard to a browser sending credentials: name the method it asked for.
            methods = headers.get(b"access-control-request-method") or b"*"
        else:
            methods = self._allow_methods
        lines = allowed + self._credentials + b"Access-Control-Allow-Methods: " + methods + b"\r\n"
        requested_headers = headers.get(b"access-control-request-headers")
        allow_headers = (requested_headers or b"") if self._any_header else self._allow_headers
        if allow_headers:
            lines += b"Access-Control-Allow-Headers: " + allow_headers + b"\r\n"
        return Response(204, lines + self._max_age + self._vary)


def without_cors_lines(header_lines: bytes) -> bytes:
    """``header_lines`` without the integration's own ``Access-Control-*`` lines."""
    if b"access-control-" not in header_lines.lower():
        return header_lines
    kept = [line for line in header_lines.split(b"\r\n") if line and not line.lower().startswith(b"access-control-")]
    return b"".join(line + b"\r\n" for line in kept)
