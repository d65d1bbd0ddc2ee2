"""REST API integrations through the real daemon: mapping templates, integration responses, AWS service calls.

The DynamoDB walkthrough runs against moto's standalone server (a real
DynamoDB-compatible server on 127.0.0.1); signing is checked against a
recording backend by recomputing the signature with botocore.
"""

from __future__ import annotations

import base64
import subprocess
import sys
from typing import Iterator

import orjson
import pytest
from backend import Backend
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.session import get_session
from process.test_functions import send
from support import ROOT, free_port, wait_for

pytestmark = pytest.mark.process

HANDLERS = ROOT / "tests" / "lambda_handlers"
KEY_ID, SECRET_KEY = "AKIDGWDTESTS", "gwd-tests-secret-key-not-a-real-one"
CREDENTIALS = '{ access_key_id_env = "GWD_TEST_AWS_KEY_ID", secret_access_key_env = "GWD_TEST_AWS_SECRET" }'

PUT_TEMPLATE = (
    '{ "TableName": "Items", "Item": { "itemId": { "S": "$context.requestId" },\n'
    '  "pokemonName": { "S": "$input.path(\'$.pokemonName\')" }, "age": { "S": "$input.path(\'$.age\')" } } }'
)
LIST_TEMPLATE = (
    "#set($inputRoot = $input.path('$'))\n"
    '{ "pokemons": [\n'
    '#foreach($elem in $inputRoot.Items) { "itemId": "$elem.itemId.S", "pokemonName": "$elem.pokemonName.S", '
    '"age": "$elem.age.S" }#if($foreach.hasNext),#end\n'
    "#end\n"
    "] }"
)


ETC = ROOT / "etc"


@pytest.fixture
def aws_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """Credentials in the environment the daemon inherits, under names of the test's own."""
    monkeypatch.setenv("GWD_TEST_AWS_KEY_ID", KEY_ID)
    monkeypatch.setenv("GWD_TEST_AWS_SECRET", SECRET_KEY)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)


@pytest.fixture(scope="module")
def moto_server() -> Iterator[str]:
    """moto's standalone server on a free loopback port: its endpoint."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    client = _dynamodb(endpoint)

    def answers() -> bool:
        try:
            client.list_tables()
            return True
        except Exception:
            return False

    try:
        wait_for(answers, 60, "moto's server to answer")
        yield endpoint
    finally:
        proc.terminate()
        proc.wait(10)


def _dynamodb(endpoint: str):
    return get_session().create_client(
        "dynamodb", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id=KEY_ID, aws_secret_access_key=SECRET_KEY
    )


def toml_string(text: str) -> str:
    return orjson.dumps(text).decode()


def test_the_dynamodb_walkthrough_runs_as_written(start_daemon, moto_server, aws_keys):
    """etc/dynamodb.toml as shipped, its templates the walkthrough's own, against moto's DynamoDB."""
    assert (ETC / "templates" / "put-item.vtl").read_text().strip() == PUT_TEMPLATE
    assert (ETC / "templates" / "list-items.vtl").read_text().strip() == LIST_TEMPLATE
    client = _dynamodb(moto_server)
    client.create_table(
        TableName="Items",
        KeySchema=[{"AttributeName": "itemId", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "itemId", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    shipped = (ETC / "dynamodb.toml").read_text()
    config = shipped.replace("http://127.0.0.1:8000", moto_server).replace('"@templates/', f'"@{ETC}/templates/')
    assert config.count(moto_server) == 2
    daemon = start_daemon(config, workers=1)
    body = b'{"pokemonName": "friesmeat", "age": "3"}'
    put = send(daemon.port, "POST", "/prod/item", [("Content-Type", "application/json")], body)
    assert put.status == 200, (put.status, put.body)
    assert orjson.loads(put.body) == {}
    request_id = put.headers["x-request-id"]
    stored = client.scan(TableName="Items")["Items"]
    assert stored == [{"itemId": {"S": request_id}, "pokemonName": {"S": "friesmeat"}, "age": {"S": "3"}}]

    got = send(daemon.port, "GET", "/prod/item/friesmeat")
    assert got.status == 200, (got.status, got.body)
    assert got.headers["content-type"] == "application/json"
    assert orjson.loads(got.body) == {"pokemons": [{"itemId": request_id, "pokemonName": "friesmeat", "age": "3"}]}
    none = send(daemon.port, "GET", "/prod/item/nobody")
    assert orjson.loads(none.body) == {"pokemons": []}


def test_aws_calls_are_signed_with_signature_version_4(start_daemon, aws_keys):
    with Backend() as backend:
        config = f"""
