"""A small private certificate authority for backend mTLS: ``gwd certs init|issue|show``.

``init`` makes a CA and the gateway's client certificate (what gwd presents
to backends that demand one); ``issue`` makes a certificate signed by that
CA for a backend (server) or another client.  Keys are ECDSA P-256, written
0600 through a temporary file and a rename, so a renewal never leaves a
half-written key where a running daemon's reload could read it.
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_FILE = "ca.pem"
CA_KEY_FILE = "ca.key"
GATEWAY_NAME = "gateway"
"""``init`` writes the gateway's client certificate as gateway.pem and gateway.key."""


class CertError(Exception):
    """A certificate operation that cannot be done; the message says why."""


@dataclass(frozen=True)
class Issued:
    certificate: str  # file paths
    key: str


def init_authority(directory: str, *, common_name: str = "gwd private CA", days: int = 3650, force: bool = False) -> tuple[Issued, Issued]:
    """Create ``directory`` with a CA and the gateway's client certificate; returns (CA, gateway) files."""
    _check_days(days)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    ca_paths = Issued(os.path.join(directory, CA_FILE), os.path.join(directory, CA_KEY_FILE))
    if not force and (os.path.exists(ca_paths.certificate) or os.path.exists(ca_paths.key)):
        raise CertError(f"{directory} already holds a CA ({CA_FILE}); pass --force to replace it and everything it signed")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.now(timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                key_encipherment=False, data_encipherment=False, key_agreement=False, encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_key(ca_paths.key, key)
    _write_file(ca_paths.certificate, certificate.public_bytes(serialization.Encoding.PEM), 0o644)
    gateway = issue(directory, GATEWAY_NAME, sans=[], days=min(days, 825), client=True, force=True)
    return ca_paths, gateway


def issue(
    directory: str,
    name: str,
    *,
    sans: list[str],
    days: int = 825,
    client: bool = False,
    force: bool = False,
    not_before: datetime | None = None,
) -> Issued:
    """Sign a certificate for ``name`` (its common name and file stem) with the CA in ``directory``.

    ``sans`` are IP addresses or DNS names; a server certificate needs at
    least one.  ``client`` makes a client certificate (for mTLS) instead.
    """
    _check_days(days)
    if not name or "/" in name or name.startswith("."):
        raise CertError(f"{name!r} is not a usable name: it becomes the file name NAME.pem")
    if not client and not sans:
        raise CertError("a server certificate needs at least one --san (an IP address or DNS name clients connect to)")
    paths = Issued(os.path.join(directory, f"{name}.pem"), os.path.join(directory, f"{name}.key"))
    if not force and os.path.exists(paths.certificate):
        raise CertError(f"{paths.certificate} exists; pass --force to replace it (a renewal)")
    ca_certificate, ca_key = _load_authority(directory)
    key = ec.generate_private_key(ec.SECP256R1())
    start = not_before or datetime.now(timezone.utc) - timedelta(minutes=5)
    usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),  # type: ignore[arg-type]
            critical=False,
        )
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName([_general_name(san) for san in sans]), critical=False)
    certificate = builder.sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    _write_key(paths.key, key)
    _write_file(paths.certificate, certificate.public_bytes(serialization.Encoding.PEM), 0o644)
    return paths


def describe(path: str) -> dict[str, str]:
    """What ``gwd certs show`` prints of the first certificate in a PEM file."""
    certificate = load_certificate(path)
    try:
        sans = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = [str(value) for value in sans.get_values_for_type(x509.IPAddress)] + sans.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        names = []
    left = certificate.not_valid_after_utc - datetime.now(timezone.utc)
    return {
        "subject": certificate.subject.rfc4514_string(),
        "issuer": certificate.issuer.rfc4514_string(),
        "serial": format(certificate.serial_number, "x"),
        "sans": ", ".join(names) or "-",
        "not_before": certificate.not_valid_before_utc.isoformat(),
        "not_after": certificate.not_valid_after_utc.isoformat(),
        "expires_in": "expired" if left.total_seconds() <= 0 else f"{left.days} days",
    }


def load_certificate(path: str) -> x509.Certificate:
    try:
        with open(path, "rb") as f:
            return x509.load_pem_x509_certificate(f.read())
    except OSError as exc:
        raise CertError(f"{path}: cannot read: {exc.strerror}") from None
    except ValueError:
        raise CertError(f"{path}: not a PEM certificate") from None


def _load_authority(directory: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    ca_path, key_path = os.path.join(directory, CA_FILE), os.path.join(directory, CA_KEY_FILE)
    if not os.path.exists(ca_path):
        raise CertError(f"{directory} holds no CA; run `gwd certs init {directory}` first")
    certificate = load_certificate(ca_path)
    try:
        with open(key_path, "rb") as f:
            key = serialization.load_pem_private_key(f.read(), password=None)
    except OSError as exc:
        raise CertError(f"{key_path}: cannot read: {exc.strerror}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise CertError(f"{key_path}: expected the ECDSA key `gwd certs init` writes")
    return certificate, key


def _check_days(days: int) -> None:
    if days < 1:
        raise CertError(f"a certificate must be valid for at least 1 day, not {days}")


_DNS_NAME = re.compile(r"(\*\.)?([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")


def check_san(text: str) -> str:
    """``text`` if it is an IP address or a DNS name (``*.`` allowed first), else a CertError saying so."""
    try:
        ipaddress.ip_address(text)
        return text
    except ValueError:
        pass
    if len(text) > 253 or not _DNS_NAME.fullmatch(text):
        raise CertError(f"{text!r} is neither an IP address nor a DNS name")
    return text


def _general_name(text: str) -> x509.GeneralName:
    check_san(text)
    try:
        return x509.IPAddress(ipaddress.ip_address(text))
    except ValueError:
        return x509.DNSName(text)


def _write_key(path: str, key: ec.EllipticCurvePrivateKey) -> None:
    data = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    _write_file(path, data, 0o600)


def _write_file(path: str, data: bytes, mode: int) -> None:
    """Write ``data`` to a new file with ``mode`` from the start, then rename it over ``path``."""
    temporary = f"{path}.tmp{os.getpid()}"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), mode)  # whatever the umask
            f.write(data)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise
