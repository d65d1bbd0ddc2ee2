"""The gwd command: check, run, version, as an operator types them."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest
from support import ROOT, Daemon, free_port, process_children, request, scrape_port, wait_for

import gwd

ROUTE = '[[routes]]\nroute = "GET /a"\nintegration = { type = "mock" }\n'

BROKEN_CONFIGS = [
    # (config text, key path that must be named, words of the problem)
    ("", "routes", "at least one [[routes]] entry"),
    ('[server]\nlisten = "127.0.0.1:8080"\n', "routes", "at least one [[routes]] entry"),
    ("routes = []\n", "routes", "at least one [[routes]] entry"),
    ("[server]\nlisten = 8080\n", "server.listen", "expected a string"),
    ('[server]\nlisten = "localhost"\n', "server.listen", "HOST:PORT"),
    ('[server]\nlisten = "127.0.0.1:70000"\n', "server.listen", "port must be"),
    ("[server]\nworkers = -1\n", "server.workers", "between 0 and 1024"),
    ('[server]\nworkers = "two"\n', "server.workers", "expected an integer"),
    ('[server]\ndrain_timeout = "30"\n', "server.drain_timeout", "duration"),
    ('[server]\ndrain_timeout = "30 seconds"\n', "server.drain_timeout", "duration"),
    ('[server]\nworker_timeout = "500ms"\n', "server.worker_timeout", "0 (never) or at least 1s"),
    ("[server]\nlisten_port = 80\n", "server.listen_port", "unknown key"),
    ("[server]\nworkrs = 2\n", "server.workrs", "unknown key (did you mean 'workers'?)"),
    ('[[routes]]\nroute = "GET /a"\nintegration = { type = "mock", bdy = "x" }\n', "routes[0].integration.bdy", "did you mean 'body'?"),
    ('[log]\naccess = "stderr"\n', "log.access", '"stdout", "off" or an absolute file path'),
    ('[log]\naccess = "/no/such/dir/access.log"\n', "log.access", "does not exist"),
    ('[log]\naccess = "/tmp"\n', "log.access", "is a directory"),
    ('[[routes]]\nroute = "FETCH /x"\nintegration = { type = "mock" }\n', "routes[0].route", "must start with ANY"),
    ('[[routes]]\nroute = "GET x"\nintegration = { type = "mock" }\n', "routes[0].route", "must start with '/'"),
    ('[[routes]]\nroute = "GET /a/{proxy+}/b"\nintegration = { type = "mock" }\n', "routes[0].route", "last segment"),
    ('[[routes]]\nroute = "GET /a/{id}/{id}"\nintegration = { type = "mock" }\n', "routes[0].route", "twice"),
    ('[[routes]]\nroute = "GET /a/x{id}"\nintegration = { type = "mock" }\n', "routes[0].route", "mixes text"),
    (
        '[[routes]]\nroute = "GET /a/{x}"\nintegration = { type = "mock" }\n'
        '[[routes]]\nroute = "GET /a/{y}"\nintegration = { type = "mock" }\n',
        "routes[1].route",
        "duplicates routes[0].route",
    ),
    ('[[routes]]\nroute = "GET /a"\nintegration = { type = "lambda" }\n', "routes[0].integration.type", "unknown"),
    ('[[routes]]\nroute = "GET /a"\n', "routes[0].integration.type", "missing"),
    ('[[routes]]\nroute = "GET /a"\nintegration = { type = "mock", status = 700 }\n', "routes[0].integration.status", "between 100 and 599"),
    ('[[routes]]\nroute = "GET /a"\nintegration = { type = "mock", headers = { x = 1 } }\n', "routes[0].integration.headers.x", "expected a string"),
    ('[[routes]]\nintegration = { type = "mock" }\n', "routes[0].route", "missing"),
    (
        '[[stages]]\nname = "prod"\n[[routes]]\nroute = "GET /a"\n'
        'integration = { type = "mock", body = "${stageVariables.color}" }\n',
        "routes[0].integration.body",
        "stage 'prod' does not define it",
    ),
    ('[[stages]]\nname = "a/b"\n', "stages[0].name", "not a stage name"),
    ('[[stages]]\nname = "prod"\n[[stages]]\nname = "prod"\n', "stages[1].name", "defined twice"),
    ("[server\n", "invalid TOML", ""),
    ('[server]\ntrusted_proxies = ["10.0.0.0/33"]\n', "server.trusted_proxies[0]", "not a CIDR"),
    ('[[routes]]\nroute = "GET /a"\nintegration = { type = "http" }\n', "routes[0].integration.uri", "missing"),
    ('[[routes]]\nroute = "GET /a"\nintegration = { type = "http", uri = "ftp://x/" }\n', "routes[0].integration.uri", "http:// or https://"),
    ('[[routes]]\nroute = "GET /a/{id}"\nintegration = { type = "http", uri = "http://x/{name}" }\n', "routes[0].integration.uri", "{name} is not a path parameter"),
    ('[[routes]]\nroute = "GET /a"\nintegration = { type = "http", uri = "http://x:99999/" }\n', "routes[0].integration.uri", "invalid port"),
    ('[[routes]]\nroute = "GET /a"\nintegration = { type = "http", uri = "http://x/", timeout = "0s" }\n', "routes[0].integration.timeout", "between"),
    ('[[routes]]\nroute = "GET /a"\nintegration = { type = "http", uri = "http://x/", method = "get" }\n', "routes[0].integration.method", "expected one of"),
    ('[[routes]]\nroute = "GET /a"\nintegration = { type = "mock" }\nthrottle = { rate = 0, burst = 1 }\n', "routes[0].throttle.rate", "more than 0"),
    ('[[routes]]\nroute = "GET /a"\nintegration = { type = "mock" }\nthrottle = { rate = 5 }\n', "routes[0].throttle.burst", "missing"),
    ('[[stages]]\nname = "p"\nclient_throttle = { rate = 1, burst = 1, key = "cookie" }\n', "stages[0].client_throttle.key", '"ip", "header:NAME" or "claim:NAME"'),
    ('[cache]\nmax_bytes = "64MB"\n', "cache.max_bytes", '"64MiB"'),
    ('[cache]\nmax_bytes = "512KiB"\n', "cache.max_bytes", "at least 1MiB"),
    ('[[stages]]\nname = "p"\ncache = { ttl = "2h" }\n', "stages[0].cache.ttl", "between"),
    ('[[routes]]\nroute = "GET /x"\nintegration = { type = "mock" }\ncache = { key = { query = "page" } }\n', "routes[0].cache.key.query", "a list of strings"),
    ('[[routes]]\nroute = "GET /x"\nintegration = { type = "mock" }\ncache = { key = { headers = ["bad header"] } }\n', "routes[0].cache.key.headers[0]", "not a valid entry"),
    ('[[routes]]\nroute = "GET /x"\nintegration = { type = "mock" }\ncache = { statuses = [200, 700] }\n', "routes[0].cache.statuses[1]", "not a valid entry"),
    ('[[routes]]\nroute = "GET /x"\nintegration = { type = "mock" }\ncache = { ttl = "5m", stale = true }\n', "routes[0].cache.stale", "unknown key"),
    ("[throttle]\ntable_size = 8\n", "throttle.table_size", "between 64 and"),
    ('[[authorizers]]\nname = "a"\ntype = "saml"\n', "authorizers[0].type", '"jwt" or "request"'),
    ('[[authorizers]]\nname = "a"\ntype = "jwt"\naudience = "x"\njwks_uri = "http://127.0.0.1:9/"\n', "authorizers[0].issuer", "missing"),
    ('[[authorizers]]\nname = "a"\ntype = "jwt"\nissuer = "i"\naudience = "x"\n', "authorizers[0].jwks_uri", "public_keys"),
    (
        '[[authorizers]]\nname = "a"\ntype = "jwt"\nissuer = "i"\naudience = "x"\njwks_uri = "http://127.0.0.1:9/"\nalgorithms = ["HS256"]\n',
        "authorizers[0].algorithms",
        "HS256 needs secret_file",
    ),
    (
        '[[authorizers]]\nname = "a"\ntype = "jwt"\nissuer = "i"\naudience = "x"\njwks_uri = "http://127.0.0.1:9/"\nalgorithms = ["none"]\n',
        "authorizers[0].algorithms[0]",
        "not a valid entry",
    ),
    ('[[authorizers]]\nname = "a"\ntype = "request"\nidentity_sources = ["header:A"]\n', "authorizers[0].uri", "exactly one of"),
    ('[[authorizers]]\nname = "a"\ntype = "request"\nfunction = "no_such_module:f"\nidentity_sources = ["ip"]\n', "authorizers[0].function", "no module"),
    ('[[authorizers]]\nname = "a"\ntype = "request"\nuri = "http://127.0.0.1:9/"\nidentity_sources = ["cookie:x"]\n', "authorizers[0].identity_sources[0]", "not a valid entry"),
    (
        '[[authorizers]]\nname = "a"\ntype = "request"\nuri = "http://127.0.0.1:9/"\nidentity_sources = ["ip"]\ncontext_headers = { t = "Host" }\n',
        "authorizers[0].context_headers.t",
        "one gwd sets",
    ),
    *(
        (
            '[[authorizers]]\nname = "a"\ntype = "jwt"\nissuer = "i"\naudience = "x"\njwks_uri = "http://127.0.0.1:9/"\n'
            f'claim_headers = {{ sub = "{header}" }}\n',
            "authorizers[0].claim_headers.sub",
            "one gwd sets",
        )
        for header in ("traceparent", "Proxy-Authorization", "X-Forwarded-For")
    ),
    ('[[routes]]\nroute = "GET /x"\nintegration = { type = "mock" }\nauthorizer = "nobody"\n', "routes[0].authorizer", "no [[authorizers]] entry"),
    ('[[routes]]\nroute = "GET /x"\nintegration = { type = "mock" }\nscopes = ["a"]\n', "routes[0].scopes", "jwt authorizer"),
    ('[[routes]]\nroute = "GET /x"\nintegration = { type = "mock" }\ndeny = ["10.0.0.1/8"]\n', "routes[0].deny[0]", "not a CIDR"),
]


def gwd_command(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gwd", *args], capture_output=True, text=True, cwd=ROOT, timeout=60)


@pytest.mark.parametrize("text,key_path,problem", BROKEN_CONFIGS, ids=[c[1] + ":" + c[2] for c in BROKEN_CONFIGS])
def test_check_names_file_key_and_problem(tmp_path, text, key_path, problem):
    path = tmp_path / "broken.toml"
    path.write_text(text)
    result = gwd_command("check", "-c", str(path))
    assert result.returncode == 78, result
    assert f"{path}: {key_path}" in result.stderr
    assert problem in result.stderr


def test_check_reports_every_problem_at_once(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text('[server]\nworkers = -1\ndrain_timeout = "x"\n[log]\nlevel = "loud"\n' + ROUTE)
    result = gwd_command("check", "-c", str(path))
    assert result.returncode == 78
    for key in ("server.workers", "server.drain_timeout", "log.level"):
        assert f"{path}: {key}:" in result.stderr
    assert result.stderr.splitlines()[-1] == f"{path}: 3 problems"


def test_check_accepts_the_shipped_configs(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")  # etc/dynamodb.toml's credentials = "env"
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    for path in sorted((ROOT / "etc").glob("*.toml")):
        result = gwd_command("check", "-c", str(path))
        assert result.returncode == 0, result.stderr
        assert "OK" in result.stdout
    assert gwd_command("check").returncode == 0  # the built-in default


def test_check_of_a_missing_file(tmp_path):
    result = gwd_command("check", "-c", str(tmp_path / "nope.toml"))
    assert result.returncode == 78
    assert "nope.toml: cannot read: No such file or directory" in result.stderr


def test_run_with_a_broken_config_starts_no_worker(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text('[server]\ndrain_timeout = "forever"\n')
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "gwd", "run", "-c", str(path), "--listen", f"127.0.0.1:{port}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    # Watch for children for as long as the process lives: there must never be one.
    children_seen = []
    while proc.poll() is None:
        children_seen += process_children(proc.pid)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 78
    assert children_seen == []
    assert "server.drain_timeout" in stderr and "nothing was started" in stderr


def test_run_with_a_port_in_use_fails_clearly(tmp_path, start_daemon):
    daemon = start_daemon('[[routes]]\nroute = "GET /a"\nintegration = { type = "mock" }\n', workers=1)
    result = gwd_command("run", "--listen", f"127.0.0.1:{daemon.port}")
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{daemon.port}: Address already in use" in result.stderr


def test_run_refuses_a_port_another_program_listens_on_with_so_reuseport():
    """Joining that program's group would silently take a share of its connections."""
    other = socket.socket()
    other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    other.bind(("127.0.0.1", 0))
    other.listen()
    port = other.getsockname()[1]
    with other:
        result = gwd_command("run", "--listen", f"127.0.0.1:{port}", "--admin-listen", "off")
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in result.stderr


