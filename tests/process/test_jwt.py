"""JWT authorizer: each way a token can be wrong gets its status; keys from a real JWKS server, refetched on a new kid."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from pathlib import Path

import jwt
import pytest
from backend import Backend
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwks_server import JwksServer
from support import request, wait_for

pytestmark = pytest.mark.process

ISSUER = "https://issuer.test"
AUDIENCE = "gwd-api"


class Keys:
    """The issuer's signing keys; the JWKS server publishes the public halves of those in ``published``."""

    def __init__(self) -> None:
        self.rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.ec = ec.generate_private_key(ec.SECP256R1())
        self.ed = ed25519.Ed25519PrivateKey.generate()
        self.rotated = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.published = {"rsa-1": self.rsa, "ec-1": self.ec, "ed-1": self.ed}

    def jwks(self) -> dict:
        keys = []
        for kid, key in self.published.items():
            jwk = json.loads(jwt.algorithms.get_default_algorithms()[_algorithm(key)].to_jwk(key.public_key()))
            keys.append(jwk | {"kid": kid})
        return {"keys": keys}


def _algorithm(key: object) -> str:
    return {rsa.RSAPrivateKey: "RS256", ec.EllipticCurvePrivateKey: "ES256", ed25519.Ed25519PrivateKey: "EdDSA"}[
        next(kind for kind in (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey, ed25519.Ed25519PrivateKey) if isinstance(key, kind))
    ]


def token(key: object, kid: str, **claims: object) -> str:
    now = int(time.time())
    payload = {"iss": ISSUER, "aud": AUDIENCE, "sub": "user-7", "iat": now, "exp": now + 300, "scope": "pets:read"}
    payload.update(claims)
    return jwt.encode({k: v for k, v in payload.items() if v is not None}, key, algorithm=_algorithm(key), headers={"kid": kid})


