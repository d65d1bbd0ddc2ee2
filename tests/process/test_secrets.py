"""No secret in any log or the metrics scrape: API keys, bearer tokens (good and bad), cookies, Authorization values."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import jwt
import pytest
from backend import Backend
from cryptography.hazmat.primitives.asymmetric import rsa
from jwks_server import JsonServer, JwksServer
from support import ROOT, request, scrape, total, wait_for

pytestmark = pytest.mark.process

API_KEY = "K3y-Value-That-Must-Never-Be-Logged-0001"
COOKIE = "session=C00kie-Value-Never-Logged-0002"
BASIC = "Basic QmFzaWMtQ3JlZHMtTmV2ZXItTG9nZ2VkLTAwMDM="
BAD_TOKEN = "eyJhbGciOiJSUzI1NiJ9.QmFkLVRva2VuLU5ldmVyLUxvZ2dlZC0wMDA0.c2ln"
PARTNER_TOKEN = "Partner-Token-Never-Logged-0005"


def test_no_secret_reaches_a_log(tmp_path, start_daemon):
    signing_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = jwt.algorithms.RSAAlgorithm.to_jwk(signing_key.public_key(), as_dict=True) | {"kid": "k1"}
    good_token = jwt.encode(
        {"iss": "https://issuer.test", "aud": "api", "sub": "user-1", "exp": int(time.time()) + 300},
        signing_key,
        algorithm="RS256",
        headers={"kid": "k1"},
    )
    expired_token = jwt.encode(
        {"iss": "https://issuer.test", "aud": "api", "sub": "user-1", "exp": int(time.time()) - 3600},
        signing_key,
        algorithm="RS256",
        headers={"kid": "k1"},
    )
    access_log = tmp_path / "access.log"
    with JwksServer(lambda: {"keys": [jwk]}) as issuer, JsonServer(lambda _: (500, {})) as partner, Backend() as backend:
        config = f"""
[server]
state_dir = "{tmp_path / 'state'}"

[log]
access = "{access_log}"
level = "debug"

[metrics]
per_key = true

[[authorizers]]
name = "users"
type = "jwt"
issuer = "https://issuer.test"
audience = "api"
jwks_uri = "{issuer.url}"

[[authorizers]]
name = "partners"
type = "request"
uri = "{partner.url}"
identity_sources = ["header:Authorization"]

[[routes]]
route = "GET /keyed"
integration = {{ type = "http", uri = "{backend.url}/keyed" }}
api_key_required = true

[[routes]]
route = "GET /users"
integration = {{ type = "http", uri = "{backend.url}/users" }}
authorizer = "users"

[[routes]]
route = "GET /partners"
integration = {{ type = "http", uri = "{backend.url}/partners" }}
authorizer = "partners"

[[routes]]
route = "GET /broken"
integration = {{ type = "http", uri = "http://127.0.0.1:9/broken" }}
"""
        daemon = start_daemon(config, workers=2)
        created = subprocess.run(
            [sys.executable, "-m", "gwd", "keys", "create", "--name", "ci", "--value", API_KEY, "-c", str(daemon.config_path)],
            capture_output=True, text=True, cwd=ROOT, timeout=60,
        )
        assert created.returncode == 0, created.stderr
        wait_for(lambda: request(daemon.port, "GET", "/keyed", headers={"x-api-key": API_KEY}).status == 200, 10, "the key")
        statuses = [
            request(daemon.port, "GET", "/keyed", headers={"x-api-key": API_KEY[:-1] + "X", "Cookie": COOKIE}).status,
            request(daemon.port, "GET", "/users", headers={"Authorization": f"Bearer {good_token}", "Cookie": COOKIE}).status,
            request(daemon.port, "GET", "/users", headers={"Authorization": f"Bearer {expired_token}"}).status,
            request(daemon.port, "GET", "/users", headers={"Authorization": f"Bearer {BAD_TOKEN}"}).status,
            request(daemon.port, "GET", "/users", headers={"Authorization": BASIC}).status,
            request(daemon.port, "GET", "/partners", headers={"Authorization": PARTNER_TOKEN}).status,
            request(daemon.port, "GET", "/broken", headers={"Authorization": BASIC, "Cookie": COOKIE}).status,
        ]
        assert statuses == [403, 200, 401, 401, 401, 500, 502]
        # A malformed request carrying secrets: the parser's complaint must not quote it.
        with socket.create_connection(("127.0.0.1", daemon.port), timeout=5) as conn:
            conn.sendall(b"G\x00T /users HTTP/1.1\r\nHost: x\r\nx-api-key: " + API_KEY.encode() + b"\r\nCookie: " + COOKIE.encode() + b"\r\n\r\n")
            answer = conn.recv(65536)
        assert answer.startswith(b"HTTP/1.") and API_KEY.encode() not in answer and COOKIE.encode() not in answer
        wait_for(lambda: access_log.exists() and len(access_log.read_text().splitlines()) >= 8, 10, "the access log")
        wait_for(lambda: "authorizer partners failed" in daemon.stderr(), 10, "the authorizer failure in the log")
        wait_for(lambda: total(scrape(daemon), "gwd_api_key_requests_total") >= 1, 5, "per-key counts in /metrics")
        metrics = scrape(daemon)
        daemon.stop()

    logs = {
        "stderr": daemon.stderr(),
        "stdout": daemon.stdout_path.read_text(),
        "access log": access_log.read_text(),
        "metrics scrape": metrics,
    }
    secrets = [API_KEY, COOKIE.split("=", 1)[1], BASIC.split()[1], good_token, expired_token, BAD_TOKEN, PARTNER_TOKEN]
    # The parts of a JWT are secrets too (the signature especially), not only the whole.
    secrets += [part for token in (good_token, expired_token) for part in token.split(".")[1:]]
    for where, text in logs.items():
        for secret in secrets:
            assert secret not in text, f"a secret is in the {where}"
    assert "debug" in daemon.stderr().lower() or "DEBUG" in daemon.stderr()  # the debug level was on: the check saw everything