def test_a_busy_admin_port_is_named_as_the_admin_listener(tmp_path, start_daemon):
    daemon = start_daemon(ROUTE, workers=1)
    config = tmp_path / "second.toml"
    config.write_text(ROUTE)
    result = gwd_command(
        "run", "-c", str(config), "--listen", f"127.0.0.1:{free_port()}", "--admin-listen", f"127.0.0.1:{daemon.admin_port}"
    )
    assert result.returncode == 1
    assert f"admin listener (/metrics, /healthz, /readyz): cannot listen on 127.0.0.1:{daemon.admin_port}" in result.stderr
    assert "--admin-listen off" in result.stderr


@pytest.mark.parametrize("args", [("version",), ("--version",)])
def test_version(args):
    result = gwd_command(*args)
    assert result.returncode == 0 and result.stdout.strip() == f"gwd {gwd.__version__}"


def test_installed_command_serves_the_builtin_default_on_8080(tmp_path):
    """The README's first command: `gwd run` with no arguments answers on 127.0.0.1:8080."""
    daemon = Daemon(tmp_path, None, workers=None)
    daemon.command = lambda: ["gwd", "run"]  # the console script pip installed, exactly as typed
    daemon.start()
    try:
        reply = request(8080, "GET", "/hello")
        assert reply.status == 200
        assert reply.json() == {"message": "Hello from gwd"}
        assert reply.headers["content-type"] == "application/json"
        # The Quick start's metrics line, once the workers' next flush has come.
        line = 'gwd_requests_total{api="default",code="200",method="GET",route="GET /hello",stage="$default"} 1.0'
        wait_for(lambda: line in scrape_port(9180).splitlines(), 5, "the request to reach /metrics")
    finally:
        daemon.stop()


