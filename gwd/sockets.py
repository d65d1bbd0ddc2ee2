"""The listening sockets: bound by the supervisor, inherited by the workers.

With ``reuse_port`` each worker slot gets sockets of its own on every
address (``SO_REUSEPORT``), and the kernel spreads new connections over
them by a hash of each connection's addresses.  Workers sharing one socket
instead race for every connection: the first to wake takes it, so a burst
of keep-alive clients can land nearly all on one worker and stay there.
A slot's own socket is only bound here; its worker starts listening once
it can accept, so no connection waits in the queue of a worker that is
still starting, or that fails to start.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

from gwd.config.model import Address


def _resolve(address: Address) -> tuple[int, int, int, tuple]:
    try:
        infos = socket.getaddrinfo(address.host, address.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise OSError(f"cannot resolve listen address {address}: {exc.strerror}") from None
    family, kind, proto, _, sockaddr = infos[0]
    return family, kind, proto, sockaddr


def _bound(address: Address, family: int, kind: int, proto: int, sockaddr: tuple, reuse_port: bool) -> socket.socket:
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(sockaddr)
    except OSError as exc:
        sock.close()
        raise OSError(f"cannot listen on {address}: {exc.strerror}") from None
    return sock


def bind_listener(address: Address, backlog: int) -> socket.socket:
    """A non-blocking TCP socket listening on ``address``, for the workers to share.

    Raises OSError with the address in its message when it cannot bind.
    """
    family, kind, proto, sockaddr = _resolve(address)
    sock = _bound(address, family, kind, proto, sockaddr, reuse_port=False)
    try:
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise OSError(f"cannot listen on {address}: {exc.strerror}") from None
    sock.setblocking(False)
    return sock


def bind_port_group(address: Address, count: int) -> list[socket.socket]:
    """``count`` sockets bound to ``address`` with ``SO_REUSEPORT`` (port 0 picks one port for all); not listening yet.

    Any process of the same user may join such a group and take a share of
    its connections, so the address is first bound without the option: a
    port that something else listens on is an error here, as without it.
    """
    family, kind, proto, sockaddr = _resolve(address)
    probe = _bound(address, family, kind, proto, sockaddr, reuse_port=False)
    sockaddr = probe.getsockname()
    probe.close()
    return _bind_members([address] * count, [sockaddr] * count)


def _bind_members(addresses: list[Address], sockaddrs: list[tuple]) -> list[socket.socket]:
    """A group member for each (address, sockaddr); all or none (an OSError closes those bound)."""
    members: list[socket.socket] = []
    try:
        for address, sockaddr in zip(addresses, sockaddrs):
            members.append(bind_group_member(address, sockaddr))
    except OSError:
        for sock in members:
            sock.close()
        raise
    return members


def bind_group_member(address: Address, sockaddr: tuple) -> socket.socket:
    """One more ``SO_REUSEPORT`` socket bound where a group is (``sockaddr``, the group's own); not listening yet."""
    family = socket.AF_INET6 if len(sockaddr) == 4 else socket.AF_INET
    sock = _bound(address, family, socket.SOCK_STREAM, 0, sockaddr, reuse_port=True)
    sock.setblocking(False)
    return sock


class Listeners:
    """One config's listening sockets: one set shared by every worker slot, or (``reuse_port``) a set per slot.

    A reload passes the old set as ``reusable`` (with the same
    ``reuse_port``: a group cannot turn into one shared socket in place):
    sockets on the same address and slot are kept (a new worker's listen
    gives them the new backlog), so no connection waiting in their queues
    is lost.  A socket systemd passed in (``inherited``) is always shared
    and always kept: nothing else can join its group, and it outlives gwd.

    Only the user that bound a group can add to it (the kernel's rule).
    Once gwd has given up root for ``server.user``, a new slot therefore
    shares another slot's sockets, and a slot whose worker waits to be
    restarted keeps its own.
    """

    __slots__ = ("addresses", "_inherited", "_shared", "_slots", "_sockaddrs", "_binder")

    def __init__(
        self,
        addresses: tuple[Address, ...],
        backlog: int,
        reuse_port: bool,
        slots: int,
        reusable: Listeners | None = None,
        inherited: dict[Address, socket.socket] | None = None,
    ) -> None:
        """Binds every socket of slots 1 to ``slots`` now; on an OSError closes those it bound and raises it."""
        self.addresses = addresses
        inherited = inherited if inherited is not None else reusable._inherited if reusable is not None else {}
        self._inherited = {address: sock for address, sock in inherited.items() if address in addresses}
        self._shared = dict(self._inherited)
        self._slots: dict[int, dict[Address, socket.socket]] = {slot: {} for slot in range(1, slots + 1)}
        self._sockaddrs: dict[Address, tuple] = {}
        self._binder = reusable._binder if reusable is not None else os.geteuid()
        try:
            for address in addresses:
                if address in self._shared:
                    continue
                if not reuse_port:
                    old = reusable._shared.get(address) if reusable is not None else None
                    self._shared[address] = old or bind_listener(address, backlog)
                elif reusable is not None and address in reusable._sockaddrs:
                    sockaddr = self._sockaddrs[address] = reusable._sockaddrs[address]
                    members = [own[address] for own in reusable._slots.values() if address in own]
                    for slot, own in self._slots.items():
                        old = reusable._slots.get(slot, {}).get(address)
                        if old is None and not self._can_bind() and members:
                            old = members[(slot - 1) % len(members)]
                        own[address] = old or bind_group_member(address, sockaddr)
                else:
                    group = bind_port_group(address, slots)
                    self._sockaddrs[address] = group[0].getsockname()
                    for own, sock in zip(self._slots.values(), group):
                        own[address] = sock
        except OSError:
            self.close_unshared(reusable)
            raise

    def __iter__(self) -> Iterator[socket.socket]:
        yield from self._shared.values()
        for own in self._slots.values():
            yield from own.values()

    def _can_bind(self) -> bool:
        """Whether this process may still add sockets to its groups (it runs as the user that bound them)."""
        return os.geteuid() == self._binder

    def for_slot(self, slot: int) -> dict[Address, socket.socket]:
        """The sockets a worker in ``slot`` accepts on, in ``addresses`` order; binds the slot's own if it has none yet."""
        own = self._slots.get(slot)
        if own is None:
            others = [sockets for sockets in self._slots.values() if sockets]
            if self._can_bind() or not others:
                addresses = list(self._sockaddrs)
                own = dict(zip(addresses, _bind_members(addresses, list(self._sockaddrs.values()))))
            else:
                own = dict(others[(slot - 1) % len(others)])
            self._slots[slot] = own
        return {address: own[address] if address in own else self._shared[address] for address in self.addresses}

    def release_slot(self, slot: int, keep: Listeners | None = None, returning: bool = False) -> None:
        """Close ``slot``'s own sockets (those ``keep`` or another slot also uses stay open): the kernel sends new connections to the others.

        ``returning``: a worker will take the slot again later; if no new
        socket could be bound for it then, its sockets stay for that worker.
        """
        if slot not in self._slots or (returning and not self._can_bind()):
            return
        released = self._slots.pop(slot)
        kept = {id(sock) for sock in keep} if keep is not None else set()
        kept.update(id(sock) for sock in self)
        for sock in released.values():
            if id(sock) not in kept:
                sock.close()

    def close_unshared(self, keep: Listeners | None) -> None:
        """Close every socket here that ``keep`` does not also use."""
        kept = {id(sock) for sock in keep} if keep is not None else set()
        for sock in self:
            if id(sock) not in kept:
                sock.close()

    def close(self) -> None:
        for sock in self:
            sock.close()
