"""The AWS Lambda Runtime API, as gwd serves it to one runtime process.

A runtime (AWS's ``awslambdaric``, a custom runtime, gwd's Node.js
bootstrap) asks ``GET /2018-06-01/runtime/invocation/next`` for work, which
waits until there is an invocation, and answers each one with ``POST
.../invocation/{id}/response`` or ``.../error``; a runtime that cannot
start says so with ``POST /2018-06-01/runtime/init/error``.  Each runtime
process has a listener of its own on 127.0.0.1 (its
``AWS_LAMBDA_RUNTIME_API``), so gwd knows which process holds which
invocation, and can kill the one that runs past its timeout.  It is served
by gwd's own HTTP server (:mod:`gwd.http.server`), as the gateway is.

A loopback port is open to every local user, so a connection is served
only when the socket at its other end belongs to the daemon's own user
(the owner Linux lists for it in ``/proc/net/tcp``, read once per
connection): another user's process can neither take invocations, which
carry the clients' headers, nor answer them.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Awaitable

import orjson

from gwd.http.message import Request, RequestBodyError, Response

if TYPE_CHECKING:
    from gwd.functions.processes import RuntimeProcess

PREFIX = "/2018-06-01/runtime/"
NEXT = PREFIX + "invocation/next"
INIT_ERROR = PREFIX + "init/error"
MAX_PAYLOAD = 6 * 1024 * 1024
"""The largest answer a runtime may post, as on AWS (6 MB)."""
_ACCEPTED = Response(202, b"Content-Type: application/json\r\n", b'{"status":"OK"}')
_JSON = b"Content-Type: application/json\r\n"
_PEER_OURS = "runtime-peer-ours"  # the connection fact: its peer's socket is the daemon user's
log = logging.getLogger("gwd.function")


def _problem(status: int, error_type: str, message: str) -> Response:
    return Response(status, _JSON, orjson.dumps({"errorMessage": message, "errorType": error_type}))


class RuntimeApi:
    """The Runtime API of one runtime process (a :class:`~gwd.http.server.Service`)."""

    __slots__ = ("_process",)

    def __init__(self, process: RuntimeProcess) -> None:
        self._process = process

    def respond(self, request: Request) -> Response | Awaitable[Response]:
        if not _peer_is_ours(request):
            return _problem(403, "Forbidden", "the Runtime API serves the gateway's own runtime processes only")
        path, method = request.path, request.method
        if path == NEXT and method == "GET":
            return self._process.next_invocation()
        if method == "POST" and path == INIT_ERROR:
            return self._posted(request, None, "init")
        if method == "POST" and path.startswith(PREFIX + "invocation/"):
            request_id, _, outcome = path[len(PREFIX + "invocation/") :].partition("/")
            if outcome in ("response", "error"):
                return self._posted(request, request_id, outcome)
        return _problem(404, "NotFound", f"no such Runtime API resource: {method} {path}")

    async def _posted(self, request: Request, request_id: str | None, outcome: str) -> Response:
        process = self._process
        try:
            body = await request.body.read_all()
        except RequestBodyError:
            if request_id is not None and process.holds(request_id):
                process.answered_too_large(MAX_PAYLOAD)
            return _problem(413, "RequestEntityTooLarge", f"answers are at most {MAX_PAYLOAD} bytes")
        if outcome == "init":
            process.init_failed(body)
            return _ACCEPTED
        if not process.holds(request_id):
            return _problem(400, "InvalidRequestID", f"no invocation {request_id} is waiting for an answer")
        error_type = request.headers.text(b"lambda-runtime-function-error-type")
        process.answered(body, failed=outcome == "error", error_type=error_type)
        return _ACCEPTED

    def finished(self, request: Request, response: Response | None, body_bytes: int, client_closed: bool) -> None:
        """Nothing to record: what matters (an invocation handed out and never answered) the process's exit settles."""


def _peer_is_ours(request: Request) -> bool:
    """Whether the socket at the other end of the request's connection belongs to this process's user."""
    connection = request.connection
    if connection is None:
        return True  # made in-process (tests)
    facts = connection.facts
    ours = facts.get(_PEER_OURS)
    if ours is None:
        peer, local = connection.extra_info("peername"), connection.extra_info("sockname")
        owner = _socket_owner(peer, local) if isinstance(peer, tuple) and isinstance(local, tuple) else None
        ours = facts[_PEER_OURS] = owner == os.geteuid()
        if not ours:
            log.warning("Runtime API: refused a connection from %s:%s (its socket's owner: uid %s)", peer[0], peer[1], owner)
    return bool(ours)


def _socket_owner(peer: tuple, local: tuple) -> int | None:
    """The uid owning the IPv4 loopback socket whose own address is ``peer`` and whose remote one is ``local``."""
    def hex_address(address: tuple) -> str:
        host = bytes(reversed(bytes(int(part) for part in address[0].split(".")))).hex().upper()
        return f"{host}:{address[1]:04X}"

    wanted = (hex_address(peer), hex_address(local))
    try:
        with open("/proc/net/tcp") as table:
            next(table)
            for line in table:
                fields = line.split()
                if (fields[1], fields[2]) == wanted:
                    return int(fields[7])
    except (OSError, ValueError, IndexError):
        return None
    return None
