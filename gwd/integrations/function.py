"""Function integration: an AWS Lambda handler, run by gwd, answers the request.

The request becomes an API Gateway event (payload 1.0 or 2.0, see
:mod:`gwd.functions.events`), the handler runs in the worker
(:mod:`gwd.functions.python`) or in runtime processes
(:mod:`gwd.functions.processes`), and what it returns becomes the response by
AWS's rules (:mod:`gwd.functions.responses`).  Failures answer as AWS's
do: a handler that raised ``500 {"message":"Internal Server Error"}``, an
answer the rules refuse, or a runtime process that died holding it,
``502 {"message":"Internal server error"}``, one
past the timeout ``504``, one over the function's concurrency ``429`` at
once, each with ``integrationError`` set for the access log and metrics.

With mapping keys the integration is non-proxy (AWS's ``AWS`` type): the
event is the request's body as JSON (a request template's output), the
answer is the handler's return value as JSON with status 200, and a handler
that raised answers 200 with AWS's ``{"errorMessage", "errorType",
"stackTrace"}``, its ``errorMessage`` left on the exchange for the route's
integration responses to select by.
"""

from __future__ import annotations

import logging
import time
from bisect import bisect_left
from typing import TYPE_CHECKING, Any, Awaitable, Callable

import orjson

from gwd.config.model import FunctionIntegration, RouteConfig, StageConfig
from gwd.config.values import substitute_stage_variables
from gwd.functions.context import function_environment
from gwd.functions.events import event_builder
from gwd.functions.processes import ProcessDied
from gwd.functions.python import FunctionFailed, FunctionTimedOut
from gwd.functions.responses import MalformedResponse, version1_response, version2_response
from gwd.http.message import Response
from gwd.mapping.binary import BinaryTypes
from gwd.pipeline.errors import GatewayError, whole_body
from gwd.pipeline.exchange import Exchange
from gwd.pipeline.handler import Handler
from gwd.pipeline.resources import Resources
from gwd.telemetry.prometheus import DURATION_BUCKETS

if TYPE_CHECKING:
    from gwd.functions.runtimes import FunctionRuntimes

log = logging.getLogger("gwd.function")

TOO_MANY_REQUESTS = GatewayError(429, "Too Many Requests")
HANDLER_FAILED = GatewayError(500, "Internal Server Error", response_type="INTEGRATION_FAILURE")
NO_VALID_ANSWER = GatewayError(502, "Internal server error", response_type="INTEGRATION_FAILURE")
"""A malformed answer, or a runtime process that died holding the invocation."""
TIMED_OUT = GatewayError(504, "Endpoint request timed out", response_type="INTEGRATION_TIMEOUT")
NOT_JSON = GatewayError(400, "Could not parse request body into json", response_type="BAD_REQUEST_BODY")
_JSON_LINES = b"Content-Type: application/json\r\n"
OUTCOMES = ("success", "error", "timeout", "malformed", "crashed", "throttled")


class FunctionCounts:
    """One function's invocations in this worker since the metrics last flushed them."""

    __slots__ = ("outcomes", "durations", "duration_sum", "cold_starts", "running", "warm")

    def __init__(self) -> None:
        self.outcomes = dict.fromkeys(OUTCOMES, 0)
        self.durations = [0] * (len(DURATION_BUCKETS) + 1)  # per bucket, the last one +Inf
        self.duration_sum = 0.0
        self.cold_starts = 0
        self.running = 0  # invocations running in this worker now
        self.warm = False  # this worker has run the function before

    def observe(self, seconds: float) -> None:
        self.durations[bisect_left(DURATION_BUCKETS, seconds)] += 1
        self.duration_sum += seconds

    def reset(self) -> None:
        self.outcomes = dict.fromkeys(OUTCOMES, 0)
        self.durations = [0] * len(self.durations)
        self.duration_sum = 0.0
        self.cold_starts = 0


