"""gwd's Python runtime: runs one Lambda handler through the Lambda Runtime API.

    python3 bootstrap.py MODULE FUNCTION

The default command of a Python handler with ``runtime = "process"``: it
imports MODULE from ``LAMBDA_TASK_ROOT`` (the function's ``code_dir``) and
calls FUNCTION with ``(event, context)`` for every invocation it is given,
as AWS's Python runtime does (``async def`` handlers are run to completion
too).  It imports nothing of gwd, so it runs wherever the interpreter does;
it speaks HTTP/1.1 on one kept-alive socket, each request in one write,
with httptools (gwd's own parser) reading the answers: ``http.client``
parses headers with the email package and sent the answers in two writes,
which made it several times slower.
AWS's own client, ``awslambdaric``, speaks the same API and is a
``command`` away.  It leaves when the Runtime API's connection fails,
which is how it goes with its worker.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import json
import os
import socket
import sys
import time
import traceback
from typing import Any

import httptools

BASE = "/2018-06-01/runtime"


class CognitoIdentity:
    cognito_identity_id = None
    cognito_identity_pool_id = None


class LambdaContext:
    """What AWS's Python runtime passes as ``context``."""

    def __init__(self, request_id: str, arn: str, deadline_ms: int) -> None:
        env = os.environ
        self.aws_request_id = request_id
        self.invoked_function_arn = arn
        self.function_name = env.get("AWS_LAMBDA_FUNCTION_NAME")
        self.function_version = env.get("AWS_LAMBDA_FUNCTION_VERSION")
        self.memory_limit_in_mb = env.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
        self.log_group_name = env.get("AWS_LAMBDA_LOG_GROUP_NAME")
        self.log_stream_name = env.get("AWS_LAMBDA_LOG_STREAM_NAME")
        self.identity = CognitoIdentity()
        self.client_context = None
        self._deadline_ms = deadline_ms

    def get_remaining_time_in_millis(self) -> int:
        return max(0, self._deadline_ms - int(time.time() * 1000))


def error_document(error: BaseException, error_type: str | None = None) -> bytes:
    frames = traceback.format_tb(error.__traceback__)
    return json.dumps(
        {"errorType": error_type or type(error).__name__, "errorMessage": str(error), "stackTrace": [f.strip() for f in frames]}
    ).encode()


class RuntimeApi:
    """HTTP/1.1 to the Runtime API on one kept-alive connection."""

    def __init__(self, host: str, port: int) -> None:
        self._socket = socket.create_connection((host, port))
        self._socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._host = f"{host}:{port}".encode()

    def call(self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None) -> tuple[dict[bytes, bytes], bytes]:
        """The answer's headers (names lower-cased) and body; raises OSError when the connection is gone."""
        lines = b"".join(f"{name}: {value}\r\n".encode() for name, value in (headers or {}).items())
        head = b"%s %s HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n%s\r\n" % (method.encode(), path.encode(), self._host, len(body), lines)
        self._socket.sendall(head + body)
        answer = _Answer()
        parser = httptools.HttpResponseParser(answer)
        while not answer.complete:
            data = self._socket.recv(65536)
            if not data:
                raise ConnectionError("the Runtime API closed the connection")
            parser.feed_data(data)
        return answer.headers, b"".join(answer.body)


class _Answer:
    """What httptools reads of one answer."""

    def __init__(self) -> None:
        self.headers: dict[bytes, bytes] = {}
        self.body: list[bytes] = []
        self.complete = False

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.lower()] = value

    def on_body(self, data: bytes) -> None:
        self.body.append(data)

    def on_message_complete(self) -> None:
        self.complete = True


def post(api: RuntimeApi, path: str, body: bytes, error_type: str | None = None) -> None:
    headers = {"Content-Type": "application/json"}
    if error_type is not None:
        headers["Lambda-Runtime-Function-Error-Type"] = error_type
    api.call("POST", path, body, headers)


def invoke(handler: Any, event: Any, context: LambdaContext) -> Any:
    if inspect.iscoroutinefunction(handler):
        return asyncio.run(handler(event, context))
    return handler(event, context)


def main() -> int:
    module_name, function_name = sys.argv[1:3]
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # each printed line reaches gwd's log at once
    host, _, port = os.environ["AWS_LAMBDA_RUNTIME_API"].rpartition(":")
    api = RuntimeApi(host, int(port))
    sys.path.insert(0, os.environ.get("LAMBDA_TASK_ROOT") or os.getcwd())
    try:
        handler = getattr(importlib.import_module(module_name), function_name)
    except Exception as error:
        post(api, f"{BASE}/init/error", error_document(error, "Runtime.ImportModuleError"), "Runtime.ImportModuleError")
        return 1
    while True:
        try:
            headers, payload = api.call("GET", f"{BASE}/invocation/next")
        except OSError:
            return 0  # the worker has gone
        request_id = headers.get(b"lambda-runtime-aws-request-id", b"").decode()
        os.environ["_X_AMZN_TRACE_ID"] = headers.get(b"lambda-runtime-trace-id", b"").decode()
        context = LambdaContext(
            request_id,
            headers.get(b"lambda-runtime-invoked-function-arn", b"").decode(),
            int(headers.get(b"lambda-runtime-deadline-ms", b"0")),
        )
        try:
            result = json.dumps(invoke(handler, json.loads(payload), context)).encode()
        except Exception as error:
            post(api, f"{BASE}/invocation/{request_id}/error", error_document(error), "Unhandled")
            continue
        post(api, f"{BASE}/invocation/{request_id}/response", result)


if __name__ == "__main__":
    sys.exit(main())