[[routes]]
route = "POST /put"
integration = {{ type = "aws", service = "dynamodb", action = "PutItem", region = "eu-west-2", endpoint = "{backend.url}", credentials = {CREDENTIALS} }}
"""
        daemon = start_daemon(config, workers=1)
        reply = send(daemon.port, "POST", "/put", [("Content-Type", "application/json")], b'{"TableName": "T"}')
        assert reply.status == 200, reply.body
        received = backend.received[-1]
    assert received.method == "POST" and received.raw_path == "/"
    assert received.body == b'{"TableName": "T"}'
    assert received.header("X-Amz-Target") == "DynamoDB_20120810.PutItem"
    assert received.header("Content-Type") == "application/x-amz-json-1.0"
    authorization = received.header("Authorization")
    date = received.header("X-Amz-Date")
    assert authorization.startswith(f"AWS4-HMAC-SHA256 Credential={KEY_ID}/{date[:8]}/eu-west-2/dynamodb/aws4_request, ")
    # The signature is botocore's for exactly what arrived.
    signed = {name: received.header(name) for name in ("Host", "X-Amz-Date", "X-Amz-Target", "Content-Type")}
    again = AWSRequest(method="POST", url=f"{backend.url}/", data=received.body, headers=signed)
    again.context["timestamp"] = date
    SigV4Auth(Credentials(KEY_ID, SECRET_KEY), "dynamodb", "eu-west-2").add_auth(again)
    assert again.headers["Authorization"] == authorization
    assert SECRET_KEY not in daemon.stderr() and SECRET_KEY not in daemon.stdout_path.read_text()


def test_an_http_backend_404_is_mapped_to_400_by_a_response_template(start_daemon):
    template = toml_string('{"error": "no such thing", "asked": "$input.params(\'code\')", "said": "$input.body"}')
    with Backend() as backend:
        config = f"""
[[routes]]
route = "GET /things/{{code}}"
[routes.integration]
type = "http"
uri = "{backend.url}/status/{{code}}"
[[routes.integration.responses]]
selection_pattern = "4\\\\d{{2}}"
status = 400
templates = {{ "application/json" = {template} }}
headers = {{ "X-Mapped" = "'yes'", "X-From-Backend" = "integration.response.header.X-Backend" }}
[[routes.integration.responses]]
status = 200
"""
        daemon = start_daemon(config, workers=1)
        mapped = send(daemon.port, "GET", "/things/404")
        assert mapped.status == 400, mapped.body
        assert orjson.loads(mapped.body) == {"error": "no such thing", "asked": "404", "said": "status body"}
        assert mapped.headers["content-type"] == "application/json"
        assert mapped.headers["x-mapped"] == "yes" and mapped.headers["x-from-backend"] == "yes"
        passed = send(daemon.port, "GET", "/things/503")
        assert passed.status == 200 and passed.body == b"status body"  # the default entry: status 200, body as it came


def test_a_function_error_is_selected_by_its_error_message(start_daemon):
    event = toml_string('{"id": "$input.params(\'id\')"}')
    message = toml_string('{"message": "$util.escapeJavaScript($input.path(\'$.errorMessage\'))"}')
    config = f"""
[[routes]]
route = "GET /pets/{{id}}"
[routes.integration]
type = "function"
handler = "plain:handler"
code_dir = "{HANDLERS}"
request_templates = {{ "application/json" = {event} }}
[[routes.integration.responses]]
selection_pattern = "NotFound.*"
status = 404
templates = {{ "application/json" = {message} }}
[[routes.integration.responses]]
status = 200
"""
    daemon = start_daemon(config, workers=1)
    found = send(daemon.port, "GET", "/pets/7")
    assert found.status == 200, found.body
    assert orjson.loads(found.body) == {"id": "7", "name": "pet 7"}
    missing = send(daemon.port, "GET", "/pets/0")
    assert missing.status == 404, missing.body
    assert orjson.loads(missing.body) == {"message": "NotFound: no pet 0"}
    broken = send(daemon.port, "GET", "/pets/boom")
    assert broken.status == 200  # an error no pattern matches takes the default entry, as on AWS
    assert orjson.loads(broken.body)["errorType"] == "ValueError"


def test_passthrough_behaviour_follows_aws_rules(start_daemon):
    with Backend() as backend:
        template = toml_string('{"wrapped": $input.json(\'$\')}')
        config = f"""
[[routes]]
route = "POST /match"
integration = {{ type = "http", uri = "{backend.url}/mirror", request_templates = {{ "application/json" = {template} }} }}

[[routes]]
route = "POST /templates"
integration = {{ type = "http", uri = "{backend.url}/mirror", passthrough_behavior = "when_no_templates", request_templates = {{ "application/json" = {template} }} }}

