"""The state of one request as it moves through the pipeline."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gwd.http.message import Request
from gwd.pipeline import tracing
from gwd.pipeline.clientcert import ClientCert
from gwd.stores.keystore import ApiKey

if TYPE_CHECKING:
    from gwd.pipeline.cors import CorsPolicy
    from gwd.telemetry.metrics import RouteCounts


class Exchange:
    """One request and what the pipeline stages learned about it.

    Each stage reads what earlier stages set and adds its own part; the
    access log and metrics read the finished exchange.  What the client
    sent is :attr:`request`, gwd's own request object, which a test can
    make without a socket.
    """

    __slots__ = (
        "request",
        "method",
        "raw_path",
        "request_id",
        "started",
        "started_clock",
        "api",
        "stage",
        "route_key",
        "path_params",
        "integration_latency",
        "integration_error",
        "extra_header_lines",
        "api_key",
        "client_cert",
        "claims",
        "principal_id",
        "backend_header_lines",
        "_trace",
        "_own_request_id",
        "route_counts",
        "client_closed",
        "function_name",
        "function_error",
        "validation_error",
        "integration_path",
        "cors",
    )

    def __init__(self, request: Request, request_id: str, own_request_id: bool, started: float, started_clock: float) -> None:
        """``own_request_id``: gwd made ``request_id`` (32 hex digits and dashes); ``started`` from time.time(), ``started_clock`` from perf_counter()."""
        self.request = request
        # Read once: routing, the cache key and the access log all want them.
        self.method = request.method
        self.raw_path = request.path
        self.request_id = request_id
        self._own_request_id = own_request_id
        self.started = started
        self.started_clock = started_clock
        self.api = "-"  # the API's name once routing found one
        self.stage = "-"
        self.route_key = "-"
        self.path_params: dict[str, str] = {}
        # Milliseconds until the integration's response head; None when none ran.
        self.integration_latency: float | None = None
        # Why a backend failed (refused, reset, timeout, ...); None when it did not.
        self.integration_error: str | None = None
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
        # The client went away before its response was all sent.
        self.client_closed = False
        # The function a function integration invoked, for the access log.
        self.function_name: str | None = None
        # A non-proxy function's errorMessage, which its integration responses are selected by.
        self.function_error: str | None = None
        # Why a request validator refused the request, for the access log.
        self.validation_error: str | None = None
        # The backend request's path when parameter mapping overwrote it (else the uri's own).
        self.integration_path: str | None = None
        # The CORS policy of the route (or API) the request reached; None: no Access-Control-* lines.
        self.cors: CorsPolicy | None = None
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
        config load; the pipeline entry puts them on the response.
        """
        self.extra_header_lines += lines
