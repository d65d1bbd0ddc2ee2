"""JWT authorizer: bearer tokens verified with PyJWT against the issuer's keys.

What a token may do is decided by the config, never by the token: its
``alg`` must be one the authorizer lists (``none`` never is), an asymmetric
algorithm is verified only with a public key of its own family (RSA for
RS*/PS*, EC for ES*, OKP for EdDSA), and HS256 only with the configured
shared secret, so a token signed with the issuer's *public* key as an HMAC
secret (algorithm confusion) fails.  ``exp``, ``iss`` and ``aud`` are
required, ``nbf`` honoured, with ``leeway`` for clock skew.

Keys come from ``public_keys`` files and from ``jwks_uri``, fetched with a
1.5 s timeout when first needed and again when a token names an unknown
``kid``, a rotated-in key (at most once a minute, so made-up ids cannot
make gwd hammer the issuer).  Verified tokens are remembered until they expire, so a client
reusing its token costs a dict look-up, not a signature check.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import aiohttp
import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

from gwd.config.model import JwtAuthorizer
from gwd.tls import load_public_key

log = logging.getLogger("gwd.jwt")

JWKS_TIMEOUT = 1.5
JWKS_REFETCH_INTERVAL = 60.0
"""An unknown kid makes the key set be fetched again, at most this often."""
VERIFIED_CACHE_SIZE = 4096

_FAMILIES: dict[str, tuple[type, ...]] = {
    "RS": (rsa.RSAPublicKey,),
    "PS": (rsa.RSAPublicKey,),
    "ES": (ec.EllipticCurvePublicKey,),
    "Ed": (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey),
}


class TokenRejected(Exception):
    """The token is missing, malformed, unverifiable or not valid now (401); the message says why, for the log."""


class KeysUnavailable(Exception):
    """No key to check any token with: the key set could not be fetched (503)."""


class JwtVerifier:
    """One worker's verifier for one ``[[authorizers]]`` entry of type jwt."""

    def __init__(self, config: JwtAuthorizer) -> None:
        self.config = config
        self._algorithms = frozenset(config.algorithms)
        self._static_keys = [load_public_key(path) for path in config.public_keys]
        self._secret: bytes | None = None
        if config.secret_file is not None:
            with open(config.secret_file, "rb") as f:
                self._secret = f.read().strip()
        self._jwks: dict[str, Any] = {}  # kid -> public key
        self._loaded = False  # the first fetch has been tried
        self._refetched_at = -JWKS_REFETCH_INTERVAL  # the last fetch an unknown kid caused (monotonic)
        self._fetching: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None
        self._verified: dict[str, tuple[dict[str, Any], float]] = {}  # token -> (claims, expires at, epoch seconds)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def verify(self, token: str) -> dict[str, Any]:
        """The token's claims, or :class:`TokenRejected` / :class:`KeysUnavailable`."""
        remembered = self._verified.get(token)
        if remembered is not None:
            claims, expires = remembered
            if time.time() <= expires + self.config.leeway:
                return claims
            del self._verified[token]
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError as exc:
            raise TokenRejected(f"malformed token: {exc}") from None
        algorithm = header.get("alg")
        if algorithm not in self._algorithms:
            raise TokenRejected(f"algorithm {algorithm!r} is not accepted")
        key = await self._key_for(algorithm, header.get("kid"))
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                audience=list(self.config.audience),
                issuer=self.config.issuer,
                leeway=self.config.leeway,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.InvalidTokenError as exc:
            raise TokenRejected(str(exc) or type(exc).__name__) from None
        if len(self._verified) >= VERIFIED_CACHE_SIZE:
            self._verified.clear()
        self._verified[token] = (claims, float(claims["exp"]))
        return claims

    async def _key_for(self, algorithm: str, kid: object) -> Any:
        if algorithm == "HS256":
            if self._secret is None:
                raise TokenRejected("HS256 without a configured secret")
            return self._secret
        family = _FAMILIES[algorithm[:2]]
        if self.config.jwks_uri is not None:
            if not self._loaded:
                await self.refresh()
            if isinstance(kid, str):
                key = self._jwks.get(kid)
                if key is None and time.monotonic() - self._refetched_at >= JWKS_REFETCH_INTERVAL:
                    self._refetched_at = time.monotonic()
                    await self.refresh()
                    key = self._jwks.get(kid)
                if key is not None:
                    if not isinstance(key, family):
                        raise TokenRejected(f"key {kid!r} is not a key for {algorithm}")
                    return key
        # Without a matching kid: the one key of the algorithm's family, if there is exactly one.
        candidates = [key for key in self._static_keys if isinstance(key, family)]
        if kid is None:
            candidates += [key for key in self._jwks.values() if isinstance(key, family)]
        if len(candidates) == 1:
            return candidates[0]
        if self.config.jwks_uri is not None and not self._jwks and not self._static_keys:
            raise KeysUnavailable(f"no keys from {self.config.jwks_uri}")
        raise TokenRejected(f"no single {algorithm} key for kid {kid!r}")

    async def refresh(self) -> None:
        """Fetch the key set (one fetch at a time; waiters share it)."""
        if self._fetching is None:
            self._fetching = asyncio.get_running_loop().create_task(self._fetch())
        fetching = self._fetching
        try:
            await asyncio.shield(fetching)
        finally:
            if fetching.done() and self._fetching is fetching:
                self._fetching = None

    async def _fetch(self) -> None:
        uri = self.config.jwks_uri
        assert uri is not None
        self._loaded = True
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=JWKS_TIMEOUT))
        try:
            async with self._session.get(uri) as response:
                response.raise_for_status()
                document = await response.json(content_type=None)
            key_set = jwt.PyJWKSet.from_dict(document)
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError, jwt.PyJWKSetError) as exc:
            log.warning("authorizer %s: cannot fetch keys from %s: %s", self.config.name, uri, exc or type(exc).__name__)
            return
        self._jwks = {jwk.key_id: jwk.key for jwk in key_set.keys if jwk.key_id}
        log.info("authorizer %s: %d keys from %s", self.config.name, len(self._jwks), uri)


def bearer_token(value: str | None, header: str) -> str | None:
    """The token in the ``header`` value: after ``Bearer`` in Authorization, the whole value elsewhere."""
    if not value:
        return None
    if header.lower() != "authorization":
        return value.strip() or None
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def scopes_of(claims: dict[str, Any]) -> set[str]:
    """The scopes a token grants: ``scope`` (space-separated, OAuth 2) or ``scp`` (a list or a string)."""
    granted: set[str] = set()
    for name in ("scope", "scp"):
        value = claims.get(name)
        if isinstance(value, str):
            granted.update(value.split())
        elif isinstance(value, list):
            granted.update(item for item in value if isinstance(item, str))
    return granted
