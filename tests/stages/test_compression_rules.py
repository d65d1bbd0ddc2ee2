"""The compression stage's rules that need no daemon: media type patterns, q-values, ETags."""

from __future__ import annotations

import pytest

from gwd.config.keys import COMPRESSED_TYPES
from gwd.config.model import CompressionConfig
from gwd.stages.compression import Compressor, MediaTypes, _weak_etag


@pytest.mark.parametrize(
    "content_type, compressed",
    [
        (b"application/json", True),
        (b"application/json; charset=utf-8", True),
        (b"Text/HTML", True),
        (b"text/event-stream", True),
        (b"application/problem+json", True),
        (b"application/atom+xml", True),
        (b"image/svg+xml", True),
        (b"image/png", False),
        (b"application/octet-stream", False),
        (b"application/jsonx", False),
        (b"", False),
    ],
)
def test_the_default_types(content_type, compressed):
    assert MediaTypes(COMPRESSED_TYPES).matches(content_type) is compressed


def test_choices_are_remembered_per_header_value_and_bounded():
    compressor = Compressor(CompressionConfig(1024, ("gzip", "br"), COMPRESSED_TYPES, 6, 4))
    assert compressor.choose(b"br, gzip") == "gzip"  # this config prefers gzip
    assert compressor.choose(b"br;q=0.9, gzip;q=0.8") == "br"
    assert compressor.choose(b"GZIP;Q=0.1") == "gzip"
    assert compressor.choose(b"gzip;q=bogus, br") == "br"
    for n in range(1000):
        compressor.choose(b"gzip;q=0.%d" % n)
    assert len(compressor._choices) <= 256


@pytest.mark.parametrize(
    "lines, expected",
    [
        (b'ETag: "abc"\r\n', b'ETag: W/"abc"\r\n'),
        (b'Content-Type: text/plain\r\netag:  "abc"\r\n', b'Content-Type: text/plain\r\netag:  W/"abc"\r\n'),
        (b'ETag: W/"abc"\r\n', b'ETag: W/"abc"\r\n'),
        (b"X-Not-ETag: 1\r\n", b"X-Not-ETag: 1\r\n"),
        (b'X-Not-ETag: 1\r\nETag: "abc"\r\n', b'X-Not-ETag: 1\r\nETag: W/"abc"\r\n'),
        (b"Content-Type: text/plain\r\n", b"Content-Type: text/plain\r\n"),
    ],
)
def test_strong_etags_become_weak(lines, expected):
    assert _weak_etag(lines) == expected