[[routes]]
route = "POST /never"
integration = {{ type = "http", uri = "{backend.url}/mirror", passthrough_behavior = "never" }}
"""
        daemon = start_daemon(config, workers=1)
        json_type = [("Content-Type", "application/json")]
        wrapped = send(daemon.port, "POST", "/match", json_type, b'{"a": 1}')
        assert orjson.loads(wrapped.body) == {"wrapped": {"a": 1}}
        untyped = send(daemon.port, "POST", "/match", [], b'{"a": 2}')  # no Content-Type counts as application/json
        assert orjson.loads(untyped.body) == {"wrapped": {"a": 2}}
        text = send(daemon.port, "POST", "/match", [("Content-Type", "text/plain")], b"as it is")
        assert text.status == 200 and text.body == b"as it is"
        refused = send(daemon.port, "POST", "/templates", [("Content-Type", "text/plain")], b"x")
        assert refused.status == 415 and orjson.loads(refused.body) == {"message": "Unsupported Media Type"}
        never = send(daemon.port, "POST", "/never", json_type, b"{}")
        assert never.status == 415
        count = len(backend.received)
    assert count == 3  # the refused ones never reached the backend


def test_a_template_that_fails_answers_500_and_says_why_in_the_log(start_daemon):
    config = """
[[routes]]
route = "POST /bad"
integration = { type = "mock", request_templates = { "application/json" = "$util.parseJson($input.body).a" } }
"""
    daemon = start_daemon(config, workers=1)
    reply = send(daemon.port, "POST", "/bad", [("Content-Type", "application/json")], b"{not json")
    assert reply.status == 500 and orjson.loads(reply.body) == {"message": "Internal server error"}
    request_id = reply.headers["x-request-id"]
    wait_for(lambda: f"request {request_id}: mapping template failed" in daemon.stderr(), 10, "the template error in the log")
    assert "Traceback" not in reply.body.decode()


def test_template_overrides_change_the_request_and_the_response(start_daemon):
    with Backend() as backend:
        template = toml_string(
            "#set($context.requestOverride.header.X-Tenant = $input.path('$.tenant'))"
            "#set($context.requestOverride.querystring.page = '2')"
            '{"kept": "$input.path(\'$.keep\')"}'
        )
        answer = toml_string(
            "#set($context.responseOverride.status = 201)#set($context.responseOverride.header.X-Made = 'here')"
            '{"path": "$input.path(\'$.path\')"}'
        )
        config = f"""
[[routes]]
route = "POST /create"
integration = {{ type = "http", uri = "{backend.url}/echo?fixed=1", request_templates = {{ "application/json" = {template} }}, response_templates = {{ "application/json" = {answer} }} }}
"""
        daemon = start_daemon(config, workers=1)
        reply = send(daemon.port, "POST", "/create?page=1", [("Content-Type", "application/json")], b'{"tenant": "acme", "keep": "k"}')
        received = backend.received[-1]
    assert reply.status == 201, reply.body
    assert reply.headers["x-made"] == "here"
    assert orjson.loads(reply.body) == {"path": "/echo?fixed=1&page=2"}
    assert received.header("X-Tenant") == "acme"
    assert orjson.loads(received.body) == {"kept": "k"}


@pytest.mark.parametrize(
    "integration, key, problem",
    [
        ('{ type = "mock", request_templates = { "application/json" = "#if($a)\\nx" } }', "request_templates.application/json", "line"),
        ('{ type = "mock", request_templates = { "application/json" = "@missing.vtl" } }', "request_templates.application/json", "cannot read"),
        ('{ type = "mock", passthrough_behavior = "sometimes" }', "passthrough_behavior", "expected one of"),
        ('{ type = "mock", responses = [{ selection_pattern = "(" }] }', "responses[0].selection_pattern", "not a regular expression"),
        ('{ type = "aws", service = "dynamo", action = "PutItem" }', "service", "did you mean 'dynamodb'"),
        ('{ type = "aws", service = "dynamodb", action = "PutItems" }', "action", "did you mean 'PutItem'"),
        ('{ type = "aws", service = "s3", action = "GetObject" }', "path", "missing"),
    ],
)
def test_bad_mapping_and_aws_config_is_refused_with_its_key(tmp_path, aws_keys, integration, key, problem):
    config = tmp_path / "gwd.toml"
    config.write_text(f'[[routes]]\nroute = "POST /x"\nintegration = {integration}\n')
    result = subprocess.run([sys.executable, "-m", "gwd", "check", "-c", str(config)], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if f"routes[0].integration.{key}" in line]
    assert lines and problem in lines[0], result.stderr


def test_a_template_file_with_a_syntax_error_names_the_file_and_line(tmp_path):
    template = tmp_path / "put.vtl"
    template.write_text('{\n  "a": "$input.path(\'$.a\')",\n  #foreach($x in)\n#end\n}\n')
    config = tmp_path / "gwd.toml"
    config.write_text('[[routes]]\nroute = "POST /x"\nintegration = { type = "mock", request_templates = { "application/json" = "@put.vtl" } }\n')
    result = subprocess.run([sys.executable, "-m", "gwd", "check", "-c", str(config)], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode != 0
    assert f"{template}: VTL syntax error at line 3" in result.stderr, result.stderr


def test_binary_media_types_carry_bytes_as_a_rest_api_does(start_daemon):
    pixel = (HANDLERS / "pixel.png").read_bytes()
    with Backend() as backend:
        config = f"""