def test_example_config_is_served(start_daemon):
    daemon = start_daemon((ROOT / "etc" / "gwd.toml").read_text(), workers=2)
    assert daemon.get("/prod/hello").json() == {"message": "Hello from prod"}
    assert daemon.get("/beta/hello").json() == {"message": "Hello from beta"}
    assert daemon.get("/prod/pokedex/bulbasaur").json() == {"name": "bulbasaur"}
    assert daemon.get("/prod/pokedex/pikachu").json() == {"name": "pikachu", "type": "electric"}
    assert daemon.get("/prod/files/a/b/c.txt").body == b"you asked for a/b/c.txt\n"
    assert request(daemon.port, "POST", "/prod/orders").status == 201
    assert daemon.get("/hello").status == 404
    wait_for(lambda: len(daemon.access_lines()) >= 7, 5, "access log lines")


def test_check_speaks_of_one_route_and_one_stage_in_the_singular(tmp_path):
    path = tmp_path / "one.toml"
    path.write_text(ROUTE)
    result = gwd_command("check", "-c", str(path))
    assert result.stdout.strip() == f"{path}: OK (1 route, 1 stage)"
    path.write_text("")
    result = gwd_command("check", "-c", str(path))
    assert result.returncode == 78 and "nothing was started" not in result.stderr


def test_a_bare_zero_is_a_duration_and_other_numbers_are_not(tmp_path):
    from gwd.config.reader import load_config

    path = tmp_path / "zero.toml"
    path.write_text("[server]\nworker_timeout = 0\n" + ROUTE)
    assert gwd_command("check", "-c", str(path)).returncode == 0
    assert load_config(str(path)).server.worker_timeout == 0.0
    path.write_text("[server]\ndrain_timeout = 5\n" + ROUTE)
    result = gwd_command("check", "-c", str(path))
    assert result.returncode == 78 and f"{path}: server.drain_timeout: expected a string" in result.stderr


def test_usage_refuses_a_from_after_its_to(tmp_path):
    path = tmp_path / "gwd.toml"
    path.write_text(f'[server]\nstate_dir = "{tmp_path / "state"}"\n' + ROUTE)
    result = gwd_command("usage", "--from", "2026-12-02", "--to", "2026-12-01", "-c", str(path))
    assert result.returncode == 2 and "--from 2026-12-02 is after --to 2026-12-01" in result.stderr
    assert gwd_command("usage", "--from", "2026-12-01", "--to", "2026-12-01", "-c", str(path)).returncode == 0
