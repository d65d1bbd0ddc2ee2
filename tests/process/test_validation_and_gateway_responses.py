"""Request validators and gateway responses through the real daemon."""

from __future__ import annotations

import subprocess
import sys

import orjson
import pytest
from backend import Backend
from process.test_functions import send
from process.test_rest_integrations import toml_string
from support import ROOT, wait_for

pytestmark = pytest.mark.process

PET = {
    "type": "object",
    "required": ["name", "age"],
    "properties": {"name": {"type": "string", "minLength": 1}, "age": {"type": "integer", "minimum": 0}},
}


def test_validators_refuse_bad_requests_before_the_backend(start_daemon, tmp_path):
    schema = tmp_path / "pet.json"
    schema.write_bytes(orjson.dumps(PET))
    with Backend() as backend:
        config = f"""
[models]
Pet = "@{schema}"
Tag = {{ type = "object", required = ["tag"] }}

[[routes]]
route = "POST /pets"
request_validator = "all"
request_model = {{ "application/json" = "Pet" }}
required_parameters = ["querystring.q", "header.x-tenant"]
integration = {{ type = "http", uri = "{backend.url}/mirror" }}

[[routes]]
route = "POST /tags"
request_validator = "body"
request_model = {{ "$default" = "Tag" }}
required_parameters = ["querystring.ignored"]
integration = {{ type = "http", uri = "{backend.url}/mirror" }}

[[routes]]
route = "GET /search"
request_validator = "params"
required_parameters = ["querystring.q"]
integration = {{ type = "http", uri = "{backend.url}/mirror" }}
"""
        daemon = start_daemon(config, workers=1)
        json_type = ("Content-Type", "application/json")
        tenant = ("X-Tenant", "acme")
        good = b'{"name": "rex", "age": 3}'
        ok = send(daemon.port, "POST", "/pets?q=1", [json_type, tenant], good)
        assert ok.status == 200 and ok.body == good
        bad = send(daemon.port, "POST", "/pets?q=1", [json_type, tenant], b'{"name": "rex", "age": -1}')
        assert bad.status == 400 and orjson.loads(bad.body) == {"message": "Invalid request body"}
        not_json = send(daemon.port, "POST", "/pets?q=1", [json_type, tenant], b"{nope")
        assert not_json.status == 400 and orjson.loads(not_json.body) == {"message": "Invalid request body"}
        no_query = send(daemon.port, "POST", "/pets", [json_type, tenant], good)
        assert no_query.status == 400 and orjson.loads(no_query.body) == {"message": "Missing required request parameters: [q]"}
        neither = send(daemon.port, "POST", "/pets", [json_type], good)
        assert orjson.loads(neither.body) == {"message": "Missing required request parameters: [q, x-tenant]"}
        # "body" checks the model for any media type ($default) and not the parameters.
        tagged = send(daemon.port, "POST", "/tags", [("Content-Type", "text/plain")], b'{"tag": "a"}')
        assert tagged.status == 200
        untagged = send(daemon.port, "POST", "/tags", [("Content-Type", "text/plain")], b'{"label": "a"}')
        assert untagged.status == 400
        assert send(daemon.port, "GET", "/search?q=x").status == 200
        assert send(daemon.port, "GET", "/search").status == 400
        reached = [(r.method, r.body) for r in backend.received]
    assert reached == [("POST", good), ("POST", b'{"tag": "a"}'), ("GET", b"")]  # nothing refused reached the backend
    lines = wait_for(lambda: len(daemon.access_lines()) >= 9 and daemon.access_lines(), 10, "the access log")
    errors = [line.get("validationError") for line in lines]
    assert errors[0] is None
    assert "age" in errors[1] and "not JSON" in errors[2]
    assert errors[3] == "missing required request parameters: q"