def unsigned(**claims: object) -> str:
    """A token with ``alg: none``."""
    now = int(time.time())
    payload = {"iss": ISSUER, "aud": AUDIENCE, "sub": "user-7", "exp": now + 300, "scope": "pets:read"} | claims

    def part(data: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT', 'kid': 'rsa-1'})}.{part(payload)}."


def hmac_with_public_key(keys: Keys) -> str:
    """Algorithm confusion: HS256 keyed with the issuer's RSA *public* key, as an attacker can."""
    public_pem = keys.rsa.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    now = int(time.time())
    payload = {"iss": ISSUER, "aud": AUDIENCE, "sub": "attacker", "exp": now + 300, "scope": "pets:read"}
    header = {"alg": "HS256", "typ": "JWT", "kid": "rsa-1"}

    def part(data: dict) -> bytes:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=")

    signing_input = part(header) + b"." + part(payload)
    signature = base64.urlsafe_b64encode(hmac.new(public_pem, signing_input, hashlib.sha256).digest()).rstrip(b"=")
    return (signing_input + b"." + signature).decode()


CONFIG = """
[[authorizers]]
name = "users"
type = "jwt"
issuer = "{issuer}"
audience = "{audience}"
jwks_uri = "{jwks}"
claim_headers = {{ sub = "X-User-Id" }}

[[routes]]
route = "GET /pets"
integration = {{ type = "http", uri = "{backend}/pets" }}
authorizer = "users"
scopes = ["pets:read"]

[[routes]]
route = "DELETE /pets"
integration = {{ type = "http", uri = "{backend}/pets" }}
authorizer = "users"
scopes = ["pets:write"]
"""


@pytest.fixture
def keys() -> Keys:
    return Keys()


@pytest.fixture
def setup(keys, start_daemon):
    with JwksServer(keys.jwks) as issuer, Backend() as backend:
        daemon = start_daemon(
            CONFIG.format(issuer=ISSUER, audience=AUDIENCE, jwks=issuer.url, backend=backend.url), workers=1
        )
        yield daemon, backend, issuer


def call(daemon, bearer: str | None, method: str = "GET", headers: dict[str, str] | None = None) -> int:
    headers = dict(headers or {})
    if bearer is not None:
        headers["Authorization"] = f"Bearer {bearer}"
    return request(daemon.port, method, "/pets", headers=headers).status


def test_each_kind_of_token_gets_its_status(setup, keys):
    daemon, backend, issuer = setup
    now = int(time.time())
    cases = [
        ("valid RS256", token(keys.rsa, "rsa-1"), "GET", 200),
        ("valid ES256", token(keys.ec, "ec-1"), "GET", 200),
        ("valid EdDSA", token(keys.ed, "ed-1"), "GET", 200),
        ("expired", token(keys.rsa, "rsa-1", exp=now - 120), "GET", 401),  # past the 60 s leeway
        ("expired within leeway", token(keys.rsa, "rsa-1", exp=now - 20), "GET", 200),
        ("not yet valid", token(keys.rsa, "rsa-1", nbf=now + 600), "GET", 401),
        ("wrong issuer", token(keys.rsa, "rsa-1", iss="https://elsewhere.test"), "GET", 401),
        ("wrong audience", token(keys.rsa, "rsa-1", aud="another-api"), "GET", 401),
        ("no expiry", token(keys.rsa, "rsa-1", exp=None), "GET", 401),
        ("bad signature", token(keys.rsa, "rsa-1")[:-6] + "AAAAAA", "GET", 401),
        ("signed by another key", token(rsa.generate_private_key(public_exponent=65537, key_size=2048), "rsa-1"), "GET", 401),
        ("ES256 under an RSA kid", token(keys.ec, "rsa-1"), "GET", 401),
        ("alg none", unsigned(), "GET", 401),
        ("HS256 with the public key", hmac_with_public_key(keys), "GET", 401),
        ("garbage", "not.a.token", "GET", 401),
        ("missing scope", token(keys.rsa, "rsa-1"), "DELETE", 403),
        ("scope in scp", token(keys.rsa, "rsa-1", scope=None, scp=["pets:write"]), "DELETE", 200),
        ("no token", None, "GET", 401),
    ]
    results = {name: call(daemon, bearer, method) for name, bearer, method, _ in cases}
    assert results == {name: status for name, _, _, status in cases}
    assert call(daemon, None, headers={"Authorization": "Basic dXNlcjpwYXNz"}) == 401
    # Only the allowed requests reached the backend, with the subject set by gwd.
    allowed = sum(1 for *_, status in cases if status == 200)
    assert len(backend.received) == allowed
    assert {received.header("X-User-Id") for received in backend.received} == {"user-7"}


def test_a_client_cannot_forge_the_claim_header(setup, keys):
    daemon, backend, _ = setup
    assert call(daemon, token(keys.rsa, "rsa-1", sub="alice"), headers={"X-User-Id": "admin"}) == 200
    assert [value for name, value in backend.received[-1].headers if name.lower() == "x-user-id"] == ["alice"]


def test_401_is_json_and_asks_for_a_bearer_token(setup):
    daemon, _, _ = setup
    reply = request(daemon.port, "GET", "/pets")
    assert reply.status == 401
    assert reply.json() == {"message": "Unauthorized"}
    assert reply.headers["www-authenticate"] == "Bearer"


def test_an_unknown_kid_refetches_the_key_set_at_most_once_a_minute(setup, keys):
    daemon, _, issuer = setup
    assert call(daemon, token(keys.rsa, "rsa-1")) == 200
    fetches = issuer.fetches
    assert fetches == 1
    # The issuer rotates in a new key: a token signed with it makes gwd fetch again.
    keys.published["rsa-2"] = keys.rotated
    assert call(daemon, token(keys.rotated, "rsa-2")) == 200
    assert issuer.fetches == 2
    # Tokens naming kids nobody published do not make gwd fetch again within the minute.
    for n in range(5):
        assert call(daemon, token(keys.rotated, f"made-up-{n}")) == 401
    assert issuer.fetches == 2


def test_keys_unreachable_is_503_not_an_allow(keys, start_daemon):
    with Backend() as backend:
        daemon = start_daemon(
            CONFIG.format(issuer=ISSUER, audience=AUDIENCE, jwks="http://127.0.0.1:9/jwks.json", backend=backend.url),
            workers=1,
        )
        assert call(daemon, token(keys.rsa, "rsa-1")) == 503
        wait_for(lambda: "cannot fetch keys from http://127.0.0.1:9/jwks.json" in daemon.stderr(), 10, "the log line")
        assert backend.received == []


def test_static_public_keys_and_the_subject_in_the_access_log(keys, tmp_path: Path, start_daemon):
    pem = tmp_path / "issuer.pem"
    pem.write_bytes(keys.ec.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    config = CONFIG.format(issuer=ISSUER, audience=AUDIENCE, jwks="x", backend="http://127.0.0.1:9")
    config = config.replace('jwks_uri = "x"', f'public_keys = ["{pem}"]').replace("http://127.0.0.1:9/pets", "BACKEND")
    with Backend() as backend:
        daemon = start_daemon(config.replace("BACKEND", f"{backend.url}/pets") + '\n[log]\naccess = "stdout"\n', workers=1)
        assert call(daemon, token(keys.ec, "any", sub="carol")) == 200
        assert call(daemon, token(keys.rsa, "rsa-1")) == 401  # an RSA token: no RSA key configured
        # JSON may carry a lone surrogate, which is no UTF-8: the claim header and the log line carry it as an escape.
        assert call(daemon, token(keys.ec, "any", sub="dave-\ud800")) == 200
        assert backend.received[-1].header("X-User-Id") == "dave-\\ud800"
        wait_for(lambda: len(daemon.access_lines()) == 3, 10, "three access-log lines")
        assert [line["principalId"] for line in daemon.access_lines()] == ["carol", None, "dave-\\ud800"]


def test_the_subject_can_key_a_client_limit(keys, start_daemon):
    with JwksServer(keys.jwks) as issuer, Backend() as backend:
        config = CONFIG.format(issuer=ISSUER, audience=AUDIENCE, jwks=issuer.url, backend=backend.url)
        config = config.replace('scopes = ["pets:read"]', 'scopes = ["pets:read"]\nclient_throttle = { rate = 0.01, burst = 1, key = "claim:sub" }')
        daemon = start_daemon(config, workers=2)
        alice, bob = token(keys.rsa, "rsa-1", sub="alice"), token(keys.rsa, "rsa-1", sub="bob")
        assert [call(daemon, alice), call(daemon, alice), call(daemon, bob), call(daemon, bob)] == [200, 429, 200, 429]
