"""gwd import: API Gateway's own exports (a REST API in Swagger 2.0, an HTTP API in OpenAPI 3.0) become configs that serve."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from backend import Backend
from support import ROOT, request

DOCUMENTS = ROOT / "tests" / "openapi"
# The PetStore's DynamoDB route signs with the daemon's keys: any will do for checking and serving the other routes.
AWS_KEYS = {"AWS_ACCESS_KEY_ID": "AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY": "not-a-real-secret"}


def gwd(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gwd", *args], capture_output=True, text=True, cwd=ROOT, timeout=60, env={**os.environ, **AWS_KEYS}
    )


@pytest.fixture(scope="module")
def backend():
    with Backend() as running:
        yield running


def imported(tmp_path: Path, document: str, backend: Backend, *args: str) -> tuple[Path, str]:
    """The config ``gwd import`` wrote for a test document pointed at ``backend``, and what it said on stderr."""
    source = tmp_path / document
    source.write_text((DOCUMENTS / document).read_text().replace("BACKEND", f"127.0.0.1:{backend.port}"))
    output = tmp_path / "imported.toml"
    result = gwd("import", str(source), "-o", str(output), *args)
    assert result.returncode == 0, result.stderr
    checked = gwd("check", "-c", str(output))
    assert checked.returncode == 0, checked.stderr + output.read_text()
    return output, result.stderr


def test_a_rest_api_export_serves_its_routes(tmp_path, backend, start_daemon, monkeypatch):
    config, stderr = imported(tmp_path, "petstore-rest.yaml", backend)
    # What gwd has no setting for is named, one line each, with its JSON pointer.
    source = tmp_path / "petstore-rest.yaml"
    assert stderr.splitlines() == [
        f"{source}: not imported: /x-amazon-apigateway-policy: not carried over (gwd has no such setting)",
        f"{source}: not imported: /paths/~1orders/post/x-amazon-apigateway-integration/credentials: gwd signs with its own "
        "credentials (integration.credentials, default the daemon's AWS_* variables), not a role",
    ]
    assert 'service = "dynamodb"\nregion = "us-east-1"\naction = "PutItem"' in config.read_text()
    for name, value in AWS_KEYS.items():
        monkeypatch.setenv(name, value)  # the daemon inherits them
    daemon = start_daemon(config.read_text().replace("[models]", f'[server]\nstate_dir = "{tmp_path}/state"\n\n[models]', 1))
    # basePath /test is the REST API's stage.
    welcome = request(daemon.port, "GET", "/test/")
    assert welcome.status == 200 and welcome.headers["content-type"] == "text/html"
    assert request(daemon.port, "GET", "/test").body == welcome.body
    assert welcome.body == b"<html><body><h1>Welcome to the PetStore</h1></body></html>"
    before = len(backend.received)
    pets = request(daemon.port, "GET", "/test/pets?type=dog&page=2")
    assert pets.status == 200 and pets.headers["access-control-allow-origin"] == "*"
    assert backend.received[-1].raw_path in ("/petstore/pets?type=dog&page=2", "/petstore/pets?page=2&type=dog")
    one = request(daemon.port, "GET", "/test/pets/7")
    assert one.status == 200 and backend.received[-1].raw_path == "/petstore/pets/7"
    # The request validator: the required query parameter, checked before the backend.
    missing = request(daemon.port, "GET", "/test/pets")
    assert missing.status == 400 and orjson.loads(missing.body)["message"] == "Missing required request parameters: [type]"
    # An API key is required, and the API's own DEFAULT_4XX answer says so.
    refused = request(daemon.port, "POST", "/test/pets", {"Content-Type": "application/json"})
    assert refused.status == 403 and orjson.loads(refused.body) == {"message": "Forbidden", "from": "petstore"}
    assert refused.headers["access-control-allow-origin"] == "*"
    assert len(backend.received) == before + 2


def test_an_http_api_export_serves_functions_proxies_cors_and_jwt(tmp_path, backend, start_daemon):
    config, stderr = imported(
        tmp_path, "http-api.json", backend, "--function", "itemsFn=echo:handler", "--code-dir", str(ROOT / "tests" / "lambda_handlers")
    )
    assert "/paths/~1queue/post/x-amazon-apigateway-integration: a aws_proxy SQS-SendMessage integration" in stderr
    daemon = start_daemon(config.read_text())
    event = orjson.loads(request(daemon.port, "GET", "/items/5").body)["event"]
    assert event["version"] == "2.0" and event["pathParameters"] == {"id": "5"} and event["routeKey"] == "ANY /items/{id}"
    assert request(daemon.port, "GET", "/items").status == 200 and backend.received[-1].raw_path == "/items"
    assert request(daemon.port, "DELETE", "/anything/deep").status == 200
    assert backend.received[-1].method == "DELETE" and backend.received[-1].raw_path == "/anything/deep"
    preflight = request(
        daemon.port, "OPTIONS", "/items", {"Origin": "https://app.example.com", "Access-Control-Request-Method": "GET"}
    )
    assert preflight.status == 204 and preflight.headers["access-control-allow-origin"] == "https://app.example.com"
    assert preflight.headers["access-control-max-age"] == "300"
    assert request(daemon.port, "GET", "/private/orders").status == 401


def test_a_function_without_its_handler_is_named_and_strict_writes_nothing(tmp_path, backend):
    source = tmp_path / "http-api.json"
    source.write_text((DOCUMENTS / "http-api.json").read_text())
    result = gwd("import", str(source))
    assert result.returncode == 0
    assert "function itemsFn: handler lambda_function.lambda_handler assumed; name it with --function itemsFn=module:function" in result.stderr
    assert 'handler = "lambda_function.lambda_handler"' in result.stdout
    output = tmp_path / "strict.toml"
    strict = gwd("import", str(source), "--strict", "-o", str(output))
    assert strict.returncode == 78 and "not carried over (--strict); nothing written" in strict.stderr
    assert not output.exists()


@pytest.mark.parametrize(
    "text, problem",
    [("{not json", "neither JSON nor YAML"), ("openapi: 4.0.0\npaths: {}\n", "is not 2.0 or 3.0"), ("a: 1\n", "not an OpenAPI document")],
)
def test_what_is_no_openapi_document_is_refused(tmp_path, text, problem):
    source = tmp_path / "doc.yaml"
    source.write_text(text)
    result = gwd("import", str(source))
    assert result.returncode == 78 and problem in result.stderr


@pytest.mark.parametrize(
    "document, export_format, extra",
    [
        ("petstore-rest.yaml", "swagger", ()),
        ("http-api.json", "oas30", ("--function", "itemsFn=echo:handler", "--code-dir", str(ROOT / "tests" / "lambda_handlers"))),
    ],
)
def test_import_export_import_gives_the_same_file(tmp_path, backend, document, export_format, extra):
    first, _ = imported(tmp_path, document, backend, *extra)
    exported = tmp_path / "exported.json"
    result = gwd("export", "-c", str(first), "--format", export_format, "--aws-extensions", "-o", str(exported))
    assert result.returncode == 0 and result.stderr == "", result.stderr
    second = tmp_path / "again.toml"
    again = gwd("import", str(exported), "-o", str(second), *extra)
    assert again.returncode == 0
    assert second.read_text() == first.read_text()


def test_export_describes_the_api_and_names_what_it_cannot_say(tmp_path, backend):
    config = tmp_path / "gwd.toml"
    config.write_text(
        f"""
