"""Many APIs on one daemon: API files, domains with certificates of their own mapping base paths to them, reloads."""

from __future__ import annotations

import http.client
import signal
import socket
import ssl
import subprocess
import sys
from collections import Counter

import orjson
import pytest
from process.test_domains import gwd_certs
from support import ROOT, request, scrape, total, wait_for


def api_file(name: str, stages: tuple[str, ...], extra: str = "") -> str:
    """An API whose routes answer which API, stage and path served them; the same route keys in every API."""
    text = "".join(f'[[stages]]\nname = "{stage}"\nvariables = {{ stage = "{stage}" }}\n\n' for stage in stages)
    for route in ("GET /items/{id}", "GET /status"):
        body = f'{{"api": "{name}", "stage": "${{stageVariables.stage}}", "route": "{route}"}}'
        text += f"[[routes]]\nroute = \"{route}\"\nintegration = {{ type = \"mock\", body = '{body}' }}\n\n"
    return text + extra


def write_apis(directory) -> None:
    (directory / "apis").mkdir()
    (directory / "apis" / "pets.toml").write_text(api_file("pets", ("prod", "beta")))
    (directory / "apis" / "admin.toml").write_text(api_file("admin", ("$default",)))
    (directory / "apis" / "shop.toml").write_text(api_file("shop", ("live",)))


@pytest.fixture
def pki(tmp_path):
    pki = tmp_path / "pki"
    gwd_certs("init", str(pki))
    for name, san in (("default", "127.0.0.1"), ("pets", "pets.example.com"), ("shop", "*.shop.example.org")):
        gwd_certs("issue", str(pki), "--name", name, "--san", san)
    return pki


def main_config(pki, apis) -> str:
    return f"""
[server]
apis = ["{apis}/*.toml"]
tls = {{ cert = "{pki}/default.pem", key = "{pki}/default.key" }}

[[domains]]
name = "pets.example.com"
tls = {{ cert = "{pki}/pets.pem", key = "{pki}/pets.key" }}
mappings = [{{ base_path = "v1", api = "pets", stage = "prod" }}, {{ base_path = "", api = "admin", stage = "$default" }}]

[[domains]]
name = "*.shop.example.org"
tls = {{ cert = "{pki}/shop.pem", key = "{pki}/shop.key" }}
mappings = [{{ base_path = "", api = "shop", stage = "live" }}, {{ base_path = "v1", api = "pets", stage = "beta" }}]
"""


def https_get(daemon, pki, server_name: str, path: str) -> tuple[str, int, dict]:
    """(the certificate's name, the status, the JSON body) from a client that verifies ``server_name``, sent by SNI."""
    context = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    conn = http.client.HTTPSConnection("127.0.0.1", daemon.port, context=context, timeout=10)
    # Connected by hand: the name sent and verified is not the address connected to.
    conn.sock = context.wrap_socket(socket.create_connection(("127.0.0.1", daemon.port), timeout=10), server_hostname=server_name)
    try:
        cert = conn.sock.getpeercert() or {}
        names = [value for kind, value in cert.get("subjectAltName", ()) if kind == "DNS"]
        conn.request("GET", path, headers={"Host": server_name})
        response = conn.getresponse()
        return names[0], response.status, orjson.loads(response.read())
    finally:
        conn.close()


