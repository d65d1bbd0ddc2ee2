"""``gwd import``: an OpenAPI 2.0 or 3.0 document exported from API Gateway, as a gwd config.

The document's ``paths`` become routes and its ``x-amazon-apigateway-*``
extensions their integrations, authorizers, validators and the API's own
settings, as gwd's config spells them.  What cannot be carried over is
never dropped silently: each such thing is a :class:`Dropped` line with its
JSON pointer and why, printed by ``gwd import`` (and, with ``--strict``,
an error).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import yaml

from gwd.config.keys import BY_TABLE
from gwd.config.model import HTTP_METHODS

DEFAULT_HANDLER = "lambda_function.lambda_handler"
"""A function's handler when ``--function`` names none: the Lambda console's default, for the user to check."""

_METHODS = {method.lower(): method for method in HTTP_METHODS}
_ANY = "x-amazon-apigateway-any-method"
_HANDLED_API_EXTENSIONS = {
    "x-amazon-apigateway-binary-media-types",
    "x-amazon-apigateway-cors",
    "x-amazon-apigateway-request-validators",
    "x-amazon-apigateway-request-validator",
    "x-amazon-apigateway-gateway-responses",
    "x-amazon-apigateway-api-key-source",
    "x-amazon-apigateway-importexport-version",
}
_HANDLED_OPERATION_EXTENSIONS = {"x-amazon-apigateway-integration", "x-amazon-apigateway-request-validator"}
_LAMBDA_NAME = re.compile(r"(?:^|:function:)([A-Za-z0-9_-]+)(?::[A-Za-z0-9_$-]+)?(?:/invocations)?$")
_VALIDATORS = {(True, True): "all", (True, False): "body", (False, True): "params"}
_GATEWAY_RESPONSE_TYPES = re.compile(r"^[A-Z_0-9]+$")


class DocumentError(ValueError):
    """The document cannot be read as an OpenAPI 2.0 or 3.0 document at all."""


@dataclass(frozen=True, slots=True)
class Dropped:
    """Something of the document the config does not carry: where (a JSON pointer) and why."""

    pointer: str
    why: str

    def __str__(self) -> str:
        return f"{self.pointer or '(the document)'}: {self.why}"


def load_document(text: str) -> dict[str, Any]:
    """A JSON or YAML document (YAML's safe loader: no tags that run code)."""
    try:
        document = json.loads(text) if text.lstrip().startswith("{") else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise DocumentError(f"neither JSON nor YAML: {exc}") from None
    if not isinstance(document, dict) or not ("swagger" in document or "openapi" in document):
        raise DocumentError('not an OpenAPI document (no "swagger" or "openapi" field)')
    if not str(document.get("swagger", document.get("openapi", ""))).startswith(("2.", "3.")):
        raise DocumentError(f"OpenAPI {document.get('swagger') or document.get('openapi')} is not 2.0 or 3.0")
    return document


def import_document(
    document: dict[str, Any], stage: str | None, functions: dict[str, str], code_dir: str, api: str | None = None
) -> tuple[dict[str, Any], list[Dropped]]:
    """The gwd API file (as TOML-ready data) for ``document``, and what it could not carry.

    ``stage`` None: the document's own base path names it (a REST export's
    ``basePath`` is its stage, ``/prod``), else ``$default``.  ``api`` None:
    the API is named after the document's title.
    """
    config, dropped = _Importer(document, stage or document_stage(document), functions, code_dir).run()
    name = api or _API_NAME_UNFIT.sub("-", str((document.get("info") or {}).get("title") or "")).strip("-")[:128]
    return ({"name": name, **config} if name else config), dropped


_API_NAME_UNFIT = re.compile(r"[^A-Za-z0-9_-]+")
"""What an API name cannot hold, replaced by "-" in a title made a name."""


def document_stage(document: dict[str, Any]) -> str:
    """The stage a document's base path names: Swagger's ``basePath``, or the ``basePath`` variable of its first server."""
    if "swagger" in document:
        base_path = document.get("basePath", "")
    else:
        servers = document.get("servers") or [{}]
        base_path = ((servers[0].get("variables") or {}).get("basePath") or {}).get("default", "")
    return str(base_path).strip("/") or "$default"


def _pointer(*parts: str) -> str:
    return "/" + "/".join(part.replace("~", "~0").replace("/", "~1") for part in parts)


def _child(pointer: str, key: str) -> str:
    """``pointer``'s member ``key``, escaped as JSON pointers escape "/" and "~"."""
    return pointer + _pointer(key)


class _Importer:
    def __init__(self, document: dict[str, Any], stage: str, functions: dict[str, str], code_dir: str) -> None:
        self.document = document
        self.stage = stage
        self.functions = functions
        self.code_dir = code_dir
        self.dropped: list[Dropped] = []
        self.swagger = "swagger" in document
        self.schemes = (document.get("securityDefinitions") if self.swagger else document.get("components", {}).get("securitySchemes")) or {}
        self.validators = document.get("x-amazon-apigateway-request-validators") or {}
        self.authorizers: dict[str, dict[str, Any]] = {}

    def drop(self, pointer: str, why: str) -> None:
        self.dropped.append(Dropped(pointer, why))

    def run(self) -> tuple[dict[str, Any], list[Dropped]]:
        config: dict[str, Any] = {}
        self._api_settings(config)
        stage: dict[str, Any] = {"name": self.stage}
        # A document says which stage variables it uses, never their values: the stage gets placeholders to replace.
        used = sorted(set(_STAGE_VARIABLE.findall(json.dumps(self.document))))
        if used:
            stage["variables"] = {name: f"CHANGE-ME-{name}" for name in used}
            why = "their values are the stage's, not the document's: replace the CHANGE-ME values in [[stages]]"
            self.drop("", f"stage variables {', '.join(used)}: {why}")
        config["stages"] = [stage]
        routes = []
        for path, item in (self.document.get("paths") or {}).items():
            if not isinstance(item, dict):
                continue
            for key, operation in item.items():
                pointer = _pointer("paths", path, key)
                if key == _ANY:
                    method = "ANY"
                elif key in _METHODS:
                    method = _METHODS[key]
                elif key.startswith("x-amazon-apigateway"):
                    self.drop(pointer, "not carried over (gwd has no such setting)")
                    continue
                else:
                    continue  # "parameters", "summary" and the like: documentation
                route = self._route(method, path, operation, pointer)
                if route is not None:
                    routes.append(route)
        if self.authorizers:
            config["authorizers"] = list(self.authorizers.values())
        # The models a route's validator uses; the others only document the API.
        models = self._models()
        used = {name for route in routes for name in (route.get("request_model") or {}).values()}
        if used:
            config["models"] = {name: models[name] for name in models if name in used}
        config["routes"] = routes
        return config, self.dropped

    # The API

    def _api_settings(self, config: dict[str, Any]) -> None:
        document = self.document
        for key in document:
            if key.startswith("x-amazon-apigateway") and key not in _HANDLED_API_EXTENSIONS:
                self.drop(_pointer(key), "not carried over (gwd has no such setting)")
        binary = document.get("x-amazon-apigateway-binary-media-types")
        if binary:
            config["binary_media_types"] = [media.replace("~1", "/") for media in binary]
        cors = document.get("x-amazon-apigateway-cors")
        if cors:
            config["cors"] = self._cors(cors)
        source = document.get("x-amazon-apigateway-api-key-source")
        if source not in (None, "HEADER"):
            self.drop(_pointer("x-amazon-apigateway-api-key-source"), f"{source}: gwd reads API keys from the x-api-key header only")
        responses = document.get("x-amazon-apigateway-gateway-responses") or {}
        gateway_responses = {}
        for kind, response in responses.items():
            pointer = _pointer("x-amazon-apigateway-gateway-responses", kind)
            if not _GATEWAY_RESPONSE_TYPES.match(kind) or not isinstance(response, dict):
                self.drop(pointer, "not a gateway response type")
                continue
            entry: dict[str, Any] = {}
            if "statusCode" in response:
                entry["status"] = int(response["statusCode"])
            headers = {}
            for name, value in self._header_values(response.get("responseParameters") or {}, "gatewayresponse.header.", pointer).items():
                # gwd's gateway responses take values as they are; AWS quotes a literal ('*') and names anything else.
                if len(value) >= 2 and value[0] == value[-1] == "'":
                    headers[name] = value[1:-1]
                else:
                    self.drop(_child(_child(pointer, "responseParameters"), "gatewayresponse.header." + name), f"{value}: gwd takes literal values only")
            if headers:
                entry["headers"] = headers
            templates = response.get("responseTemplates") or {}
            if "application/json" in templates:
                entry["template"] = templates["application/json"]
            for media in set(templates) - {"application/json"}:
                self.drop(_pointer("x-amazon-apigateway-gateway-responses", kind, "responseTemplates", media), "gwd answers gateway errors in JSON only")
            gateway_responses[kind] = entry
        if gateway_responses:
            config["gateway_responses"] = gateway_responses

    def _cors(self, cors: dict[str, Any]) -> dict[str, Any]:
        names = {
            "allowOrigins": "allow_origins", "allowMethods": "allow_methods", "allowHeaders": "allow_headers",
            "exposeHeaders": "expose_headers", "maxAge": "max_age", "allowCredentials": "allow_credentials",
        }
        table = {}
        for key, value in cors.items():
            if key in names:
                if not BY_TABLE["cors"][names[key]].is_default(value):  # gwd's own default goes unsaid
                    table[names[key]] = value
            else:
                self.drop(_pointer("x-amazon-apigateway-cors", key), "not a CORS setting gwd knows")
        return table

    def _models(self) -> dict[str, str]:
        schemas = (self.document.get("definitions") if self.swagger else self.document.get("components", {}).get("schemas")) or {}
        return {name: json.dumps(_inlined(schema, schemas, (name,)), sort_keys=True) for name, schema in schemas.items()}

    # Routes

    def _route(self, method: str, path: str, operation: Any, pointer: str) -> dict[str, Any] | None:
        if not isinstance(operation, dict):
            return None
        for key in operation:
            if key.startswith("x-amazon-apigateway") and key not in _HANDLED_OPERATION_EXTENSIONS:
                self.drop(_child(pointer, key), "not carried over (gwd has no such setting)")
        integration = operation.get("x-amazon-apigateway-integration")
        if not isinstance(integration, dict):
            self.drop(pointer, "no x-amazon-apigateway-integration: the operation has no backend to import")
            return None
        route: dict[str, Any] = {"route": f"{method} {path}"}
        converted = self._integration(integration, method, f"{pointer}/x-amazon-apigateway-integration")
        if converted is None:
            return None
        route["integration"] = converted
        security = operation.get("security", self.document.get("security")) or []
        for requirement in security:
            for scheme in requirement:
                if not self._security(route, scheme, requirement[scheme], f"{pointer}/security"):
                    self.drop(pointer, "left out: served without its authorizer it would be open to anyone")
                    return None
        self._validation(route, operation, pointer)
        return route

    def _security(self, route: dict[str, Any], name: str, scopes: list[str], pointer: str) -> bool:
        """Put the scheme's requirement on the route; False when gwd cannot check it (the route must then not be served)."""
        scheme = self.schemes.get(name)
        if not isinstance(scheme, dict):
            self.drop(_child(pointer, name), "no security scheme of that name")
            return False
        authorizer = scheme.get("x-amazon-apigateway-authorizer")
        if scheme.get("type") == "apiKey" and authorizer is None:
            if scheme.get("name", "").lower() == "x-api-key" and scheme.get("in") == "header":
                route["api_key_required"] = True
                return True
            self.drop(_child(pointer, name), "an API key outside the x-api-key header")
            return False
        kind = str(authorizer.get("type", "")).lower() if isinstance(authorizer, dict) else ""
        if kind == "request" and authorizer.get("enableSimpleResponses") and str(authorizer.get("authorizerPayloadFormatVersion")) == "2.0":
            return self._function_authorizer(route, name, authorizer, _child(pointer, name))
        if kind != "jwt":
            why = "gwd's request authorizers answer as HTTP APIs' simple responses (payload 2.0), not with IAM policies"
            self.drop(_child(pointer, name), f"a {kind or scheme.get('type')} authorizer: {why}")
            return False
        if name not in self.authorizers:
            settings = authorizer.get("jwtConfiguration") or {}
            issuer = settings.get("issuer", "")
            self.authorizers[name] = {
                "name": name,
                "type": "jwt",
                "issuer": issuer,
                "audience": list(settings.get("audience") or []),
                # AWS finds the keys by OpenID discovery; the usual place of the issuer's key set.
                "jwks_uri": issuer.rstrip("/") + "/.well-known/jwks.json",
            }
            source = authorizer.get("identitySource", "$request.header.Authorization")
            header = str(source).removeprefix("$request.header.")
            if header != "Authorization":
                self.authorizers[name]["header"] = header
        route["authorizer"] = name
        if scopes:
            route["scopes"] = list(scopes)
        return True

    def _function_authorizer(self, route: dict[str, Any], name: str, authorizer: dict[str, Any], pointer: str) -> bool:
        """An HTTP API Lambda authorizer with simple responses: a request authorizer running the function's handler."""
        function = _function_name(str(authorizer.get("authorizerUri", "")))
        handler = self.functions.get(function or "") or self.functions.get(str(authorizer.get("authorizerUri", "")))
        if function is None or handler is None:
            self.drop(pointer, f"Lambda authorizer {function or '?'}: name its handler with --function {function or 'NAME'}=module:function")
            return False
        if name not in self.authorizers:
            sources = authorizer.get("identitySource") or []
            identity = [_identity_source(source) for source in (sources if isinstance(sources, list) else str(sources).split(","))]
            self.authorizers[name] = {"name": name, "type": "request", "function": handler, "identity_sources": identity}
            ttl = authorizer.get("authorizerResultTtlInSeconds")
            if ttl is not None and int(ttl) != round(BY_TABLE["request_authorizer"]["ttl"].default):
                self.authorizers[name]["ttl"] = f"{int(ttl)}s"
        route["authorizer"] = name
        return True

    def _validation(self, route: dict[str, Any], operation: dict[str, Any], pointer: str) -> None:
        validator_name = operation.get("x-amazon-apigateway-request-validator", self.document.get("x-amazon-apigateway-request-validator"))
        if validator_name is None:
            return
        validator = self.validators.get(validator_name)
        if not isinstance(validator, dict):
            self.drop(f"{pointer}/x-amazon-apigateway-request-validator", f"no request validator named {validator_name!r}")
            return
        body, params = bool(validator.get("validateRequestBody")), bool(validator.get("validateRequestParameters"))
        if (body, params) == (False, False):
            return
        required = [
            f"{parameter['in'].replace('query', 'querystring')}.{parameter['name']}"
            for parameter in operation.get("parameters") or []
            if isinstance(parameter, dict) and parameter.get("required") and parameter.get("in") in ("query", "header")
        ]
        models = self._request_models(operation) if body else {}
        # What would check nothing is left out: gwd refuses a validator without its parameters or models.
        body, params = body and bool(models), params and bool(required)
        if not (body or params):
            return
        route["request_validator"] = _VALIDATORS[body, params]
        if params:
            route["required_parameters"] = required
        if body:
            route["request_model"] = models

    def _request_models(self, operation: dict[str, Any]) -> dict[str, str]:
        if self.swagger:
            body = next((p for p in operation.get("parameters") or [] if isinstance(p, dict) and p.get("in") == "body"), None)
            ref = ((body or {}).get("schema") or {}).get("$ref", "")
            media = (operation.get("consumes") or self.document.get("consumes") or ["application/json"])[0]
            return {media: ref.rsplit("/", 1)[-1]} if ref else {}
        content = ((operation.get("requestBody") or {}).get("content")) or {}
        return {
            media: ((entry or {}).get("schema") or {}).get("$ref", "").rsplit("/", 1)[-1]
            for media, entry in content.items()
            if ((entry or {}).get("schema") or {}).get("$ref")
        }

    # Integrations

    def _integration(self, integration: dict[str, Any], method: str, pointer: str) -> dict[str, Any] | None:
        kind = str(integration.get("type", "")).lower()
        uri = integration.get("uri", "")
        timeout = integration.get("timeoutInMillis")
        converted: dict[str, Any]
        if kind in ("http_proxy", "http"):
            converted = {"type": "http", "uri": uri}
            backend_method = str(integration.get("httpMethod", method)).upper()
            if backend_method not in (method, "ANY"):
                converted["method"] = backend_method
            parameters = dict(integration.get("requestParameters") or {})
            for name, value in list(parameters.items()):
                # A uri slot filled from a path parameter of another name is that parameter's slot.
                slot, source = name.removeprefix("integration.request.path."), str(value).removeprefix("method.request.path.")
                if name != slot and value != source and "{" + slot + "}" in uri:
                    converted["uri"] = converted["uri"].replace("{" + slot + "}", "{" + source + "}")
                    del parameters[name]
            if parameters:
                converted["request_parameters"] = {name: str(value) for name, value in parameters.items()}
            if integration.get("responseParameters") and kind == "http_proxy":
                converted["response_parameters"] = dict(integration["responseParameters"])
        elif kind in ("aws_proxy", "aws") and (":lambda:" in uri or uri.startswith("arn:aws:lambda")):
            name = _function_name(uri)
            if name is None:
                self.drop(f"{pointer}/uri", "not a Lambda function ARN")
                return None
            handler = self.functions.get(name) or self.functions.get(uri)
            if handler is None:
                self.drop(f"{pointer}/uri", f"function {name}: handler {DEFAULT_HANDLER} assumed; name it with --function {name}=module:function")
            converted = {"type": "function", "name": name, "handler": handler or DEFAULT_HANDLER, "code_dir": self.code_dir}
            converted["payload_format"] = str(integration.get("payloadFormatVersion", "1.0" if self.swagger or kind == "aws" else "2.0"))
        elif kind == "mock":
            converted = {"type": "mock"}
        elif kind == "aws" and (service := _AWS_SERVICE.match(uri)):
            region, name, how, target = service.groups()
            converted = {"type": "aws", "service": name, "region": region}
            if how == "action":
                converted["action"] = target
            else:
                converted["path"] = "/" + target.lstrip("/")
                converted["method"] = str(integration.get("httpMethod", "GET")).upper()
            if integration.get("credentials"):
                why = "gwd signs with its own credentials (integration.credentials, default the daemon's AWS_* variables), not a role"
                self.drop(_child(pointer, "credentials"), why)
        else:
            subtype = integration.get("integrationSubtype")
            what = f"{kind} {subtype}" if subtype else kind or "missing"
            self.drop(pointer, f"a {what} integration ({uri or 'no uri'}): gwd imports http, http_proxy, aws_proxy to Lambda, aws and mock")
            return None
        if timeout is not None and int(timeout) != round(BY_TABLE["http"]["timeout"].default * 1000):
            converted["timeout"] = f"{int(timeout)}ms"
        if kind in ("http", "aws", "mock"):
            self._mapping(converted, integration, pointer)
        for key in set(integration) - _INTEGRATION_KEYS:
            self.drop(_child(pointer, key), "not carried over")
        return converted

    def _mapping(self, converted: dict[str, Any], integration: dict[str, Any], pointer: str) -> None:
        """A non-proxy integration's templates and integration responses."""
        templates = integration.get("requestTemplates") or {}
        if templates:
            converted["request_templates"] = dict(templates)
        passthrough = str(integration.get("passthroughBehavior") or "").lower()
        if passthrough and passthrough != BY_TABLE["mapping"]["passthrough_behavior"].default:
            converted["passthrough_behavior"] = passthrough
        if integration.get("contentHandling"):
            converted["content_handling"] = str(integration["contentHandling"]).lower()
        responses = []
        for pattern, response in (integration.get("responses") or {}).items():
            entry: dict[str, Any] = {}
            if pattern != "default":
                entry["selection_pattern"] = pattern
            if "statusCode" in response:
                entry["status"] = int(response["statusCode"])
            if response.get("responseTemplates"):
                entry["templates"] = dict(response["responseTemplates"])
            headers = self._header_values(response.get("responseParameters") or {}, "method.response.header.", _child(_child(pointer, "responses"), pattern))
            if headers:
                entry["headers"] = headers
            if response.get("contentHandling"):
                entry["content_handling"] = str(response["contentHandling"]).lower()
            responses.append(entry)
        # gwd tries entries in order and the default last, as AWS picks the default only when no pattern matches.
        responses.sort(key=lambda entry: "selection_pattern" not in entry)
        if responses:
            converted["responses"] = responses

    def _header_values(self, parameters: dict[str, str], prefix: str, pointer: str) -> dict[str, str]:
        headers = {}
        for name, value in parameters.items():
            if name.startswith(prefix):
                headers[name[len(prefix) :]] = value
            else:
                self.drop(_child(_child(pointer, "responseParameters"), name), f"gwd maps response headers only ({prefix}NAME)")
        return headers


_STAGE_VARIABLE = re.compile(r"\$?\{?stageVariables\.([A-Za-z0-9_]+)")
_AWS_SERVICE = re.compile(r"^arn:aws:apigateway:([a-z0-9-]+):([a-z0-9-]+):(action|path)/(.+)$")
"""A REST API's AWS service integration: region, service, whether an action or a path follows, and it."""
_INTEGRATION_KEYS = {
    "type", "uri", "httpMethod", "credentials", "timeoutInMillis", "requestParameters", "responseParameters", "payloadFormatVersion",
    "requestTemplates", "passthroughBehavior", "contentHandling", "responses", "connectionType",
}


def _identity_source(source: str) -> str:
    """An authorizer's identity source as gwd spells it: ``$request.header.X`` is ``header:X``."""
    source = source.strip()
    for prefix, kind in (("$request.header.", "header:"), ("$request.querystring.", "query:"), ("method.request.header.", "header:")):
        if source.startswith(prefix):
            return kind + source[len(prefix) :]
    return "ip" if source == "$context.identity.sourceIp" else source


def _function_name(uri: str) -> str | None:
    """The function's name in a Lambda ARN, or in API Gateway's invocation URI around one."""
    if ":lambda:path/" in uri:
        uri = uri.split("/functions/", 1)[-1]
    found = _LAMBDA_NAME.search(uri)
    return found.group(1) if found else None


def _inlined(schema: Any, schemas: dict[str, Any], within: tuple[str, ...] = ()) -> Any:
    """``schema`` with each reference to another of the document's models replaced by that model (a gwd model stands alone)."""
    if isinstance(schema, dict):
        ref = schema.get("$ref")
        if isinstance(ref, str) and "/" in ref:
            name = ref.rsplit("/", 1)[-1]
            if name in schemas and name not in within:
                return _inlined(schemas[name], schemas, within + (name,))
        return {key: _inlined(value, schemas, within) for key, value in schema.items()}
    if isinstance(schema, list):
        return [_inlined(item, schemas, within) for item in schema]
    return schema
