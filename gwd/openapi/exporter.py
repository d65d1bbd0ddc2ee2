"""``gwd export``: a config's routes as an OpenAPI document, with API Gateway's extensions on request.

Without ``aws_extensions`` the document describes the API (paths,
parameters, body schemas, security); with them it also carries the
``x-amazon-apigateway-*`` settings :mod:`gwd.openapi.importer` reads, so
``gwd import`` of an export gives back the config it came from.  What a
document cannot say (stage variables, throttles, caches, a mock's own
status and body) is listed, as the importer lists what it drops.
"""

from __future__ import annotations

import json
from typing import Any

from gwd.config.keys import BY_TABLE
from gwd.config.model import (
    ANY_METHOD,
    AwsIntegration,
    DEFAULT_ROUTE,
    DEFAULT_STAGE,
    ApiConfig,
    FunctionIntegration,
    HttpIntegration,
    IntegrationMapping,
    JwtAuthorizer,
    MockIntegration,
    ParameterRule,
    RouteConfig,
)

API_KEY_SCHEME = "api_key"
FUNCTION_ARN = "arn:aws:lambda:us-east-1:000000000000:function:{name}"
"""A function's ARN in an export (gwd's events use the same account number)."""
_VALIDATOR_NAMES = {(True, True): "all", (True, False): "body", (False, True): "params"}
_REST_SOURCES = ("$request.header.", "$request.querystring.", "$request.path.")


def export_document(
    config: ApiConfig, stage: str | None, swagger: bool, aws_extensions: bool, domains: bool = False
) -> tuple[dict[str, Any], list[str]]:
    """The document of one API's ``stage`` (the API's first when None), and what it could not say.

    ``domains``: the daemon maps custom domains (which a document cannot say).
    """
    return _Exporter(config, stage or config.stages[0].name, swagger, aws_extensions, domains).run()