def test_three_api_files_two_domains_on_one_tls_listener_and_a_broken_file_on_sighup(start_daemon, tmp_path, pki):
    write_apis(tmp_path)
    daemon = start_daemon(main_config(pki, tmp_path / "apis"), workers=2)
    served = {
        # (SNI and Host, path): (certificate, API, stage, route)
        ("pets.example.com", "/v1/items/1"): ("pets.example.com", "pets", "prod", "GET /items/{id}"),
        ("pets.example.com", "/v1/status"): ("pets.example.com", "pets", "prod", "GET /status"),
        ("pets.example.com", "/items/1"): ("pets.example.com", "admin", "$default", "GET /items/{id}"),
        ("pets.example.com", "/status"): ("pets.example.com", "admin", "$default", "GET /status"),
        ("eu.shop.example.org", "/items/1"): ("*.shop.example.org", "shop", "live", "GET /items/{id}"),
        ("eu.shop.example.org", "/v1/status"): ("*.shop.example.org", "pets", "beta", "GET /status"),
    }
    for (name, path), (cert, api, stage, route) in served.items():
        # The mock fills in {id}: each API saw the path without its base path.
        answer = {"api": api, "stage": stage, "route": route.replace("{id}", "1")}
        assert https_get(daemon, pki, name, path) == (cert, 200, answer), (name, path)
    # A stage of another API is not reached by a path prefix on a mapped domain.
    assert https_get(daemon, pki, "pets.example.com", "/live/status")[1] == 404
    lines = wait_for(lambda: len(daemon.access_lines()) >= len(served) + 1 and daemon.access_lines(), 10, "access log lines")
    logged = Counter((line["api"], line["stage"], line["routeKey"]) for line in lines)
    assert logged == Counter([(v[1], v[2], v[3]) for v in served.values()] + [("admin", "$default", "-")])
    # Each worker's counts arrive with its next flush.
    wait_for(lambda: total(scrape(daemon), "gwd_requests_total", api="shop", stage="live") == 1, 10, "shop's count")
    wait_for(lambda: total(scrape(daemon), "gwd_requests_total", api="pets", route="GET /status") == 2, 10, "pets' counts")

    # A broken third file: the reload is refused, naming the file, and the old set keeps serving.
    shop = tmp_path / "apis" / "shop.toml"
    shop.write_text(shop.read_text().replace('type = "mock"', 'type = "mokc"', 1))
    workers = set(daemon.worker_pids())
    daemon.signal(signal.SIGHUP)
    wait_for(lambda: "reload failed" in daemon.stderr(), 20, "the reload to be refused")
    assert f"{shop}: routes[0].integration.type: unknown integration type 'mokc'" in daemon.stderr()
    assert set(daemon.worker_pids()) == workers
    for (name, path), (cert, api, stage, route) in served.items():
        # The mock fills in {id}: each API saw the path without its base path.
        answer = {"api": api, "stage": stage, "route": route.replace("{id}", "1")}
        assert https_get(daemon, pki, name, path) == (cert, 200, answer), (name, path)

    # Mended, and one more stage mapped: the reload re-reads every file.
    shop.write_text(api_file("shop", ("live", "next")))
    config = daemon.config_path.read_text().replace('api = "shop", stage = "live" }', 'api = "shop", stage = "next" }')
    daemon.config_path.write_text(config)
    daemon.signal(signal.SIGHUP)
    wait_for(lambda: "reload complete" in daemon.stderr(), 20, "the reload to complete")
    wait_for(lambda: https_get(daemon, pki, "eu.shop.example.org", "/status")[2].get("stage") == "next", 20, "the new set")


def start_plain(start_daemon, tmp_path, main: str, files: dict[str, str]):
    (tmp_path / "apis").mkdir()
    for name, text in files.items():
        (tmp_path / "apis" / name).write_text(text)
    return start_daemon(main.replace("apis/", f"{tmp_path}/apis/"), workers=1)


def test_an_unknown_host_reaches_the_default_api_by_stage_and_api_keys_open_their_plan_s_api(start_daemon, tmp_path):
    keyed = '\n[[usage_plans]]\nname = "PLAN"\n\n[[routes]]\nroute = "GET /keyed"\napi_key_required = true\nintegration = { type = "mock" }\n'
    daemon = start_plain(
        start_daemon,
        tmp_path,
        f'default_api = "pets"\n\n[server]\nstate_dir = "{tmp_path / "state"}"\napis = ["apis/pets.toml", "apis/shop.toml"]\n\n'
        '[[domains]]\nname = "shop.test"\nmappings = [{ api = "shop", stage = "live" }]\n',
        {
            "pets.toml": api_file("pets", ("prod",), keyed.replace("PLAN", "pets-plan")),
            "shop.toml": api_file("shop", ("live",), keyed.replace("PLAN", "shop-plan")),
        },
    )
    assert request(daemon.port, "GET", "/prod/status", {"Host": "elsewhere.test"}).json()["api"] == "pets"
    assert request(daemon.port, "GET", "/status", {"Host": "shop.test"}).json()["api"] == "shop"
    assert request(daemon.port, "GET", "/live/status", {"Host": "elsewhere.test"}).status == 404
    keys = {}
    for plan in ("pets-plan", "shop-plan"):
        created = subprocess.run(
            [sys.executable, "-m", "gwd", "keys", "create", "--name", plan, "--plan", plan, "-c", str(daemon.config_path)],
            capture_output=True, text=True, cwd=ROOT, timeout=30,
        )
        assert created.returncode == 0, created.stderr
        keys[plan] = created.stdout.strip().splitlines()[-1]

    def status(host: str, path: str, plan: str) -> int:
        return request(daemon.port, "GET", path, {"Host": host, "x-api-key": keys[plan]}).status

    wait_for(lambda: status("shop.test", "/keyed", "shop-plan") == 200, 10, "the workers to read the new keys")
    assert status("elsewhere.test", "/prod/keyed", "pets-plan") == 200
    assert status("shop.test", "/keyed", "pets-plan") == 403
    assert status("elsewhere.test", "/prod/keyed", "shop-plan") == 403


