"""What a handler returned, as the client's response, by AWS API Gateway's rules for Lambda proxy integrations.

Payload 1.0 (REST API) is strict: a JSON object with an integer
``statusCode`` and nothing but ``headers``, ``multiValueHeaders``, a string
``body`` and ``isBase64Encoded``; anything else is a malformed response,
which the client sees as ``502``.  Payload 2.0 (HTTP API) uses an object
with ``statusCode`` as given (``cookies`` become one ``Set-Cookie`` each) and
treats any other value as the body of a ``200`` JSON response.  Framing
headers a handler sets are dropped: the server writes its own.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

import orjson

from gwd.config.model import HOP_BY_HOP_HEADERS
from gwd.http.message import Response

_JSON = b"Content-Type: application/json\r\n"
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_FRAMING = frozenset(HOP_BY_HOP_HEADERS) | {"content-length"}
_VERSION1_KEYS = frozenset({"statusCode", "headers", "multiValueHeaders", "body", "isBase64Encoded"})


class MalformedResponse(Exception):
    """The handler's answer breaks the payload format's rules; the message says how."""


def version1_response(output: Any, decode_base64: bool = True) -> Response:
    """Payload 1.0: ``{statusCode, headers, multiValueHeaders, body, isBase64Encoded}`` and nothing else.

    ``decode_base64`` False (a REST API whose client does not accept a
    binary media type) sends a base64 body as the text it is.
    """
    if not isinstance(output, dict):
        raise MalformedResponse(f"expected a JSON object, got {_kind(output)}")
    unexpected = sorted(set(output) - _VERSION1_KEYS)
    if unexpected:
        raise MalformedResponse(f"unexpected field {unexpected[0]!r}")
    status = _status(output)
    pairs: list[tuple[str, str]] = []
    multi = output.get("multiValueHeaders")
    if multi is not None:
        if not isinstance(multi, dict):
            raise MalformedResponse(f"multiValueHeaders is {_kind(multi)}, not an object")
        for name, values in multi.items():
            if not isinstance(values, list):
                raise MalformedResponse(f"multiValueHeaders[{name!r}] is {_kind(values)}, not a list")
            pairs += [(name, _header_value(name, value)) for value in values]
    seen = {(name.lower(), value) for name, value in pairs}
    for name, value in _headers(output).items():
        if (name.lower(), value) not in seen:  # a pair in both is sent once
            pairs.append((name, value))
    return _response(status, pairs, _body(output, decode_base64))


def version2_response(output: Any) -> Response:
    """Payload 2.0: an object with ``statusCode`` as given, anything else the body of a 200 JSON response."""
    if not isinstance(output, dict) or "statusCode" not in output:
        if isinstance(output, str):
            return Response(200, _JSON, output.encode())
        try:
            return Response(200, _JSON, orjson.dumps(output))
        except TypeError as exc:
            raise MalformedResponse(f"cannot be serialized as JSON: {exc}") from None
    status = _status(output)
    pairs = list(_headers(output).items())
    cookies = output.get("cookies")
    if cookies is not None:
        if not isinstance(cookies, list) or not all(isinstance(cookie, str) for cookie in cookies):
            raise MalformedResponse("cookies is not a list of strings")
        pairs += [("Set-Cookie", _header_value("Set-Cookie", cookie)) for cookie in cookies]
    return _response(status, pairs, _body(output))


def _status(output: dict[str, Any]) -> int:
    status = output.get("statusCode")
    if type(status) is not int or not 100 <= status <= 599:
        raise MalformedResponse(f"statusCode is {_kind(status)}, not an integer from 100 to 599")
    return status


def _headers(output: dict[str, Any]) -> dict[str, str]:
    headers = output.get("headers")
    if headers is None:
        return {}
    if not isinstance(headers, dict):
        raise MalformedResponse(f"headers is {_kind(headers)}, not an object")
    return {name: _header_value(name, value) for name, value in headers.items()}


def _header_value(name: object, value: object) -> str:
    if not isinstance(name, str) or not _TOKEN.fullmatch(name):
        raise MalformedResponse(f"{name!r} is not a header name")
    if isinstance(value, bool):
        value = "true" if value else "false"
    elif isinstance(value, (int, float)):
        value = str(value)
    if not isinstance(value, str) or "\r" in value or "\n" in value:
        raise MalformedResponse(f"header {name!r} has the value {_kind(value)}, not a one-line string")
    return value


def _body(output: dict[str, Any], decode_base64: bool = True) -> bytes:
    body = output.get("body")
    if body is None:
        return b""
    if not isinstance(body, str):
        raise MalformedResponse(f"body is {_kind(body)}, not a string")
    encoded = output.get("isBase64Encoded", False)
    if not isinstance(encoded, bool):
        raise MalformedResponse(f"isBase64Encoded is {_kind(encoded)}, not true or false")
    if not encoded or not decode_base64:
        return body.encode("utf-8", "surrogateescape")
    try:
        return base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        raise MalformedResponse("isBase64Encoded is true but the body is not base64") from None


def _response(status: int, pairs: list[tuple[str, str]], body: bytes) -> Response:
    lines = []
    typed = dated = False
    for name, value in pairs:
        lowered = name.lower()
        if lowered in _FRAMING:
            continue
        typed = typed or lowered == "content-type"
        dated = dated or lowered == "date"
        lines.append(f"{name}: {value}\r\n".encode("utf-8", "surrogateescape"))
    if not typed:
        lines.append(_JSON)
    return Response(status, b"".join(lines), body, dated=dated)


def _kind(value: object) -> str:
    names = {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "an array", dict: "an object"}
    if value is None:
        return "null"
    return f"{names.get(type(value), type(value).__name__)} ({value!r:.40})"