binary_media_types = ["image/*", "application/octet-stream"]

[[routes]]
route = "GET /logo"
integration = {{ type = "function", handler = "pictures:logo", code_dir = "{HANDLERS}", payload_format = "1.0" }}

[[routes]]
route = "POST /upload"
integration = {{ type = "function", handler = "pictures:upload", code_dir = "{HANDLERS}", payload_format = "1.0" }}

[[routes]]
route = "POST /decode"
[routes.integration]
type = "http"
uri = "{backend.url}/mirror"
[[routes.integration.responses]]
content_handling = "convert_to_binary"

[[routes]]
route = "POST /encode"
integration = {{ type = "http", uri = "{backend.url}/mirror", content_handling = "convert_to_text" }}
"""
        daemon = start_daemon(config, workers=1)
        image = send(daemon.port, "GET", "/logo", [("Accept", "image/png")])
        assert image.status == 200 and image.headers["content-type"] == "image/png"
        assert image.body == pixel  # the original bytes, byte for byte
        text = send(daemon.port, "GET", "/logo", [("Accept", "application/json")])
        assert text.body == base64.b64encode(pixel)  # a client that does not accept a binary type gets the base64 text
        sent = orjson.loads(send(daemon.port, "POST", "/upload", [("Content-Type", "image/png")], pixel).body)
        assert sent == {"body": base64.b64encode(pixel).decode(), "isBase64Encoded": True}
        typed = orjson.loads(send(daemon.port, "POST", "/upload", [("Content-Type", "text/csv")], b"a,b").body)
        assert typed == {"body": "a,b", "isBase64Encoded": False}
        decoded = send(daemon.port, "POST", "/decode", [("Content-Type", "text/plain")], base64.b64encode(pixel))
        assert decoded.status == 200 and decoded.body == pixel
        encoded = send(daemon.port, "POST", "/encode", [("Content-Type", "application/octet-stream")], pixel)
        assert encoded.body == base64.b64encode(pixel)
        assert backend.received[-1].body == base64.b64encode(pixel)


def test_parameter_mapping_changes_the_backend_request_and_the_response(start_daemon):
    with Backend() as backend:
        config = f"""
[[stages]]
name = "prod"
variables = {{ team = "blue" }}

[[routes]]
route = "GET /users/{{id}}"
[routes.integration]
type = "http"
uri = "{backend.url}/users/{{id}}"
request_parameters = {{ "append:header.X-Caller" = "ip=$context.identity.sourceIp", "overwrite:path" = "/v2/users/$request.path.id", "append:querystring.src" = "gwd", "overwrite:querystring.page" = "$request.header.x-page", "remove:header.cookie" = "", "integration.request.header.X-Team" = "stageVariables.team" }}
response_parameters = {{ "overwrite:statuscode" = "202", "append:header.X-Backend-Status" = "$response.statuscode", "overwrite:header.Content-Type" = "text/x-mapped" }}

