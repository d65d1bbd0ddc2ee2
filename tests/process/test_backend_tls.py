"""TLS to backends: verified by default, mTLS with the gateway's certificate, `gwd certs`, key-file safety."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import ssl
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from backend import Backend
from cryptography import x509
from support import ROOT, free_port, wait_for

from gwd.certs import issue

pytestmark = pytest.mark.process


def gwd_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gwd", *args], capture_output=True, text=True, cwd=ROOT, timeout=60)


@pytest.fixture
def pki(tmp_path: Path) -> Path:
    """A gwd CA with the gateway's client certificate and a backend certificate for 127.0.0.1, made by the CLI."""
    directory = tmp_path / "pki"
    assert gwd_cli("certs", "init", str(directory)).returncode == 0
    made = gwd_cli("certs", "issue", str(directory), "--name", "backend", "--san", "127.0.0.1")
    assert made.returncode == 0, made.stderr
    return directory


def server_context(pki: Path, name: str = "backend", client_ca: Path | None = None) -> ssl.SSLContext:
    """A backend's context: its certificate, and client certificates from ``client_ca`` required when given."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pki / f"{name}.pem", pki / f"{name}.key")
    if client_ca is not None:
        context.load_verify_locations(client_ca)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def proxy_config(backend: Backend, tls: str) -> str:
    return f"""