def gwd_check(config_path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gwd", "check", "-c", str(config_path)], capture_output=True, text=True, cwd=ROOT, timeout=60
    )


def test_check_names_each_file_s_problems_and_what_spans_files(tmp_path):
    (tmp_path / "apis").mkdir()
    (tmp_path / "apis" / "a.toml").write_text(api_file("a", ("prod",)).replace("GET /status", "GET status"))
    (tmp_path / "apis" / "b.toml").write_text('name = "a"\n' + api_file("b", ("prod",)) + "[server]\nworkers = 2\n")
    (tmp_path / "apis" / "c.toml").write_text("[[routes]]\nroute = 'GET /x'\nintegration = { type = \"mock\" ")
    main = tmp_path / "gwd.toml"
    main.write_text(
        '[server]\napis = ["apis/*.toml", "more/*.toml"]\n\n'
        '[[domains]]\nname = "a.test"\nmappings = [{ stage = "prod" }, { base_path = "x", api = "zzz", stage = "prod" }]\n'
    )
    result = gwd_check(main)
    assert result.returncode != 0
    problems = result.stderr
    assert f"{tmp_path}/apis/a.toml: routes[1].route: " in problems
    assert f"{tmp_path}/apis/b.toml: server: unknown key" in problems
    assert f"{tmp_path}/apis/b.toml: name: API 'a' is also defined in {tmp_path}/apis/a.toml" in problems
    assert f"{tmp_path}/apis/c.toml: invalid TOML" in problems
    assert f"{main}: server.apis[1]: '{tmp_path}/more/*.toml' matches no file" in problems
    assert f"{main}: domains[0].mappings[0].api: missing: the API it reaches" in problems
    assert f"{main}: domains[0].mappings[1].api: no API is named 'zzz'" in problems

    (tmp_path / "apis" / "a.toml").write_text(api_file("a", ("prod",)))
    (tmp_path / "apis" / "b.toml").write_text(api_file("b", ("prod",)))
    (tmp_path / "apis" / "c.toml").unlink()
    main.write_text('[server]\napis = ["apis/*.toml"]\n\n[[domains]]\nname = "a.test"\nmappings = [{ api = "a", stage = "prod" }]\n')
    result = gwd_check(main)
    assert result.returncode == 0, result.stderr
    assert "OK (4 routes, 2 stages, 2 APIs)" in result.stdout
    assert f"{tmp_path}/apis/b.toml: API 'b' serves no request" in result.stderr


def test_export_names_one_api_of_several(tmp_path):
    (tmp_path / "apis").mkdir()
    for name in ("a", "b"):
        (tmp_path / "apis" / f"{name}.toml").write_text(api_file(name, ("prod",)))
    main = tmp_path / "gwd.toml"
    main.write_text('default_api = "a"\n\n[server]\napis = ["apis/*.toml"]\n')

    def export(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "gwd", "export", "-c", str(main), *args]
        return subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=60)

    assert export().returncode == 2 and "name one with --api (a, b)" in export().stderr
    document = orjson.loads(export("--api", "b").stdout)
    assert document["info"]["title"] == "b" and set(document["paths"]) == {"/items/{id}", "/status"}


def test_the_example_config_serves_what_its_comments_say(start_daemon):
    text = (ROOT / "etc" / "many-apis.toml").read_text().replace('"apis/*.toml"', f'"{ROOT}/etc/apis/*.toml"')
    daemon = start_daemon(text, workers=1)
    assert request(daemon.port, "GET", "/pets/pets/7", {"Host": "api.example.com"}).json() == {"id": "7"}
    assert request(daemon.port, "GET", "/health", {"Host": "api.example.com"}).json() == {"ok": True}
    assert daemon.get("/prod/pets").json() == [{"id": 1, "name": "Rex"}]
    assert daemon.get("/health").status == 404
