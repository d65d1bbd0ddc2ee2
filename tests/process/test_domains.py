"""Custom domain names through the real daemon: Host, wildcard names, the longest base path, the path the API sees."""

from __future__ import annotations

import http.client
import socket
import ssl
import subprocess
import sys
import orjson
import pytest
from support import ROOT, request

HANDLERS = ROOT / "tests" / "lambda_handlers"

CONFIG = f"""
{{unmapped}}

[[stages]]
name = "prod"

[[stages]]
name = "beta"

[[domains]]
name = "api.example.com"
mappings = [
  {{{{ base_path = "v1", stage = "prod" }}}},
  {{{{ base_path = "v1/beta", stage = "beta" }}}},
  {{{{ base_path = "", stage = "beta" }}}},
]

[[domains]]
name = "*.example.org"
mappings = [{{{{ base_path = "", stage = "prod" }}}}]

[[routes]]
route = "GET /items/{{{{id}}}}"
integration = {{{{ type = "function", handler = "echo:handler", code_dir = "{HANDLERS}" }}}}

[[routes]]
route = "GET /status"
integration = {{{{ type = "function", handler = "echo:handler", code_dir = "{HANDLERS}" }}}}

[[routes]]
route = "GET /v1/only"
integration = {{{{ type = "function", handler = "echo:handler", code_dir = "{HANDLERS}" }}}}
"""


def get(daemon, host: str, path: str):
    return request(daemon.port, "GET", path, {"Host": host})


def reached(reply) -> tuple[str, str]:
    """(the stage, the event's rawPath) a function saw."""
    assert reply.status == 200, (reply.status, reply.body)
    event = orjson.loads(reply.body)["event"]
    return event["requestContext"]["stage"], event["rawPath"]


@pytest.fixture
def daemon(start_daemon):
    return start_daemon(CONFIG.format(unmapped=""), workers=1)


def test_host_and_the_longest_base_path_pick_the_stage_and_the_base_path_is_removed(daemon):
    assert reached(get(daemon, "api.example.com", "/v1/items/7")) == ("prod", "/items/7")
    assert reached(get(daemon, "api.example.com", "/v1/beta/items/7")) == ("beta", "/items/7")
    assert reached(get(daemon, "api.example.com", "/items/7")) == ("beta", "/items/7")
    # Names are case-insensitive, and the port is not part of them.
    assert reached(get(daemon, "API.Example.COM:8443", "/v1/items/8")) == ("prod", "/items/8")
    # A base path is whole segments: /v1x is not under v1.
    assert get(daemon, "api.example.com", "/v1x/items/7").status == 404
    # Routes without parameters (looked up by the whole path) follow the same rules.
    assert reached(get(daemon, "api.example.com", "/v1/status")) == ("prod", "/status")
    assert reached(get(daemon, "api.example.com", "/status")) == ("beta", "/status")
    # /v1/only is under base path v1 here (where /only is no route), whatever base path "" would give.
    assert get(daemon, "api.example.com", "/v1/only").status == 404
    assert reached(get(daemon, "tenant.example.org", "/v1/only")) == ("prod", "/v1/only")


def test_a_wildcard_name_matches_one_label_more(daemon):
    assert reached(get(daemon, "tenant-a.example.org", "/items/1")) == ("prod", "/items/1")
    assert get(daemon, "a.b.example.org", "/items/1").status == 404
    assert get(daemon, "example.org", "/items/1").status == 404


def test_an_unknown_host_gets_404_unless_a_default_api_takes_it(daemon, start_daemon):
    for host in ("unknown.test", f"127.0.0.1:{daemon.port}"):
        reply = get(daemon, host, "/prod/items/1")
        assert reply.status == 404 and orjson.loads(reply.body) == {"message": "Not Found"}
    open_daemon = start_daemon(CONFIG.format(unmapped='default_api = "default"'), workers=1)
    assert reached(get(open_daemon, "unknown.test", "/prod/items/1")) == ("prod", "/prod/items/1")
    assert reached(get(open_daemon, "api.example.com", "/v1/items/2")) == ("prod", "/items/2")


