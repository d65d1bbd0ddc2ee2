"""HTTPS on the listener: TLS >= 1.2, ALPN, client certificates required or optional, subject rules, the log."""

from __future__ import annotations

import http.client
import socket
import ssl
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
from cryptography import x509
from support import ROOT, wait_for

pytestmark = pytest.mark.process


def gwd_cli(*args: str) -> None:
    done = subprocess.run([sys.executable, "-m", "gwd", *args], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 0, done.stderr


@pytest.fixture
def pki(tmp_path: Path) -> Path:
    directory = tmp_path / "pki"
    gwd_cli("certs", "init", str(directory))
    gwd_cli("certs", "issue", str(directory), "--name", "server", "--san", "127.0.0.1")
    for client in ("alice", "billing"):
        gwd_cli("certs", "issue", str(directory), "--name", client, "--client")
    return directory


def config(pki: Path, client_auth: str) -> str:
    return f"""
[server]
tls = {{ cert = "{pki}/server.pem", key = "{pki}/server.key", client_ca = "{pki}/ca.pem", client_auth = "{client_auth}" }}

[log]
access = "stdout"

[[routes]]
route = "GET /hello"
integration = {{ type = "mock", body = "hello" }}

[[routes]]
route = "GET /billing"
integration = {{ type = "mock", body = "invoices" }}
client_cert_subject = "CN=billing"
"""


def client_context(pki: Path, name: str | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    context.set_alpn_protocols(["h2", "http/1.1"])
    if name is not None:
        context.load_cert_chain(pki / f"{name}.pem", pki / f"{name}.key")
    return context


def get(port: int, context: ssl.SSLContext, path: str) -> tuple[int, str | None]:
    """Status and the negotiated ALPN protocol of one HTTPS GET."""
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        return response.status, conn.sock.selected_alpn_protocol()
    finally:
        conn.close()


def test_required_client_certificates(pki, start_daemon):
    daemon = start_daemon(config(pki, "require"))
    assert "listening on https://" in daemon.stderr()
    with pytest.raises((ssl.SSLError, ConnectionError, http.client.RemoteDisconnected)):
        get(daemon.port, client_context(pki, None), "/hello")

    assert get(daemon.port, client_context(pki, "alice"), "/hello") == (200, "http/1.1")
    assert get(daemon.port, client_context(pki, "alice"), "/billing")[0] == 403  # the subject rule
    assert get(daemon.port, client_context(pki, "billing"), "/billing")[0] == 200

    alice = x509.load_pem_x509_certificate((pki / "alice.pem").read_bytes())
    wait_for(lambda: len(daemon.access_lines()) >= 3, 10, "three access-log lines")
    (line,) = [line for line in daemon.access_lines() if line["path"] == "/hello"]  # workers write in any order
    assert line["status"] == 200
    assert line["clientCert"]["subjectDN"] == "CN=alice"
    assert line["clientCert"]["issuerDN"] == "CN=gwd private CA"
    assert int(line["clientCert"]["serialNumber"], 16) == alice.serial_number
    assert line["clientCert"]["validity"]["notAfter"] == alice.not_valid_after_utc.isoformat()


def test_optional_client_certificates(pki, start_daemon):
    daemon = start_daemon(config(pki, "optional"))
    assert get(daemon.port, client_context(pki, None), "/hello")[0] == 200
    assert get(daemon.port, client_context(pki, None), "/billing")[0] == 403  # no certificate, no match
    assert get(daemon.port, client_context(pki, "billing"), "/billing")[0] == 200
    wait_for(lambda: len(daemon.access_lines()) >= 3, 10, "three access-log lines")
    by_status = {(line["path"], line["status"]): line for line in daemon.access_lines()}
    assert "clientCert" not in by_status["/hello", 200]
    assert "clientCert" not in by_status["/billing", 403]
    assert by_status["/billing", 200]["clientCert"]["subjectDN"] == "CN=billing"


def handshake(port: int, version: ssl.TLSVersion) -> str:
    """Complete a handshake offering only ``version``; the version agreed."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_ciphers("DEFAULT:@SECLEVEL=0")  # let this client offer TLS 1.1 at all
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = context.maximum_version = version
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with context.wrap_socket(raw) as wrapped:
            return wrapped.version()


def test_tls_1_1_is_refused_by_the_server(pki, start_daemon):
    daemon = start_daemon(config(pki, "optional"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        old = ssl.TLSVersion.TLSv1_1
    # uvloop closes without an alert, so the client may see EOF or a protocol-version alert.
    with pytest.raises(ssl.SSLError):
        handshake(daemon.port, old)
    assert handshake(daemon.port, ssl.TLSVersion.TLSv1_2) == "TLSv1.2"  # the same client, one version up
    assert get(daemon.port, client_context(pki, None), "/hello")[0] == 200  # and the worker serves on


def test_a_subject_rule_without_client_certificates_is_a_config_error(pki, tmp_path):
    path = tmp_path / "gwd.toml"
    path.write_text(config(pki, "none"))
    checked = subprocess.run([sys.executable, "-m", "gwd", "check", "-c", str(path)], capture_output=True, text=True, cwd=ROOT)
    assert checked.returncode == 78
    assert "routes[1].client_cert_subject" in checked.stderr and "client_auth" in checked.stderr


def test_a_key_that_is_not_the_certificates_is_named_with_both_files(pki, tmp_path):
    """The only problem reported is the root cause: no misleading line about routes' client_cert_subject."""
    path = tmp_path / "gwd.toml"
    path.write_text(config(pki, "require").replace(f"{pki}/server.key", f"{pki}/alice.key"))
    checked = subprocess.run([sys.executable, "-m", "gwd", "check", "-c", str(path)], capture_output=True, text=True, cwd=ROOT)
    assert checked.returncode == 78
    assert checked.stderr.splitlines() == [
        f"{path}: server.tls.key: the private key {pki}/alice.key is not the key of the certificate {pki}/server.pem",
        f"{path}: 1 problem",
    ], checked.stderr


def test_plain_http_to_the_https_port_gets_a_400_and_tls_still_works(pki, start_daemon):
    daemon = start_daemon(config(pki, "optional"))
    with socket.create_connection(("127.0.0.1", daemon.port), timeout=10) as sock:
        sock.sendall(b"GET /hello HTTP/1.1\r\nHost: gwd\r\n\r\n")
        reply = b""
        while chunk := sock.recv(4096):
            reply += chunk
    head, body = reply.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert body == b'{"message":"The plain HTTP request was sent to HTTPS port"}'
    assert get(daemon.port, client_context(pki, None), "/hello")[0] == 200


def test_a_connection_that_sends_nothing_to_the_https_port_is_closed(pki, start_daemon):
    daemon = start_daemon(config(pki, "optional").replace("[server]\n", '[server]\nheader_timeout = "1s"\n'))
    with socket.create_connection(("127.0.0.1", daemon.port), timeout=10) as sock:
        started = time.monotonic()
        assert sock.recv(4096) == b""
        assert time.monotonic() - started < 5
