"""AWS's rules for what a Lambda proxy handler returns, payload 1.0 and 2.0, table by table."""

from __future__ import annotations

import base64

import pytest

from gwd.functions.responses import MalformedResponse, version1_response, version2_response


def header_lines(response) -> list[tuple[str, str]]:
    lines = response.header_lines.decode().split("\r\n")
    return [tuple(part.strip() for part in line.split(":", 1)) for line in lines if line]


MALFORMED_1 = [
    ("a string", "just a string"),
    ("an array", [1, 2]),
    ("null", None),
    ("no statusCode", {"body": "x"}),
    ("statusCode a string", {"statusCode": "200", "body": "x"}),
    ("statusCode a boolean", {"statusCode": True}),
    ("statusCode out of range", {"statusCode": 600}),
    ("body an object", {"statusCode": 200, "body": {"a": 1}}),
    ("body a number", {"statusCode": 200, "body": 5}),
    ("an unknown field", {"statusCode": 200, "cookies": ["a=1"]}),
    ("headers a list", {"statusCode": 200, "headers": ["X-A"]}),
    ("a header value an object", {"statusCode": 200, "headers": {"X-A": {"b": 1}}}),
    ("a header value with CRLF", {"statusCode": 200, "headers": {"X-A": "a\r\nX-B: 1"}}),
    ("a header name with a space", {"statusCode": 200, "headers": {"X A": "a"}}),
    ("multiValueHeaders values not lists", {"statusCode": 200, "multiValueHeaders": {"X-A": "a"}}),
    ("isBase64Encoded a string", {"statusCode": 200, "body": "eA==", "isBase64Encoded": "true"}),
    ("isBase64Encoded with a body that is not base64", {"statusCode": 200, "body": "***", "isBase64Encoded": True}),
]


@pytest.mark.parametrize("what, output", MALFORMED_1, ids=[case[0] for case in MALFORMED_1])
def test_payload_1_refuses_every_malformed_answer(what, output):
    with pytest.raises(MalformedResponse):
        version1_response(output)


def test_payload_1_uses_a_well_formed_answer_and_defaults_the_content_type():
    response = version1_response({"statusCode": 201, "headers": {"X-Count": 3, "X-Ok": True}, "body": "made"})
    assert response.status == 201 and response.body == b"made"
    assert header_lines(response) == [("X-Count", "3"), ("X-Ok", "true"), ("Content-Type", "application/json")]


def test_payload_1_merges_headers_into_multi_value_headers_sending_a_pair_in_both_once():
    response = version1_response(
        {
            "statusCode": 200,
            "headers": {"X-One": "1", "X-Both": "same", "Content-Type": "text/plain"},
            "multiValueHeaders": {"X-Both": ["same", "other"], "x-many": ["a", "b"]},
        }
    )
    assert header_lines(response) == [
        ("X-Both", "same"), ("X-Both", "other"), ("x-many", "a"), ("x-many", "b"), ("X-One", "1"), ("Content-Type", "text/plain"),
    ]
    assert response.body == b""


def test_payload_1_decodes_a_base64_body_and_drops_framing_headers():
    response = version1_response(
        {
            "statusCode": 200,
            "headers": {"Content-Length": "999", "Transfer-Encoding": "chunked", "Connection": "close", "Date": "x"},
            "body": base64.b64encode(b"\x89PNG\x00").decode(),
            "isBase64Encoded": True,
        }
    )
    assert response.body == b"\x89PNG\x00"
    assert header_lines(response) == [("Date", "x"), ("Content-Type", "application/json")]
    assert response.dated


SHORTHANDS_2 = [
    ("a string is the body as it is", "hello", b"hello"),
    ("a JSON-looking string too", '{"a": 1}', b'{"a": 1}'),
    ("a number", 42, b"42"),
    ("an array", [1, "two"], b'[1,"two"]'),
    ("an object without statusCode", {"message": "hi", "body": "ignored?"}, b'{"message":"hi","body":"ignored?"}'),
    ("null", None, b"null"),
    ("true", True, b"true"),
]


@pytest.mark.parametrize("what, output, body", SHORTHANDS_2, ids=[case[0] for case in SHORTHANDS_2])
def test_payload_2_makes_anything_without_status_code_a_200_json_body(what, output, body):
    response = version2_response(output)
    assert (response.status, response.body) == (200, body)
    assert header_lines(response) == [("Content-Type", "application/json")]


def test_payload_2_sends_each_cookie_as_its_own_set_cookie_line():
    response = version2_response(
        {"statusCode": 200, "headers": {"Content-Type": "text/plain"}, "cookies": ["a=1; Path=/", "b=2; HttpOnly"], "body": "ok"}
    )
    assert header_lines(response) == [("Content-Type", "text/plain"), ("Set-Cookie", "a=1; Path=/"), ("Set-Cookie", "b=2; HttpOnly")]


MALFORMED_2 = [
    ("statusCode a string", {"statusCode": "200"}),
    ("body an object", {"statusCode": 200, "body": {"a": 1}}),
    ("cookies not a list", {"statusCode": 200, "cookies": "a=1"}),
    ("a cookie not a string", {"statusCode": 200, "cookies": [1]}),
    ("a header value with a newline", {"statusCode": 200, "headers": {"X-A": "a\nb"}}),
    ("a body that is not base64", {"statusCode": 200, "body": "%%%", "isBase64Encoded": True}),
    ("an object that is not JSON", {"value": object()}),
]


@pytest.mark.parametrize("what, output", MALFORMED_2, ids=[case[0] for case in MALFORMED_2])
def test_payload_2_refuses_a_malformed_answer_with_status_code(what, output):
    with pytest.raises(MalformedResponse):
        version2_response(output)


def test_payload_2_keeps_fields_it_does_not_know():
    response = version2_response({"statusCode": 204, "extra": 1})
    assert (response.status, response.body) == (204, b"")
