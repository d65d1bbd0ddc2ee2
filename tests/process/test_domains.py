"""Custom domain names through the real daemon: Host, wildcard names, the longest base path, the path the API sees."""

from __future__ import annotations

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


def test_an_unknown_host_gets_404_unless_unmapped_hosts_reach_the_stages(daemon, start_daemon):
    for host in ("unknown.test", f"127.0.0.1:{daemon.port}"):
        reply = get(daemon, host, "/prod/items/1")
        assert reply.status == 404 and orjson.loads(reply.body) == {"message": "Not Found"}
    open_daemon = start_daemon(CONFIG.format(unmapped='unmapped_hosts = "stages"'), workers=1)
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
         "domains[0].tls: a certificate per domain (SNI) is not supported yet"),
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
