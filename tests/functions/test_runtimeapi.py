"""The Runtime API's answers to what a runtime may send, wrong or right, without a process."""

from __future__ import annotations

import asyncio

import orjson

from gwd.functions.runtimeapi import RuntimeApi
from gwd.http.message import Headers, Request, RequestBody


class HeldProcess:
    """What the Runtime API needs of a runtime process: it holds the invocation ``held``."""

    def __init__(self, held: str) -> None:
        self.held = held
        self.answers: list[tuple[bytes, bool, str | None]] = []
        self.init_errors: list[bytes] = []

    def holds(self, request_id: str | None) -> bool:
        return request_id == self.held

    def answered(self, body: bytes, failed: bool, error_type: str | None) -> None:
        self.answers.append((body, failed, error_type))

    def init_failed(self, body: bytes) -> None:
        self.init_errors.append(body)

    def answered_too_large(self, most: int) -> None:
        self.answers.append((b"", True, f"larger than {most}"))


def post(api: RuntimeApi, path: str, body: bytes, headers: list[tuple[bytes, bytes]] = ()):
    request = Request("POST", path.encode(), "1.1", Headers(list(headers)), body=RequestBody.complete(body))
    return asyncio.run(api.respond(request))


def test_answers_for_the_held_invocation_are_taken_and_others_refused():
    process = HeldProcess("req-1")
    api = RuntimeApi(process)  # type: ignore[arg-type]
    ok = post(api, "/2018-06-01/runtime/invocation/req-1/response", b'{"statusCode": 200}')
    assert ok.status == 202 and process.answers == [(b'{"statusCode": 200}', False, None)]
    error = post(api, "/2018-06-01/runtime/invocation/req-1/error", b'{"errorType": "E"}',
                 [(b"Lambda-Runtime-Function-Error-Type", b"Unhandled")])
    assert error.status == 202 and process.answers[-1] == (b'{"errorType": "E"}', True, "Unhandled")
    wrong = post(api, "/2018-06-01/runtime/invocation/req-9/response", b"{}")
    assert wrong.status == 400 and orjson.loads(wrong.body)["errorType"] == "InvalidRequestID"
    assert len(process.answers) == 2
    init = post(api, "/2018-06-01/runtime/init/error", b'{"errorMessage": "no handler"}')
    assert init.status == 202 and process.init_errors == [b'{"errorMessage": "no handler"}']


def test_an_answer_past_six_megabytes_is_refused_and_fails_the_invocation():
    process = HeldProcess("req-1")
    api = RuntimeApi(process)  # type: ignore[arg-type]
    body = RequestBody(None, 6 * 1024 * 1024, 0.0)
    body.feed(b"x" * (6 * 1024 * 1024 + 1))
    request = Request("POST", b"/2018-06-01/runtime/invocation/req-1/response", "1.1", Headers(), body=body)
    answer = asyncio.run(api.respond(request))
    assert answer.status == 413 and orjson.loads(answer.body)["errorType"] == "RequestEntityTooLarge"
    assert process.answers == [(b"", True, "larger than 6291456")]


def test_unknown_resources_are_404():
    api = RuntimeApi(HeldProcess("req-1"))  # type: ignore[arg-type]
    request = Request("GET", b"/2018-06-01/runtime/invocation/req-1/response", "1.1", Headers())
    answer = api.respond(request)
    assert answer.status == 404 and orjson.loads(answer.body)["errorType"] == "NotFound"
    answer = api.respond(Request("GET", b"/2020-01-01/extension/register", "1.1", Headers()))
    assert answer.status == 404