def build(route: RouteConfig, stage: StageConfig, resources: Resources) -> Handler:
    """A handler invoking the route's function with each request's event."""
    config = route.integration
    assert isinstance(config, FunctionIntegration) and resources.functions is not None and resources.invocations is not None
    configured = {name: substitute_stage_variables(value, stage) for name, value in config.environment}
    environment = function_environment(config, configured)
    kind = resources.authorizer_kind(route)
    proxy = config.mapping is None
    binary = resources.binary_types
    if proxy:
        make_event = event_builder(config.payload_format, route, stage, kind, resources.trusted_proxies, binary)
    else:
        make_event = _plain_event
    to_response = _response_rules(config.payload_format if proxy else None, binary)
    slots = resources.invocations
    row = slots.row(config.name)
    counts = resources.function_counts.setdefault(config.name, FunctionCounts())
    name, limit, max_body = config.name, config.concurrency, resources.max_body
    call = _caller(config, environment, resources.functions, counts)

    def done() -> None:
        slots.give_back(row)
        counts.running -= 1

    async def invoke(exchange: Exchange) -> Response:
        exchange.function_name = name
        body = await whole_body(exchange.request, max_body)
        event = make_event(exchange, body)
        if not slots.take(row, limit):
            counts.outcomes["throttled"] += 1
            exchange.integration_error = "throttled"
            raise TOO_MANY_REQUESTS
        counts.running += 1
        started = time.perf_counter()
        try:
            response = to_response(await call(event, exchange, done), exchange)
        except FunctionTimedOut as exc:
            log.warning("request %s: function %s %s", exchange.request_id, name, exc)
            raise _failed(exchange, counts, "timeout", TIMED_OUT) from None
        except FunctionFailed as failure:
            if proxy:
                raise _failed(exchange, counts, "error", HANDLER_FAILED) from None
            _failed(exchange, counts, "error", HANDLER_FAILED)
            exchange.function_error = failure.error_message
            document = {"errorMessage": failure.error_message, "errorType": failure.error_type, "stackTrace": []}
            return Response(200, _JSON_LINES, orjson.dumps(document))
        except ProcessDied as exc:
            log.error("request %s: function %s: %s", exchange.request_id, name, exc)
            raise _failed(exchange, counts, "crashed", NO_VALID_ANSWER) from None
        except MalformedResponse as exc:
            log.error("request %s: function %s: malformed Lambda proxy response: %s", exchange.request_id, name, exc)
            raise _failed(exchange, counts, "malformed", NO_VALID_ANSWER) from None
        finally:
            elapsed = time.perf_counter() - started
            exchange.integration_latency = int(elapsed * 1_000_000) / 1000
            counts.observe(elapsed)
        counts.outcomes["success"] += 1
        return response

    return invoke


def _response_rules(payload_format: str | None, binary: BinaryTypes) -> Callable[[Any, Exchange], Response]:
    """How a handler's answer becomes the response: payload 2.0's rules, 1.0's, or (None) a non-proxy one's.

    Payload 1.0 in an API with ``binary_media_types`` follows AWS's REST
    rule: a base64 body is decoded only for a client whose ``Accept`` names
    a binary type first, and is sent as its text otherwise.
    """
    if payload_format is None:
        return lambda result, exchange: _plain_response(result)
    if payload_format == "2.0":
        return lambda result, exchange: version2_response(result)
    if not binary:
        return lambda result, exchange: version1_response(result)
    accept = b"accept"
    return lambda result, exchange: version1_response(result, binary.accepted(exchange.request.headers.text(accept)))


def _plain_event(exchange: Exchange, body: bytes) -> Any:
    """A non-proxy function's event: the (templated) body as JSON, ``{}`` when empty."""
    if not body.strip():
        return {}
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        log.info("request %s: the function's event is not JSON: %s", exchange.request_id, exc)
        raise NOT_JSON from None


def _plain_response(result: Any) -> Response:
    """A non-proxy function's answer: its return value as JSON."""
    try:
        return Response(200, _JSON_LINES, orjson.dumps(result))
    except TypeError as exc:
        raise MalformedResponse(f"the return value is not JSON: {exc}") from None


Call = Callable[[dict[str, Any], Exchange, Callable[[], None]], Awaitable[Any]]


def _caller(config: FunctionIntegration, environment: dict[str, str], runtimes: FunctionRuntimes, counts: FunctionCounts) -> Call:
    """How one invocation runs: ``call(event, exchange, done)``, ``done`` once it has ended."""
    if config.runtime == "python":
        function = runtimes.python(config, environment)

        async def in_worker(event: dict[str, Any], exchange: Exchange, done: Callable[[], None]) -> Any:
            if not counts.warm:  # the module was imported at load: the first call is this worker's cold start
                counts.warm = True
                counts.cold_starts += 1
            return await function.invoke(event, exchange.request_id, environment, done)

        return in_worker

    def started() -> None:
        counts.cold_starts += 1

    pool = runtimes.pool(config, environment, started)

    async def in_process(event: dict[str, Any], exchange: Exchange, done: Callable[[], None]) -> Any:
        try:
            return await pool.invoke(event, exchange.request_id, _amazon_trace_id(exchange))
        finally:
            done()

    return in_process


def _amazon_trace_id(exchange: Exchange) -> str:
    """The request's trace as ``Lambda-Runtime-Trace-Id`` carries it (X-Ray's ``Root=1-XXXXXXXX-...`` form)."""
    trace_id, flags = exchange.trace()
    return f"Root=1-{trace_id[:8]}-{trace_id[8:]};Sampled={1 if flags == '01' else 0}"


def _failed(exchange: Exchange, counts: FunctionCounts, outcome: str, error: GatewayError) -> GatewayError:
    counts.outcomes[outcome] += 1
    exchange.integration_error = outcome
    return error
