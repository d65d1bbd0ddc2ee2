"""The state of one request as it moves through the pipeline."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp.http import HttpVersion
from aiohttp.web import BaseRequest, StreamResponse
from multidict import CIMultiDictProxy
from yarl import URL

from gwd.keystore import ApiKey
from gwd.pipeline import tracing
from gwd.pipeline.clientcert import ClientCert

if TYPE_CHECKING:
    from gwd.pipeline.metrics import RouteCounts
from gwd.pipeline.passthrough import PassThroughResponse


class Exchange:
    """One request and what the pipeline stages learned about it.

    Each stage reads what earlier stages set and adds its own part; the
    access log reads the finished exchange.  What the client sent is here
    as the parser gave it (method, headers, version, URL, path, address);
    aiohttp's :attr:`request` object is made only for requests that go
    through a route's chain, which set it: a request answered at once (see
    :meth:`gwd.pipeline.gateway.Entry.answer_at_once`) has none, and what
    runs for it reads only the fields here.
    """

    __slots__ = (
        "request",
        "method",
        "headers",
        "version",
        "url",
        "raw_path",
        "remote",
        "request_id",
        "draining",
        "stage",
        "route_key",
        "path_params",
        "integration_latency",
        "integration_error",
        "response_length",
        "extra_header_lines",
        "api_key",
        "client_cert",
        "claims",
        "principal_id",
        "backend_header_lines",
        "_trace",
        "_own_request_id",
        "route_counts",
        "status_sent",
        "client_closed",
    )

    request: BaseRequest

    def __init__(
        self,
        method: str,
        headers: CIMultiDictProxy[str],
        version: HttpVersion,
        url: URL,
        raw_path: str,
        remote: str | None,
        request_id: str,
        draining: bool,
        own_request_id: bool,
    ) -> None:
        """``url`` and ``raw_path`` as sent; ``own_request_id``: gwd made ``request_id`` (32 hex digits and dashes)."""
        self.method = method
        self.headers = headers
        self.version = version
        self.url = url
        # Read once: routing, the cache key and the access log all want it, and each read of the URL's costs.
        self.raw_path = raw_path
        self.remote = remote  # the peer's address
        self.request_id = request_id
        self._own_request_id = own_request_id
        self.draining = draining
        self.stage = "-"
        self.route_key = "-"
        self.path_params: dict[str, str] = {}
        # Milliseconds until the integration's response head; None when none ran.
        self.integration_latency: float | None = None
        # Why a backend failed (refused, reset, timeout, ...); None when it did not.
        self.integration_error: str | None = None
        # Body bytes of a response the integration streamed itself; None for a buffered one.
        self.response_length: int | None = None
        # Header lines stages add to whatever response the request gets, encoded.
        self.extra_header_lines = b""
        # The caller's API key, once the key stage accepted it.
        self.api_key: ApiKey | None = None
        # The verified TLS client certificate, when the listener asks for them and one came.
        self.client_cert: ClientCert | None = None
        # What the route's authorizer found: a token's claims or a custom authorizer's context...
        self.claims: dict[str, Any] | None = None
        # ...and who the caller is (a token's sub, a custom authorizer's principalId).
        self.principal_id: str | None = None
        # Header lines for the backend's request (from the authorizer), encoded.
        self.backend_header_lines = b""
        # The matched route's metrics counts; None when unmatched or metrics are off.
        self.route_counts: RouteCounts | None = None
        # The status of a streamed response whose head went out before the body was all sent.
        self.status_sent: int | None = None
        # The client went away before its response was all sent.
        self.client_closed = False
        # (trace id, flags): the client's traceparent, or one started on first use (see trace()).
        self._trace: tuple[str, str] | None = None

    def continue_trace(self, traceparent: str | None) -> None:
        """Take the client's ``traceparent`` header, when it is a valid one."""
        self._trace = tracing.incoming(traceparent)

    def trace(self) -> tuple[str, str]:
        """The request's (trace id, flags), starting a trace if the client sent none."""
        if self._trace is None:
            # gwd's own ids are 32 hex digits once the dashes go; a client's must be checked.
            own = self._own_request_id
            trace_id = self.request_id.replace("-", "") if own else tracing.new_trace_id(self.request_id)
            self._trace = (trace_id, tracing.NOT_SAMPLED)
        return self._trace

    def add_header_lines(self, lines: bytes) -> None:
        """Header lines (``Name: value\\r\\n`` each) for whatever response this request gets.

        Encoded by the stage that adds them, often from a template built at
        config load: most responses are passed-through backend responses,
        which take them as they are (see :meth:`stamp`).
        """
        self.extra_header_lines += lines

    def stamp(self, response: StreamResponse) -> None:
        """Add the headers every gwd response carries; streaming integrations call it before prepare()."""
        if self.draining:
            # A keep-alive client learns to open its next connection elsewhere
            # instead of racing the close of an idle one.
            response.force_close()
        if isinstance(response, PassThroughResponse):
            response.header_lines = b"X-Request-Id: " + self.request_id.encode() + b"\r\nServer: gwd\r\n" + self.extra_header_lines
            return
        headers = response.headers
        headers["X-Request-Id"] = self.request_id
        headers["Server"] = "gwd"
        if self.extra_header_lines:
            for line in self.extra_header_lines.splitlines():
                name, value = line.split(b": ", 1)
                headers[name.decode("latin-1")] = value.decode("latin-1")
