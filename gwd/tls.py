"""TLS contexts (the listener's, and backends' with the gateway's client certificate), and key-file checks.

The config loader runs the checks, so a missing file, a key others may
read, a certificate that does not match its key or a CA file that does not
parse stops start-up (or a reload) with the file named; the worker builds
the same contexts again from the same files.
"""

from __future__ import annotations

import os
import ssl
import stat
from datetime import datetime, timezone

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from gwd.config.values import DomainNames

MINIMUM_VERSION = ssl.TLSVersion.TLSv1_2
EXPIRY_WARNING_DAYS = 14
"""A client certificate this close to its end is logged at start and at every reload."""


def private_key_problem(path: str) -> str | None:
    """Why the private key file at ``path`` must not be used, or None.

    Like ssh, refuse a key that anyone but its owner may read or write.
    """
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        return f"cannot read {path}: {exc.strerror}"
    if not stat.S_ISREG(mode):
        return f"{path} is not a regular file"
    if mode & 0o077:
        return f"private key {path} may be read or written by group or others (mode {stat.S_IMODE(mode):04o}): chmod 600 {path}"
    if not os.access(path, os.R_OK):
        return f"cannot read {path}: permission denied"
    return None


def backend_context(
    client_cert: str | None, client_key: str | None, ca: str | None, insecure_skip_verify: bool
) -> ssl.SSLContext:
    """A client context: TLS >= 1.2, the backend's certificate verified against ``ca`` (else the system's CAs)."""
    context = ssl.create_default_context(cafile=ca)
    context.minimum_version = MINIMUM_VERSION
    if insecure_skip_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if client_cert is not None:
        context.load_cert_chain(client_cert, client_key)
    return context


def listener_context(cert: str, key: str, client_ca: str | None, client_auth: str) -> ssl.SSLContext:
    """A server context: TLS >= 1.2, ALPN http/1.1, client certificates per ``client_auth``."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = MINIMUM_VERSION
    context.set_alpn_protocols(["http/1.1"])
    context.load_cert_chain(cert, key)
    if client_auth != "none":
        context.load_verify_locations(cafile=client_ca)
        context.verify_mode = ssl.CERT_REQUIRED if client_auth == "require" else ssl.CERT_OPTIONAL
    return context


def choose_by_name(default: ssl.SSLContext, named: dict[str, ssl.SSLContext]) -> None:
    """Make ``default`` hand a handshake to ``named``'s context for the server name (SNI) the client sent.

    Names are domain names (``*.example.com`` stands for any one label
    more; an exact name wins); a client that sends no name, or one not
    listed, gets ``default``'s certificate.
    """
    contexts = DomainNames(named)

    def choose(connection: ssl.SSLObject, server_name: str | None, _: ssl.SSLContext) -> None:
        context = contexts.find(server_name) if server_name else None
        if context is not None:
            connection.context = context

    default.sni_callback = choose


def expiry_warning(path: str, now: datetime | None = None) -> str | None:
    """A line to log when the certificate in ``path`` has expired or expires within EXPIRY_WARNING_DAYS."""
    try:
        with open(path, "rb") as f:
            certificate = x509.load_pem_x509_certificate(f.read())
    except (OSError, ValueError):
        return None  # the context build reports unreadable files
    now = now or datetime.now(timezone.utc)
    left = certificate.not_valid_after_utc - now
    subject = certificate.subject.rfc4514_string()
    if left.total_seconds() <= 0:
        return f"certificate {path} ({subject}) expired on {certificate.not_valid_after_utc:%Y-%m-%d %H:%M} UTC"
    if left.days < EXPIRY_WARNING_DAYS:
        return f"certificate {path} ({subject}) expires in {left.days} days, on {certificate.not_valid_after_utc:%Y-%m-%d %H:%M} UTC"
    return None


def load_public_key(path: str) -> PublicKeyTypes:
    """The public key in a PEM file: a bare public key, or a certificate's; ValueError if neither."""
    with open(path, "rb") as f:
        data = f.read()
    try:
        return serialization.load_pem_public_key(data)
    except ValueError:
        return x509.load_pem_x509_certificate(data).public_key()
