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
"""

from __future__ import annotations

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


def _problem(status: int, error_type: str, message: str) -> Response:
    return Response(status, _JSON, orjson.dumps({"errorMessage": message, "errorType": error_type}))


class RuntimeApi:
    """The Runtime API of one runtime process (a :class:`~gwd.http.server.Service`)."""

    __slots__ = ("_process",)

    def __init__(self, process: RuntimeProcess) -> None:
        self._process = process

    def respond(self, request: Request) -> Response | Awaitable[Response]:
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
        try:
            body = await request.body.read_all()
        except RequestBodyError:
            return _problem(413, "RequestEntityTooLarge", f"answers are at most {MAX_PAYLOAD} bytes")
        process = self._process
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