def test_gateway_responses_replace_the_bodies_of_gwd_errors(start_daemon):
    throttled = toml_string('{"error": $context.error.messageString, "type": "$context.error.responseType", "id": "$context.requestId"}')
    default_4xx = toml_string('{"oops": $context.error.messageString, "type": "$context.error.responseType"}')
    config = f"""
[gateway_responses.THROTTLED]
status = 503
headers = {{ "X-Limited" = "yes" }}
template = {throttled}

[gateway_responses.DEFAULT_4XX]
template = {default_4xx}

[[routes]]
route = "GET /limited"
integration = {{ type = "mock", body = "ok" }}
throttle = {{ rate = 0.01, burst = 1 }}

[[routes]]
route = "GET /keyed"
integration = {{ type = "mock", body = "ok" }}
api_key_required = true

[[routes]]
route = "GET /down"
integration = {{ type = "http", uri = "http://127.0.0.1:9/", connect_timeout = "1s" }}
"""
    daemon = start_daemon(config, workers=1)
    assert send(daemon.port, "GET", "/limited").status == 200
    limited = send(daemon.port, "GET", "/limited")
    assert limited.status == 503 and limited.headers["x-limited"] == "yes"
    assert orjson.loads(limited.body) == {"error": "Too Many Requests", "type": "THROTTLED", "id": limited.headers["x-request-id"]}
    assert "retry-after" in limited.headers  # the error's own headers stay
    missing = send(daemon.port, "GET", "/nowhere")
    assert missing.status == 404
    assert orjson.loads(missing.body) == {"oops": "Not Found", "type": "RESOURCE_NOT_FOUND"}
    keyless = send(daemon.port, "GET", "/keyed")
    assert keyless.status == 403 and orjson.loads(keyless.body) == {"oops": "Forbidden", "type": "INVALID_API_KEY"}
    down = send(daemon.port, "GET", "/down")
    assert down.status == 502 and orjson.loads(down.body) == {"message": "Bad Gateway"}  # no DEFAULT_5XX: gwd's own body


@pytest.mark.parametrize(
    "text, key, problem",
    [
        ('[gateway_responses.THROTTLD]\nstatus = 429\n', "gateway_responses.THROTTLD", "did you mean 'THROTTLED'"),
        ('[gateway_responses.THROTTLED]\ntemplate = "#if($a) x"\n', "gateway_responses.THROTTLED.template", "VTL syntax error"),
        ('[models]\nPet = "{not json"\n', "models.Pet", "not JSON"),
        ('[models]\nPet = { type = "objekt" }\n', "models.Pet", "schema"),
        ('[models]\nPet = { "$schema" = "http://json-schema.org/draft-07/schema#" }\n', "models.Pet", "draft 4"),
    ],
)
def test_bad_gateway_responses_and_models_are_config_errors(tmp_path, text, key, problem):
    config = tmp_path / "gwd.toml"
    config.write_text(text + '\n[[routes]]\nroute = "GET /x"\nintegration = { type = "mock" }\n')
    result = subprocess.run([sys.executable, "-m", "gwd", "check", "-c", str(config)], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if f": {key}:" in line]
    assert lines and problem in lines[0], result.stderr


@pytest.mark.parametrize(
    "route_keys, key, problem",
    [
        ('request_validator = "body"\nrequest_model = { "application/json" = "Nope" }', "request_model.application/json", "no model"),
        ('request_validator = "sometimes"', "request_validator", "expected"),
        ('required_parameters = ["cookie.x"]', "required_parameters", "querystring"),
        ('request_model = { "application/json" = "Pet" }', "request_model", "request_validator"),
    ],
)
def test_bad_validators_are_config_errors(tmp_path, route_keys, key, problem):
    config = tmp_path / "gwd.toml"
    config.write_text(f'[models]\nPet = {{ type = "object" }}\n\n[[routes]]\nroute = "GET /x"\nintegration = {{ type = "mock" }}\n{route_keys}\n')
    result = subprocess.run([sys.executable, "-m", "gwd", "check", "-c", str(config)], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if f"routes[0].{key}" in line]
    assert lines and problem in lines[0], result.stderr