[[routes]]
route = "GET /items/{{item}}"
integration = {{ type = "http", uri = "{backend.url}/items/{{item}}", request_parameters = {{ "integration.request.path.item" = "'fixed'" }} }}
"""
        daemon = start_daemon(config, workers=1)
        reply = send(daemon.port, "GET", "/prod/users/7?page=1&keep=yes", [("Cookie", "secret=1"), ("X-Page", "3")])
        received = backend.received[-1]
        assert reply.status == 202, reply.body
        assert reply.headers["x-backend-status"] == "200" and reply.headers["content-type"] == "text/x-mapped"
        assert received.raw_path == "/v2/users/7?keep=yes&src=gwd&page=3"
        assert received.header("X-Caller") == "ip=127.0.0.1" and received.header("X-Team") == "blue"
        assert received.header("Cookie") is None
        send(daemon.port, "GET", "/prod/items/anything")
        assert backend.received[-1].raw_path == "/items/fixed"


@pytest.mark.parametrize(
    "parameters, problem",
    [
        ('request_parameters = { "append:body.x" = "1" }', "not a parameter to map"),
        ('request_parameters = { "overwrite:header.Host" = "x" }', "set by gwd itself"),
        ('request_parameters = { "append:path" = "/x" }', "can only be overwritten"),
        ('request_parameters = { "overwrite:header.X" = "$request.body.a" }', "not a variable gwd maps"),
        ('response_parameters = { "overwrite:statuscode" = "abc" }', "between 100 and 599"),
        ('request_parameters = { "overwrite:statuscode" = "200" }', "cannot be mapped on the request side"),
    ],
)
def test_bad_parameter_mapping_is_a_config_error(tmp_path, parameters, problem):
    config = tmp_path / "gwd.toml"
    config.write_text(f'[[routes]]\nroute = "GET /x"\nintegration = {{ type = "http", uri = "http://127.0.0.1:9/", {parameters} }}\n')
    result = subprocess.run([sys.executable, "-m", "gwd", "check", "-c", str(config)], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if "routes[0].integration." in line and "_parameters." in line]
    assert lines and problem in lines[0], result.stderr


def test_query_and_rest_protocol_services_are_called_by_their_protocol(start_daemon, moto_server, aws_keys):
    """SNS (query protocol: Action, Version and the template's form fields) and S3 (REST: a path and a method)."""
    session = get_session()
    options = {"endpoint_url": moto_server, "region_name": "us-east-1", "aws_access_key_id": KEY_ID, "aws_secret_access_key": SECRET_KEY}
    s3 = session.create_client("s3", **options)
    s3.create_bucket(Bucket="files")
    sns = session.create_client("sns", **options)
    aws = f'type = "aws", region = "us-east-1", endpoint = "{moto_server}", credentials = {CREDENTIALS}'
    topic = toml_string("Name=$util.urlEncode($input.path('$.name'))")
    config = f"""
[[routes]]
route = "POST /topics"
integration = {{ {aws}, service = "sns", action = "CreateTopic", request_templates = {{ "application/json" = {topic} }} }}

[[routes]]
route = "PUT /files/{{key}}"
integration = {{ {aws}, service = "s3", path = "/files/{{key}}", method = "PUT" }}

[[routes]]
route = "GET /files/{{key}}"
integration = {{ {aws}, service = "s3", path = "/files/{{key}}" }}
"""
    daemon = start_daemon(config, workers=1)
    created = send(daemon.port, "POST", "/topics", [("Content-Type", "application/json")], b'{"name": "orders"}')
    assert created.status == 200, created.body
    assert b"<CreateTopicResponse" in created.body and b"orders" in created.body
    assert [t["TopicArn"].rsplit(":", 1)[1] for t in sns.list_topics()["Topics"]] == ["orders"]
    pixel = (HANDLERS / "pixel.png").read_bytes()
    stored = send(daemon.port, "PUT", "/files/pixel.png", [("Content-Type", "image/png")], pixel)
    assert stored.status == 200, stored.body
    assert s3.get_object(Bucket="files", Key="pixel.png")["Body"].read() == pixel
    fetched = send(daemon.port, "GET", "/files/pixel.png")
    assert fetched.status == 200 and fetched.body == pixel
    missing = send(daemon.port, "GET", "/files/nothing")
    assert missing.status == 404 and b"NoSuchKey" in missing.body  # the service's own error, as it came


def test_a_mock_takes_its_status_from_its_request_template_as_on_aws(start_daemon):
    choose = toml_string("#if($input.params('fail') == 'yes'){\"statusCode\": 500}#else{\"statusCode\": 200}#end")
    config = f"""
[[routes]]
route = "GET /health"
[routes.integration]
type = "mock"
request_templates = {{ "application/json" = {choose} }}
[[routes.integration.responses]]
selection_pattern = "5\\\\d{{2}}"
status = 503
templates = {{ "application/json" = '{{"healthy": false}}' }}
[[routes.integration.responses]]
templates = {{ "application/json" = '{{"healthy": true, "stage": "$context.stage"}}' }}
"""
    daemon = start_daemon(config, workers=1)
    healthy = send(daemon.port, "GET", "/health")
    assert healthy.status == 200 and orjson.loads(healthy.body) == {"healthy": True, "stage": "$default"}
    failing = send(daemon.port, "GET", "/health?fail=yes")
    assert failing.status == 503 and orjson.loads(failing.body) == {"healthy": False}