[[stages]]
name = "prod"
variables = {{ color = "blue" }}

[[routes]]
route = "GET /pets/{{id}}"
integration = {{ type = "http", uri = "http://127.0.0.1:{backend.port}/pets/{{id}}" }}
client_throttle = {{ rate = 10, burst = 10 }}

[[routes]]
route = "$default"
integration = {{ type = "mock" }}
"""
    )
    result = gwd("export", "-c", str(config))
    assert result.returncode == 0
    document = orjson.loads(result.stdout)
    assert document["openapi"] == "3.0.1" and document["servers"][0]["variables"]["basePath"]["default"] == "prod"
    operation = document["paths"]["/pets/{id}"]["get"]
    assert operation["parameters"] == [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}]
    assert "x-amazon-apigateway" not in result.stdout  # only with --aws-extensions
    assert result.stderr.splitlines() == [
        f"{config}: not exported: stage prod: its variables (a stage's settings, not the API's)",
        f"{config}: not exported: route GET /pets/{{id}}: throttle",
        f"{config}: not exported: route $default: OpenAPI has no catch-all route (use ANY /{{proxy+}})",
    ]


def test_a_lambda_authorizer_with_simple_responses_becomes_a_request_authorizer_and_others_leave_their_routes_out(tmp_path, backend, start_daemon):
    config, stderr = imported(tmp_path, "http-api-authorizers.yaml", backend, "--function", "gateFn=tests.authorizer_function:decide")
    text = config.read_text()
    assert 'function = "tests.authorizer_function:decide"' in text and 'identity_sources = [\n    "header:Authorization",\n]' in text
    assert 'route = "GET /legacy"' not in text  # served without its token authorizer it would be open to anyone
    assert "/paths/~1legacy/get: left out: served without its authorizer it would be open to anyone" in stderr
    daemon = start_daemon(text)
    assert request(daemon.port, "GET", "/orders", {"Authorization": "let-me-in"}).status == 200
    assert request(daemon.port, "GET", "/orders", {"Authorization": "not-me"}).status == 403
    assert request(daemon.port, "GET", "/legacy").status == 404


def test_stage_variables_a_document_uses_get_placeholders_to_replace(tmp_path):
    source = tmp_path / "doc.json"
    integration = {"type": "http_proxy", "httpMethod": "GET", "uri": "http://${stageVariables.backend}/a", "payloadFormatVersion": "1.0"}
    source.write_bytes(orjson.dumps({"openapi": "3.0.1", "info": {"title": "t", "version": "1"},
                                     "paths": {"/a": {"get": {"x-amazon-apigateway-integration": integration}}}}))
    output = tmp_path / "out.toml"
    result = gwd("import", str(source), "-o", str(output))
    assert result.returncode == 0
    assert "(the document): stage variables backend: their values are the stage's" in result.stderr
    assert 'variables = { backend = "CHANGE-ME-backend" }' in output.read_text()
    assert gwd("check", "-c", str(output)).returncode == 0
