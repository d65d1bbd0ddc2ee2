"""The client certificate a TLS listener verified, as routes and the access log see it.

A connection's certificate is parsed once, on its first request, and kept
in the connection's facts; a connection without TLS, or whose
client sent no certificate, has none.  With ``client_auth = "optional"`` or
``"require"`` every certificate that arrives has been verified against
``client_ca`` during the handshake, which fails otherwise.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cryptography import x509

if TYPE_CHECKING:
    from gwd.http.server import HttpConnection

_FACT = "clientcert"  # the key of the parsed certificate in a connection's facts


@dataclass(frozen=True, slots=True)
class ClientCert:
    subject_dn: str  # RFC 4514, as "CN=billing,O=Example"
    issuer_dn: str
    serial_number: str  # hex
    not_before: str  # ISO 8601, UTC
    not_after: str
    pem: str  # the certificate itself, as a function's event carries it

    def as_event(self) -> dict[str, object]:
        """AWS's ``clientCert`` of a function's event: the log's fields and ``clientCertPem``."""
        return {"clientCertPem": self.pem, **self.as_log()}

    def as_log(self) -> dict[str, object]:
        """AWS's ``requestContext.authentication.clientCert`` shape."""
        return {
            "subjectDN": self.subject_dn,
            "issuerDN": self.issuer_dn,
            "serialNumber": self.serial_number,
            "validity": {"notBefore": self.not_before, "notAfter": self.not_after},
        }


def client_certificate(connection: HttpConnection) -> ClientCert | None:
    """The verified certificate the client presented on this connection, or None."""
    facts = connection.facts
    try:
        return facts[_FACT]  # type: ignore[return-value]
    except KeyError:
        pass
    ssl_object = connection.extra_info("ssl_object")
    der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    found = None
    if der is not None:
        certificate = x509.load_der_x509_certificate(der)
        found = ClientCert(
            certificate.subject.rfc4514_string(),
            certificate.issuer.rfc4514_string(),
            format(certificate.serial_number, "x"),
            certificate.not_valid_before_utc.isoformat(),
            certificate.not_valid_after_utc.isoformat(),
            ssl.DER_cert_to_PEM_cert(der),
        )
    facts[_FACT] = found
    return found
