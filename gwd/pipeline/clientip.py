"""Who the client is: the TCP peer, or what trusted proxies in front of gwd say.

The peer's parsed address is worked out once per connection (kept in the
connection's facts), not once per check of each request.
"""

from __future__ import annotations

import ipaddress

from gwd.config.model import Networks
from gwd.http.message import Request

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_PEER = "clientip.peer"  # the key of the parsed peer address in a connection's facts


def parse_address(address: str) -> IpAddress | None:
    """``address`` parsed (an IPv4-mapped IPv6 address as its IPv4 address), or None when it is not one."""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return None
    if isinstance(parsed, ipaddress.IPv6Address) and parsed.ipv4_mapped is not None:
        return parsed.ipv4_mapped
    return parsed


def in_networks(address: str, networks: Networks) -> bool:
    """Whether ``address`` is in any of ``networks``."""
    parsed = parse_address(address)
    return parsed is not None and any(parsed in network for network in networks)


def peer_address(request: Request) -> IpAddress | None:
    """The request's TCP peer, parsed once per connection."""
    connection = request.connection
    if connection is None:
        return parse_address(request.remote)
    facts = connection.facts
    try:
        return facts[_PEER]  # type: ignore[return-value]
    except KeyError:
        parsed = facts[_PEER] = parse_address(request.remote)
        return parsed


def peer_in(request: Request, networks: Networks) -> bool:
    """Whether the request's TCP peer is in any of ``networks``."""
    parsed = peer_address(request)
    return parsed is not None and any(parsed in network for network in networks)


def client_address(request: Request, trusted: Networks) -> str:
    """The client's IP address.

    Only when the peer is a trusted proxy does ``X-Forwarded-For`` count:
    walking it from the right, past every trusted proxy, the first other
    address is the client (addresses further left could be forged by it).
    """
    peer = request.remote
    if not trusted or not peer_in(request, trusted):
        return peer
    hops = [hop.strip() for value in request.headers.getall(b"x-forwarded-for") for hop in value.decode("latin-1").split(",")]
    for hop in reversed(hops):
        parsed = parse_address(hop)
        if parsed is None:
            return peer  # a malformed entry: trust nothing beyond our own peer
        if not any(parsed in network for network in trusted):
            return str(ipaddress.ip_address(hop))
    return hops[0] if hops else peer


def client_ip(request: Request, trusted: Networks) -> IpAddress | None:
    """:func:`client_address`, parsed (the peer's parse is the connection's, made once)."""
    if not trusted or not peer_in(request, trusted):
        return peer_address(request)
    return parse_address(client_address(request, trusted))