[[routes]]
route = "GET /echo"
integration = {{ type = "http", uri = "{backend.url}/echo", tls = {{ {tls} }} }}
"""


def mtls(pki: Path) -> str:
    return f'client_cert = "{pki}/gateway.pem", client_key = "{pki}/gateway.key", ca = "{pki}/ca.pem"'


def test_certs_cli_makes_a_verifiable_chain_with_private_keys_0600(pki):
    ca = x509.load_pem_x509_certificate((pki / "ca.pem").read_bytes())
    for name in ("gateway", "backend"):
        certificate = x509.load_pem_x509_certificate((pki / f"{name}.pem").read_bytes())
        certificate.verify_directly_issued_by(ca)  # raises if the signature or issuer is wrong
        assert os.stat(pki / f"{name}.key").st_mode & 0o777 == 0o600
    assert os.stat(pki / "ca.key").st_mode & 0o777 == 0o600
    shown = gwd_cli("certs", "show", str(pki / "backend.pem"))
    assert shown.returncode == 0
    assert "CN=backend" in shown.stdout and "127.0.0.1" in shown.stdout and "CN=gwd private CA" in shown.stdout
    assert "824 days" in shown.stdout
    again = gwd_cli("certs", "init", str(pki))
    assert again.returncode != 0 and "already holds a CA" in again.stderr  # a CA is never replaced by accident


@pytest.mark.parametrize(
    "args,problem",
    [
        (("--days", "-5", "--san", "127.0.0.1"), "number of days from 1"),
        (("--days", "0", "--san", "127.0.0.1"), "number of days from 1"),
        (("--san", "not a host!"), "neither an IP address nor a DNS name"),
        (("--san", "a..b"), "neither an IP address nor a DNS name"),
    ],
    ids=["negative-days", "zero-days", "not-a-host", "empty-label"],
)
def test_certs_issue_refuses_bad_arguments_without_writing(pki, args, problem):
    result = gwd_cli("certs", "issue", str(pki), "--name", "refused", *args)
    assert result.returncode == 2, result
    assert problem in result.stderr and "Traceback" not in result.stderr
    assert not (pki / "refused.pem").exists()


def test_certs_issue_takes_ip_addresses_and_dns_names(pki):
    result = gwd_cli("certs", "issue", str(pki), "--name", "names", "--san", "::1", "--san", "api.example.com", "--san", "*.example.com")
    assert result.returncode == 0, result.stderr
    shown = gwd_cli("certs", "show", str(pki / "names.pem")).stdout
    assert "::1" in shown and "api.example.com" in shown and "*.example.com" in shown


def test_mtls_backend_refuses_a_direct_call_and_answers_through_gwd(pki, start_daemon):
    with Backend(ssl_context=server_context(pki, client_ca=pki / "ca.pem")) as backend:
        client = ssl.create_default_context(cafile=str(pki / "ca.pem"))  # trusts the backend, has no certificate
        conn = http.client.HTTPSConnection("127.0.0.1", backend.port, context=client, timeout=10)
        with pytest.raises((ssl.SSLError, ConnectionError, http.client.RemoteDisconnected)):
            conn.request("GET", "/echo")
            conn.getresponse().read()
        conn.close()
        assert backend.received == []

        daemon = start_daemon(proxy_config(backend, mtls(pki)))
        reply = daemon.get("/echo")
        assert reply.status == 200, reply.body
        gateway = x509.load_pem_x509_certificate((pki / "gateway.pem").read_bytes())
        assert int(backend.received[-1].client_cert_serial, 16) == gateway.serial_number


def test_an_mtls_backend_refusing_gwd_without_a_certificate_is_a_tls_failure(pki, start_daemon):
    """OpenSSL's own server, as nginx does, answers a missing client certificate with a TLS alert."""
    port = free_port()
    server = subprocess.Popen(
        ["openssl", "s_server", "-accept", f"127.0.0.1:{port}", "-cert", str(pki / "backend.pem"), "-key", str(pki / "backend.key"),
         "-CAfile", str(pki / "ca.pem"), "-Verify", "1", "-verify_return_error", "-www", "-quiet"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: port_open(port), 10, "openssl s_server to listen")
        daemon = start_daemon(f"""
[[routes]]
route = "GET /echo"
integration = {{ type = "http", uri = "https://127.0.0.1:{port}/", tls = {{ ca = "{pki}/ca.pem" }} }}
""")
        reply = daemon.get("/echo")
        assert reply.status == 502
        lines = wait_for(lambda: daemon.access_lines(), 10, "the access-log line")
        assert lines[0]["integrationError"] == "tls", lines[0]
        assert "TLSV13_ALERT_CERTIFICATE_REQUIRED" in daemon.stderr()
    finally:
        server.kill()
        server.wait(10)


def port_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


@pytest.mark.parametrize(
    "case,reason",
    [
        ("another CA", "unable to get local issuer certificate"),
        ("expired", "certificate has expired"),
        ("wrong host name", "mismatch, certificate is not valid for '127.0.0.1'"),
    ],
)
def test_a_backend_certificate_that_fails_verification_is_a_502_with_the_reason_logged(pki, tmp_path, start_daemon, case, reason):
    if case == "another CA":
        other = tmp_path / "other"
        assert gwd_cli("certs", "init", str(other)).returncode == 0
        assert gwd_cli("certs", "issue", str(other), "--name", "backend", "--san", "127.0.0.1").returncode == 0
        context = server_context(other)
    elif case == "expired":
        issue(str(pki), "old", sans=["127.0.0.1"], days=1, not_before=datetime.now(timezone.utc) - timedelta(days=3))
        context = server_context(pki, "old")
    else:
        issue(str(pki), "elsewhere", sans=["backend.internal.example"])
        context = server_context(pki, "elsewhere")
    with Backend(ssl_context=context) as backend:
        daemon = start_daemon(proxy_config(backend, mtls(pki)))
        reply = daemon.get("/echo")
        assert reply.status == 502
        assert reply.json() == {"message": "Bad Gateway"}
        wait_for(lambda: reason in daemon.stderr(), 10, "the reason in the log")
        assert backend.received == []


def test_server_name_names_the_certificate_to_expect(pki, start_daemon):
    issue(str(pki), "named", sans=["backend.internal.example"])
    with Backend(ssl_context=server_context(pki, "named")) as backend:
        daemon = start_daemon(proxy_config(backend, f'ca = "{pki}/ca.pem", server_name = "backend.internal.example"'))
        assert daemon.get("/echo").status == 200


def test_insecure_skip_verify_works_and_warns(tmp_path, start_daemon):
    other = tmp_path / "other"
    assert gwd_cli("certs", "init", str(other)).returncode == 0
    assert gwd_cli("certs", "issue", str(other), "--name", "backend", "--san", "127.0.0.1").returncode == 0
    with Backend(ssl_context=server_context(other)) as backend:
        daemon = start_daemon(proxy_config(backend, "insecure_skip_verify = true"))
        assert daemon.get("/echo").status == 200
        assert "backend certificates are not verified" in daemon.stderr()


def test_insecure_skip_verify_never_comes_with_a_client_certificate(pki, tmp_path):
    config = tmp_path / "gwd.toml"
    config.write_text(proxy_config(Backend(), mtls(pki) + ", insecure_skip_verify = true").replace("http://", "https://"))
    checked = gwd_cli("check", "-c", str(config))
    assert checked.returncode == 78
    assert "routes[0].integration.tls.insecure_skip_verify" in checked.stderr
    assert "never presented" in checked.stderr


def test_a_private_key_others_can_read_stops_start_up_naming_the_file(pki, tmp_path):
    os.chmod(pki / "gateway.key", 0o644)
    config = tmp_path / "gwd.toml"
    config.write_text(proxy_config(Backend(), mtls(pki)).replace("http://", "https://"))
    run = subprocess.run(
        [sys.executable, "-m", "gwd", "run", "-c", str(config), "--listen", "127.0.0.1:1"],
        capture_output=True, text=True, cwd=ROOT, timeout=60,
    )
    assert run.returncode == 78
    assert f"{pki}/gateway.key" in run.stderr and "0644" in run.stderr and "chmod 600" in run.stderr
    assert "ready:" not in run.stderr


def test_an_expiring_client_certificate_is_logged_and_a_renewal_is_used_after_reload(pki, start_daemon):
    issue(str(pki), "gateway", sans=[], days=5, client=True, force=True)
    with Backend(ssl_context=server_context(pki, client_ca=pki / "ca.pem")) as backend:
        daemon = start_daemon(proxy_config(backend, mtls(pki)))
        assert "expires in 4 days" in daemon.stderr()
        assert daemon.get("/echo").status == 200
        first = int(backend.received[-1].client_cert_serial, 16)

        renewed = gwd_cli("certs", "issue", str(pki), "--name", "gateway", "--client", "--force")
        assert renewed.returncode == 0, renewed.stderr
        daemon.signal(signal.SIGHUP)
        wait_for(lambda: "reload complete" in daemon.stderr(), 20, "the reload")
        serial = x509.load_pem_x509_certificate((pki / "gateway.pem").read_bytes()).serial_number
        assert serial != first

        def renewed_certificate_presented() -> bool:
            return daemon.get("/echo").status == 200 and int(backend.received[-1].client_cert_serial, 16) == serial

        wait_for(renewed_certificate_presented, 20, "the renewed certificate to reach the backend")
        assert daemon.stderr().count("expires in 4 days") == 1  # not again at the reload: the renewal is good for years


def test_an_https_upstream_presents_its_client_certificate_to_every_target(pki, start_daemon):
    with Backend(ssl_context=server_context(pki, client_ca=pki / "ca.pem")) as first, Backend(
        ssl_context=server_context(pki, client_ca=pki / "ca.pem")
    ) as second:
        config = f"""
[[upstreams]]
name = "secure"
scheme = "https"
targets = [{{ address = "127.0.0.1:{first.port}" }}, {{ address = "127.0.0.1:{second.port}" }}]
tls = {{ {mtls(pki)} }}

[[routes]]
route = "GET /echo"
integration = {{ type = "http", uri = "https://upstream:secure/echo" }}
"""
        daemon = start_daemon(config, workers=1)
        assert [daemon.get("/echo").status for _ in range(4)] == [200] * 4
        gateway = x509.load_pem_x509_certificate((pki / "gateway.pem").read_bytes())
        for backend in (first, second):
            assert [int(r.client_cert_serial, 16) for r in backend.received] == [gateway.serial_number] * 2
