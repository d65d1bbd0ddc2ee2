"""Request validation: required parameters and a JSON Schema (draft 4) model for the body, refused at the edge.

A route's ``request_validator`` says what is checked: ``"params"`` (its
``required_parameters``: each a ``querystring.NAME``, ``header.NAME`` or
``path.NAME`` the request must carry), ``"body"`` (the body against the
model its media type names in ``request_model``, ``$default`` for any
other), or ``"all"``.  Failures answer as AWS's do, before anything
reaches the integration: ``400 {"message": "Missing required request
parameters: [q, x-tenant]"}`` and ``400 {"message": "Invalid request
body"}``, the validator's detail in the access log's ``validationError``.

Models are compiled at config load with ``fastjsonschema`` (its draft-4
validator turned into Python code once), so a check costs a function
call; a route that only checks parameters needs no task and reads no body.
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable

import fastjsonschema
import orjson

from gwd.config.model import RouteConfig, StageConfig
from gwd.config.validation import compile_model
from gwd.http.message import Response
from gwd.pipeline.errors import BODY_TOO_LARGE, GatewayError, whole_body
from gwd.pipeline.exchange import Exchange
from gwd.pipeline.handler import Handler
from gwd.pipeline.resources import Resources

INVALID_BODY = GatewayError(400, "Invalid request body", response_type="BAD_REQUEST_BODY")
DEFAULT_MODEL = "$default"


def build(route: RouteConfig, stage: StageConfig, resources: Resources, next_handler: Handler) -> Handler:
    """The route's handler behind its validator (unwrapped when it has none)."""
    validation = route.validation
    if validation is None:
        return next_handler
    required = validation.required if validation.params else ()
    query_names = [name for kind, name in required if kind == "querystring"]
    header_names = [(name, name.lower().encode()) for kind, name in required if kind == "header"]
    path_names = [name for kind, name in required if kind == "path"]
    models = {media: compile_model(orjson.loads(model.schema)) for media, model in validation.models} if validation.body else {}
    max_body = resources.max_body

    def missing_parameters(exchange: Exchange) -> None:
        request = exchange.request
        missing = [name for name in path_names if not exchange.path_params.get(name)]
        if query_names:
            present = {name for name, _ in request.query_items()}
            missing += [name for name in query_names if name not in present]
        missing += [name for name, lowered in header_names if lowered not in request.headers]
        if missing:
            listed = ", ".join(missing)
            exchange.validation_error = f"missing required request parameters: {listed}"
            raise GatewayError(400, f"Missing required request parameters: [{listed}]", response_type="BAD_REQUEST_PARAMETERS")

    if not models:

        def parameters_checked(exchange: Exchange) -> Response | Any:
            missing_parameters(exchange)
            return next_handler(exchange)

        return parameters_checked

    def check_body(exchange: Exchange, check: Callable[[Any], Any], body: bytes) -> Response | Awaitable[Response]:
        try:
            check(orjson.loads(body))
        except orjson.JSONDecodeError as exc:
            exchange.validation_error = f"the body is not JSON: {exc}"
            raise INVALID_BODY from None
        except fastjsonschema.JsonSchemaValueException as exc:
            exchange.validation_error = exc.message
            raise INVALID_BODY from None
        exchange.request = exchange.request.with_body(body)
        return next_handler(exchange)

    async def read_then_check(exchange: Exchange, check: Callable[[Any], Any]) -> Response:
        body = await whole_body(exchange.request, max_body)
        answer = check_body(exchange, check, body)
        return answer if isinstance(answer, Response) else await answer

    def validated(exchange: Exchange) -> Response | Awaitable[Response]:
        """Checked at once when the body is all here (no task of its own), else once it has come."""
        if required:
            missing_parameters(exchange)
        request = exchange.request
        media = request.media_type() or "application/json"
        check = models.get(media) or models.get(DEFAULT_MODEL)
        if check is None:
            return next_handler(exchange)
        if (request.content_length or 0) > max_body:
            raise BODY_TOO_LARGE
        body = request.body.take_complete() if request.has_body else b""
        if body is None:
            return read_then_check(exchange, check)
        return check_body(exchange, check, body)

    return validated
