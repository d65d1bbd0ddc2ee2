"""Who the client is: the TCP peer, or what trusted proxies in front of gwd say."""

from __future__ import annotations

import ipaddress

from aiohttp.web import BaseRequest

Networks = tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]


def is_trusted(address: str, trusted: Networks) -> bool:
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(parsed in network for network in trusted)


def client_address(request: BaseRequest, trusted: Networks) -> str:
    """The client's IP address.

    Only when the peer is a trusted proxy does ``X-Forwarded-For`` count:
    walking it from the right, past every trusted proxy, the first other
    address is the client (addresses further left could be forged by it).
    """
    peer = request.remote or ""
    if not trusted or not is_trusted(peer, trusted):
        return peer
    hops = [hop.strip() for value in request.headers.getall("X-Forwarded-For", ()) for hop in value.split(",")]
    for hop in reversed(hops):
        if not is_trusted(hop, trusted):
            try:
                return str(ipaddress.ip_address(hop))
            except ValueError:
                return peer  # a malformed entry: trust nothing beyond our own peer
    return hops[0] if hops else peer