@pytest.mark.parametrize(
    "domain, problem",
    [
        ('name = "api.example.com"\nmappings = [{ stage = "nope" }]', "domains[0].mappings[0].stage: 'nope' is no stage"),
        ('name = "api..com"\nmappings = [{ stage = "prod" }]', "domains[0].name: 'api..com' is not a domain name"),
        ('name = "a.com"\nmappings = [{ base_path = "v1", stage = "prod" }, { base_path = "/v1/", stage = "prod" }]',
         "domains[0].mappings[1].base_path: base path 'v1' is mapped twice"),
        ('name = "a.com"\ntls = { cert = "c.pem", key = "k.pem" }\nmappings = [{ stage = "prod" }]',
         "domains[0].tls.cert: needs [server] tls"),
        ('name = "a.com"', "domains[0].mappings: missing"),
    ],
)
def test_bad_domains_are_refused_at_load(tmp_path, domain, problem):
    from gwd.config.reader import load_config

    path = tmp_path / "gwd.toml"
    path.write_text(f'[[stages]]\nname = "prod"\n\n[[domains]]\n{domain}\n\n[[routes]]\nroute = "GET /a"\nintegration = {{ type = "mock" }}\n')
    with pytest.raises(Exception) as raised:
        load_config(str(path))
    assert problem in str(raised.value)


def gwd_certs(*args: str) -> None:
    done = subprocess.run([sys.executable, "-m", "gwd", "certs", *args], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 0, done.stderr


def test_one_https_listener_serves_each_domain_its_certificate_by_sni(start_daemon, tmp_path):
    pki = tmp_path / "pki"
    gwd_certs("init", str(pki))
    for name, san in (("default", "127.0.0.1"), ("api", "api.example.com"), ("org", "*.example.org")):
        gwd_certs("issue", str(pki), "--name", name, "--san", san)
    config = CONFIG.format(unmapped="").replace(
        '[[stages]]\nname = "prod"',
        f'[server]\ntls = {{ cert = "{pki}/default.pem", key = "{pki}/default.key" }}\n\n[[stages]]\nname = "prod"',
        1,
    )
    config = config.replace(
        'name = "api.example.com"\n', f'name = "api.example.com"\ntls = {{ cert = "{pki}/api.pem", key = "{pki}/api.key" }}\n'
    ).replace('name = "*.example.org"\n', f'name = "*.example.org"\ntls = {{ cert = "{pki}/org.pem", key = "{pki}/org.key" }}\n')
    daemon = start_daemon(config, workers=1)

    def https_get(server_name: str | None, path: str, host: str) -> tuple[str, int, bytes]:
        """(the SAN of the certificate served, the status, the body) with real verification of that name."""
        context = ssl.create_default_context(cafile=str(pki / "ca.pem"))
        if server_name is None:
            context.check_hostname = False
        conn = http.client.HTTPSConnection("127.0.0.1", daemon.port, context=context, timeout=10)
        # Connected by hand: the server name sent is not the address connected to.
        conn.sock = context.wrap_socket(socket.create_connection(("127.0.0.1", daemon.port), timeout=10), server_hostname=server_name)
        try:
            san = conn.sock.getpeercert(binary_form=False) or {}
            names = [value for kind, value in san.get("subjectAltName", ()) if kind in ("DNS", "IP Address")]
            conn.request("GET", path, headers={"Host": host})
            response = conn.getresponse()
            return names[0] if names else "", response.status, response.read()
        finally:
            conn.close()

    san, status, body = https_get("api.example.com", "/v1/items/3", "api.example.com")
    assert san == "api.example.com" and status == 200
    assert orjson.loads(body)["event"]["requestContext"]["stage"] == "prod"
    san, status, _ = https_get("tenant.example.org", "/items/3", "tenant.example.org")
    assert san == "*.example.org" and status == 200
    # No server name, or one no domain has: the listener's own certificate.
    assert https_get(None, "/items/3", "api.example.com")[0] == "127.0.0.1"
    with pytest.raises(ssl.SSLCertVerificationError):
        https_get("other.example.net", "/items/3", "other.example.net")
