"""Who the client is: the TCP peer, or what trusted proxies in front of gwd say."""

from __future__ import annotations

import ipaddress

from aiohttp.web import BaseRequest

from gwd.config import Networks


def in_networks(address: str, networks: Networks) -> bool:
    """Whether ``address`` (IPv4-mapped IPv6 counts as its IPv4 address) is in any of ``networks``."""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(parsed, ipaddress.IPv6Address) and parsed.ipv4_mapped is not None:
        parsed = parsed.ipv4_mapped
    return any(parsed in network for network in networks)


def client_address(request: BaseRequest, trusted: Networks) -> str:
    """The client's IP address.

    Only when the peer is a trusted proxy does ``X-Forwarded-For`` count:
    walking it from the right, past every trusted proxy, the first other
    address is the client (addresses further left could be forged by it).
    """
    peer = request.remote or ""
    if not trusted or not in_networks(peer, trusted):
        return peer
    hops = [hop.strip() for value in request.headers.getall("X-Forwarded-For", ()) for hop in value.split(",")]
    for hop in reversed(hops):
        if not in_networks(hop, trusted):
            try:
                return str(ipaddress.ip_address(hop))
            except ValueError:
                return peer  # a malformed entry: trust nothing beyond our own peer
    return hops[0] if hops else peer
