"""Resource policy stage: who may call a route at all, before authorization spends any work on them.

``allow`` and ``deny`` lists of networks, on the stage and on the route,
are checked against the client's real address (the TCP peer, or what a
trusted proxy's ``X-Forwarded-For`` says; see :mod:`gwd.pipeline.clientip`).
Both levels apply: a deny at either refuses, and an allow list at either
must hold the address.  ``client_cert_subject`` (a regular expression
matched against the whole RFC 4514 subject) requires a verified client
certificate from the TLS listener.  Refusals are ``403 Forbidden``.
"""

from __future__ import annotations

import re
from typing import Awaitable

from gwd.config.model import RouteConfig, StageConfig
from gwd.http.message import Response
from gwd.pipeline.clientip import Networks, client_ip
from gwd.pipeline.errors import GatewayError
from gwd.pipeline.exchange import Exchange
from gwd.pipeline.handler import Handler
from gwd.pipeline.resources import Resources

FORBIDDEN = GatewayError(403, "Forbidden", response_type="ACCESS_DENIED")


def build(route: RouteConfig, stage: StageConfig, resources: Resources, next_handler: Handler) -> Handler:
    """Wrap ``next_handler`` with the stage's and route's policies, or return it when there are none."""
    address_rules: list[tuple[Networks, Networks]] = [
        (level.allow, level.deny) for level in (stage, route) if level.allow or level.deny
    ]
    subject = re.compile(route.client_cert_subject) if route.client_cert_subject is not None else None
    if not address_rules and subject is None:
        return next_handler
    trusted = resources.trusted_proxies

    def enforce(exchange: Exchange) -> Response | Awaitable[Response]:
        if address_rules:
            address = client_ip(exchange.request, trusted)
            for allow, deny in address_rules:
                if address is None:
                    if allow:
                        raise FORBIDDEN  # not an address (a Unix socket peer): in no allowed network
                    continue
                if (deny and any(address in network for network in deny)) or (
                    allow and not any(address in network for network in allow)
                ):
                    raise FORBIDDEN
        if subject is not None:
            certificate = exchange.client_cert
            if certificate is None or subject.fullmatch(certificate.subject_dn) is None:
                raise FORBIDDEN
        return next_handler(exchange)

    return enforce
