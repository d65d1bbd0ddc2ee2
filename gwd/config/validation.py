"""Reading models, request validators and gateway responses.

``[models]`` maps a name to a JSON Schema (draft 4, as AWS takes them):
an ``"@file.json"`` (relative to the config), JSON text, or a TOML table.
Each is compiled here with ``fastjsonschema``, so a schema it cannot use
is a config problem.  A route's ``request_validator``, ``request_model``
and ``required_parameters`` are checked against them.
``[gateway_responses.TYPE]`` takes AWS's response types only.
"""

from __future__ import annotations

import difflib
import os
import re
from typing import TYPE_CHECKING, Any, Callable

import fastjsonschema
import orjson

from gwd.config.mapping import template_source
from gwd.config.model import GatewayResponseConfig, Model, RequestValidation
from gwd.config.values import HEADER_NAME

if TYPE_CHECKING:
    from gwd.config.reader import _Table

DRAFT_4 = "http://json-schema.org/draft-04/schema#"
VALIDATORS = ("body", "params", "all")
PARAMETER_KINDS = ("querystring", "header", "path")
RESPONSE_TYPES = (
    "DEFAULT_4XX", "DEFAULT_5XX", "THROTTLED", "QUOTA_EXCEEDED", "INVALID_API_KEY", "ACCESS_DENIED", "UNAUTHORIZED",
    "MISSING_AUTHENTICATION_TOKEN", "RESOURCE_NOT_FOUND", "BAD_REQUEST_BODY", "BAD_REQUEST_PARAMETERS", "REQUEST_TOO_LARGE",
    "UNSUPPORTED_MEDIA_TYPE", "INTEGRATION_FAILURE", "INTEGRATION_TIMEOUT", "AUTHORIZER_FAILURE", "WAF_FILTERED",
)
"""The AWS gateway response types a config may set (WAF_FILTERED is accepted; gwd has no WAF that raises it)."""
_MEDIA_TYPE = re.compile(r"^([A-Za-z0-9!#$&^_.+-]+/[A-Za-z0-9!#$&^_.+*-]+|\$default)$")


def compile_model(schema: dict[str, Any]) -> Callable[[Any], Any]:
    """A draft-4 validator for ``schema`` (fastjsonschema's code, generated once); raises for a schema it cannot use."""
    return fastjsonschema.compile({**schema, "$schema": DRAFT_4})


def read_models(table: _Table, base_dir: str) -> dict[str, Model]:
    """``[models]``: each name's schema, read and compiled."""
    models = {}
    for name in table.names():
        raw = table.get(name, (str, dict), None, 'a schema: "@file.json", JSON text or a table')
        source = table.key_path(name)
        if isinstance(raw, str) and raw.startswith("@"):
            path = os.path.join(base_dir, os.path.expanduser(raw[1:]))
            try:
                with open(path, "rb") as file:
                    raw = file.read()
            except OSError as exc:
                table.problem(name, f"cannot read the schema file {path}: {exc}")
                continue
            source = path
        if isinstance(raw, (str, bytes)):
            try:
                raw = orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                table.problem(name, f"{source}: not JSON: {exc}")
                continue
        if not isinstance(raw, dict):
            table.problem(name, f"{source}: a schema is a JSON object")
            continue
        declared = raw.get("$schema")
        if declared is not None and declared.rstrip("#") != DRAFT_4.rstrip("#"):
            table.problem(name, f"{source}: models are JSON Schema draft 4 (as on AWS), and this says {declared!r}")
            continue
        try:
            compile_model(raw)
        except (fastjsonschema.JsonSchemaDefinitionException, ValueError, TypeError) as exc:
            table.problem(name, f"{source}: not a usable draft-4 schema: {exc}")
            continue
        models[name] = Model(name, orjson.dumps(raw).decode(), source)
    table.finish()
    return models


def read_validation(table: _Table, models: dict[str, Model]) -> RequestValidation | None:
    """A route's ``request_validator``, ``request_model`` and ``required_parameters``, or None when it sets none."""
    validator = table.string("request_validator", None)
    if validator is not None and validator not in VALIDATORS:
        table.problem("request_validator", f"expected one of {', '.join(map(repr, VALIDATORS))}, got {validator!r}")
        validator = None
    chosen = []
    for media, name in table.string_map("request_model").items():
        if not _MEDIA_TYPE.match(media):
            table.problem(f"request_model.{media}", 'expected a media type such as application/json, or "$default"')
        elif name not in models:
            table.problem(f"request_model.{media}", f"no model is named {name!r} in [models]")
        else:
            chosen.append((media.lower(), models[name]))
    required = []
    for entry in table.get("required_parameters", list, [], "an array of strings"):
        kind, _, name = entry.partition(".") if isinstance(entry, str) else ("", "", "")
        if kind not in PARAMETER_KINDS or not HEADER_NAME.match(name):
            table.problem("required_parameters", f'expected "querystring.NAME", "header.NAME" or "path.NAME", got {entry!r}')
            continue
        required.append((kind, name))
    if validator is None:
        if chosen or required:
            what = "request_model" if chosen else "required_parameters"
            table.problem(what, 'is checked by a request_validator ("body", "params" or "all"), and the route names none')
        return None
    if validator in ("body", "all") and not chosen:
        table.problem("request_model", f'missing: request_validator = "{validator}" checks the body against a model')
    if validator in ("params", "all") and not required:
        table.problem("required_parameters", f'missing: request_validator = "{validator}" checks required parameters')
    return RequestValidation(validator in ("body", "all"), validator in ("params", "all"), tuple(chosen), tuple(required))


def read_gateway_responses(table: _Table, base_dir: str) -> tuple[GatewayResponseConfig, ...]:
    """``[gateway_responses.TYPE]`` tables."""
    responses = []
    for response_type in table.names():
        if response_type not in RESPONSE_TYPES:
            near = difflib.get_close_matches(response_type, RESPONSE_TYPES, n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else f" (one of {', '.join(RESPONSE_TYPES)})"
            table.problem(response_type, f"not a gateway response type{hint}")
            table.get(response_type, dict, {}, "a table")
            continue
        entry = table.table(response_type)
        status = entry.get("status", int, None, "an integer")
        if status is not None and not 100 <= status <= 599:
            entry.problem("status", f"must be between 100 and 599, got {status}")
        headers = entry.string_map("headers")
        for name, value in headers.items():
            if not HEADER_NAME.match(name):
                entry.problem(f"headers.{name}", "not a header name")
            elif "\r" in value or "\n" in value:
                entry.problem(f"headers.{name}", "a header value is one line")
        text = entry.string("template", None)
        template = template_source(entry, "template", text, base_dir) if text is not None else None
        entry.finish()
        responses.append(GatewayResponseConfig(response_type, status, tuple(headers.items()), template))
    table.finish()
    return tuple(responses)