class _Exporter:
    def __init__(self, config: ApiConfig, stage: str, swagger: bool, aws_extensions: bool, domains: bool) -> None:
        self.config = config
        self.domains = domains
        self.stage = stage
        self.swagger = swagger
        self.aws = aws_extensions
        self.notes: list[str] = []
        self.schemes: dict[str, Any] = {}
        self.models: dict[str, Any] = {}
        self.validators: set[str] = set()

    def run(self) -> tuple[dict[str, Any], list[str]]:
        config = self.config
        if not any(stage.name == self.stage for stage in config.stages):
            raise ValueError(f"API {config.name!r} has no stage {self.stage!r}")
        title = config.name
        base_path = "" if self.stage == DEFAULT_STAGE else "/" + self.stage
        document: dict[str, Any]
        if self.swagger:
            document = {"swagger": "2.0", "info": {"title": title, "version": "1.0"}, "basePath": base_path or "/"}
        else:
            document = {
                "openapi": "3.0.1",
                "info": {"title": title, "version": "1.0"},
                "servers": [{"url": "/{basePath}", "variables": {"basePath": {"default": base_path.lstrip("/")}}}],
            }
        for stage in config.stages:
            if stage.name == self.stage and stage.variables:
                self.notes.append(f"stage {stage.name}: its variables (a stage's settings, not the API's)")
        paths: dict[str, dict[str, Any]] = {}
        for route in config.routes:
            if route.key.method == DEFAULT_ROUTE:
                self.notes.append("route $default: OpenAPI has no catch-all route (use ANY /{proxy+})")
                continue
            path = str(route.key).split(" ", 1)[1]
            method = "x-amazon-apigateway-any-method" if route.key.method == ANY_METHOD else route.key.method.lower()
            paths.setdefault(path, {})[method] = self._operation(route)
        document["paths"] = paths
        if self.models:
            if self.swagger:
                document["definitions"] = self.models
            else:
                document.setdefault("components", {})["schemas"] = self.models
        if self.schemes:
            if self.swagger:
                document["securityDefinitions"] = self.schemes
            else:
                document.setdefault("components", {})["securitySchemes"] = self.schemes
        if self.aws:
            self._api_extensions(document)
        return document, self.notes

    def _api_extensions(self, document: dict[str, Any]) -> None:
        config = self.config
        if config.binary_media_types:
            document["x-amazon-apigateway-binary-media-types"] = list(config.binary_media_types)
        if config.cors is not None:
            cors = config.cors
            defaults = BY_TABLE["cors"]
            values = {
                "allowOrigins": ("allow_origins", list(cors.allow_origins)),
                "allowMethods": ("allow_methods", list(cors.allow_methods)),
                "allowHeaders": ("allow_headers", list(cors.allow_headers)),
                "exposeHeaders": ("expose_headers", list(cors.expose_headers)),
                "maxAge": ("max_age", cors.max_age),
                "allowCredentials": ("allow_credentials", cors.allow_credentials),
            }
            document["x-amazon-apigateway-cors"] = {name: value for name, (key, value) in values.items() if not defaults[key].is_default(value)}
        if self.validators:
            document["x-amazon-apigateway-request-validators"] = {
                name: {"validateRequestBody": body, "validateRequestParameters": params}
                for (body, params), name in _VALIDATOR_NAMES.items()
                if name in self.validators
            }
        responses = {}
        for response in config.gateway_responses:
            entry: dict[str, Any] = {}
            if response.status is not None:
                entry["statusCode"] = str(response.status)
            if response.headers:
                entry["responseParameters"] = {f"gatewayresponse.header.{name}": f"'{value}'" for name, value in response.headers}
            if response.template is not None:
                entry["responseTemplates"] = {"application/json": response.template.text}
            responses[response.response_type] = entry
        if responses:
            document["x-amazon-apigateway-gateway-responses"] = responses
        for note, present in (
            ("compression (no API Gateway export setting carries it)", config.compression is not None),
            ("domains (custom domain names are outside an API's document)", self.domains),
        ):
            if present:
                self.notes.append(note)

    # Operations

    def _operation(self, route: RouteConfig) -> dict[str, Any]:
        operation: dict[str, Any] = {}
        where = f"route {route.key}"
        parameters: list[dict[str, Any]] = [self._parameter(name, "path") for name in route.key.param_names]
        validation = route.validation
        if validation is not None:
            parameters += [self._parameter(name, kind.replace("querystring", "query")) for kind, name in validation.required if kind != "path"]
            models = dict(validation.models)
            for model in models.values():
                self.models[model.name] = json.loads(model.schema)
            if models:
                if self.swagger:
                    media, model = next(iter(models.items()))
                    operation["consumes"] = [media]
                    parameters.append({"name": model.name, "in": "body", "required": True, "schema": {"$ref": f"#/definitions/{model.name}"}})
                else:
                    content = {media: {"schema": {"$ref": f"#/components/schemas/{model.name}"}} for media, model in models.items()}
                    operation["requestBody"] = {"content": content}
            name = _VALIDATOR_NAMES[validation.body and bool(models), validation.params and bool(validation.required)]
            self.validators.add(name)
            if self.aws:
                operation["x-amazon-apigateway-request-validator"] = name
        if parameters:
            operation["parameters"] = parameters
        operation["responses"] = {"200": {"description": "OK"}} if self.swagger else {"default": {"description": "OK"}}
        security = self._security(route, where)
        if security:
            operation["security"] = [security]
        for what, present in (
            ("throttle", route.throttle is not None or route.client_throttle is not None),
            ("cache", route.cache is not None),
            ("allow/deny lists", bool(route.allow or route.deny)),
            ("its own cors table", route.cors is not None),
        ):
            if present:
                self.notes.append(f"{where}: {what}")
        if self.aws:
            integration = self._integration(route, where)
            if integration is not None:
                operation["x-amazon-apigateway-integration"] = integration
        return operation

    def _parameter(self, name: str, where: str) -> dict[str, Any]:
        if where == "path" and name.endswith("+"):
            name = name[:-1]
        schema = {"type": "string"}
        return {"name": name, "in": where, "required": True, **(schema if self.swagger else {"schema": schema})}

    def _security(self, route: RouteConfig, where: str) -> dict[str, list[str]]:
        requirement: dict[str, list[str]] = {}
        if route.api_key_required:
            self.schemes[API_KEY_SCHEME] = {"type": "apiKey", "name": "x-api-key", "in": "header"}
            requirement[API_KEY_SCHEME] = []
        if route.authorizer is not None:
            authorizer = next(a for a in self.config.authorizers if a.name == route.authorizer)
            if not isinstance(authorizer, JwtAuthorizer):
                self.notes.append(f"{where}: request authorizer {authorizer.name} (API Gateway's are Lambda functions)")
                return requirement
            self.schemes[authorizer.name] = self._jwt_scheme(authorizer)
            requirement[authorizer.name] = list(route.scopes)
        return requirement

    def _jwt_scheme(self, authorizer: JwtAuthorizer) -> dict[str, Any]:
        if authorizer.jwks_uri != authorizer.issuer.rstrip("/") + "/.well-known/jwks.json" or authorizer.public_keys:
            self.notes.append(f"authorizer {authorizer.name}: its keys' location (API Gateway finds them from the issuer)")
        scheme: dict[str, Any] = {"type": "apiKey", "name": authorizer.header, "in": "header"} if self.swagger else {"type": "oauth2", "flows": {}}
        if self.aws:
            scheme["x-amazon-apigateway-authorizer"] = {
                "type": "jwt",
                "identitySource": f"$request.header.{authorizer.header}",
                "jwtConfiguration": {"issuer": authorizer.issuer, "audience": list(authorizer.audience)},
            }
        return scheme

    # Integrations

    def _integration(self, route: RouteConfig, where: str) -> dict[str, Any] | None:
        integration = route.integration
        exported: dict[str, Any]
        if isinstance(integration, HttpIntegration):
            exported = {
                "type": "http" if integration.mapping is not None else "http_proxy",
                "uri": integration.uri,
                "httpMethod": integration.method or route.key.method,
            }
            if integration.timeout != BY_TABLE["http"]["timeout"].default:
                exported["timeoutInMillis"] = round(integration.timeout * 1000)
            if integration.parameters is not None:
                request = [self._parameter_rule(rule) for rule in integration.parameters.request]
                if request:
                    exported["requestParameters"] = dict(request)
                response = [self._parameter_rule(rule) for rule in integration.parameters.response]
                if response:
                    exported["responseParameters"] = dict(response)
        elif isinstance(integration, FunctionIntegration):
            exported = {
                "type": "aws" if integration.mapping is not None else "aws_proxy",
                "httpMethod": "POST",
                "uri": FUNCTION_ARN.format(name=integration.name),
                "payloadFormatVersion": integration.payload_format,
            }
            if integration.timeout != BY_TABLE["function"]["timeout"].default:
                exported["timeoutInMillis"] = round(integration.timeout * 1000)
        elif isinstance(integration, AwsIntegration):
            target = f"action/{integration.action}" if integration.action else f"path{integration.path}"
            exported = {
                "type": "aws",
                "httpMethod": "POST" if integration.action else integration.method,
                "uri": f"arn:aws:apigateway:{integration.region}:{integration.service}:{target}",
            }
            own_endpoint = integration.endpoint.endswith(".amazonaws.com")  # the reader fills in the service's own
            if not own_endpoint or integration.credentials.source != "env":
                self.notes.append(f"{where}: its endpoint and credentials (API Gateway's are the service's own and a role)")
            if integration.timeout != BY_TABLE["aws"]["timeout"].default:
                exported["timeoutInMillis"] = round(integration.timeout * 1000)
        elif isinstance(integration, MockIntegration):
            exported = {"type": "mock"}
            if integration.mapping is None and (integration.status != 200 or integration.body or integration.headers):
                self.notes.append(f"{where}: the mock's own status, headers and body (only templates say them on AWS)")
        if integration.mapping is not None:
            exported.update(_mapping(integration.mapping))
        return exported

    def _parameter_rule(self, rule: ParameterRule) -> tuple[str, str]:
        """A rule as the document's kind of API spells it: REST's ``integration.request.*`` where it can, else HTTP's."""
        value = "".join(rule.value)
        single = len(rule.value) == 1
        if rule.kind == "path" and rule.name or (self.swagger and rule.action == "overwrite" and rule.kind in ("header", "querystring") and single):
            source = rule.value[0] if single else value
            if source.startswith(_REST_SOURCES):
                rest_value = "method." + source[1:]
            elif source.startswith(("$context.", "$stageVariables.")):
                rest_value = source[1:]
            else:
                rest_value = f"'{source}'"
            return f"integration.request.{rule.kind}.{rule.name}", rest_value
        target = f"{rule.kind}.{rule.name}" if rule.name else rule.kind
        return f"{rule.action}:{target}", value


def _mapping(mapping: IntegrationMapping) -> dict[str, Any]:
    exported: dict[str, Any] = {}
    if mapping.request_templates:
        exported["requestTemplates"] = {media: template.text for media, template in mapping.request_templates}
    if mapping.passthrough_behavior != BY_TABLE["mapping"]["passthrough_behavior"].default:
        exported["passthroughBehavior"] = mapping.passthrough_behavior.upper()
    if mapping.content_handling:
        exported["contentHandling"] = mapping.content_handling.upper()
    responses = {}
    for response in mapping.responses:
        entry: dict[str, Any] = {}
        if response.status is not None:
            entry["statusCode"] = str(response.status)
        if response.templates:
            entry["responseTemplates"] = {media: template.text for media, template in response.templates}
        if response.headers:
            entry["responseParameters"] = {f"method.response.header.{name}": value for name, value in response.headers}
        if response.content_handling:
            entry["contentHandling"] = response.content_handling.upper()
        responses[response.selection_pattern if response.selection_pattern is not None else "default"] = entry
    if responses:
        exported["responses"] = responses
    return exported

