"""The listening sockets: bound by the supervisor, shared by every worker."""

from __future__ import annotations

import socket

from gwd.config.model import Address


def bind_listener(address: Address, backlog: int) -> socket.socket:
    """A non-blocking TCP socket listening on ``address``.

    Raises OSError with the address in its message when it cannot bind.
    """
    try:
        infos = socket.getaddrinfo(address.host, address.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise OSError(f"cannot resolve listen address {address}: {exc.strerror}") from None
    family, kind, proto, _, sockaddr = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(sockaddr)
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise OSError(f"cannot listen on {address}: {exc.strerror}") from None
    sock.setblocking(False)
    return sock


def bind_listeners(
    addresses: tuple[Address, ...], backlog: int, reusable: dict[Address, socket.socket]
) -> dict[Address, socket.socket]:
    """A listening socket for each address: ``reusable``'s own where it has one, else newly bound.

    If one address cannot be bound, the sockets bound here are closed again
    and the OSError is raised: a reload either gets all its addresses or
    changes nothing.
    """
    listeners: dict[Address, socket.socket] = {}
    try:
        for address in addresses:
            listeners[address] = reusable.get(address) or bind_listener(address, backlog)
    except OSError:
        for address, sock in listeners.items():
            if sock is not reusable.get(address):
                sock.close()
        raise
    return listeners
