"""Response compression through the real daemon: gzip and Brotli by Accept-Encoding, size and type rules, streams, the cache."""

from __future__ import annotations

import gzip
import http.client
import time
import zlib

import brotli
import orjson
import pytest
from backend import Backend, pattern
from support import request

DOCUMENT = orjson.dumps({"items": [{"id": i, "name": f"item {i}", "tags": ["a", "b"]} for i in range(100)]}).decode()
SMALL = '{"ok": true}'


def config(backend: Backend) -> str:
    return f"""
compression = {{ min_size = 1024, types = ["application/json", "text/*", "application/octet-stream"] }}

[[routes]]
route = "GET /doc"
integration = {{ type = "mock", body = '{DOCUMENT}' }}

[[routes]]
route = "GET /small"
integration = {{ type = "mock", body = '{SMALL}' }}

[[routes]]
route = "GET /png"
integration = {{ type = "mock", headers = {{ "Content-Type" = "image/png" }}, body = '{DOCUMENT}' }}

[[routes]]
route = "GET /no-transform"
integration = {{ type = "mock", headers = {{ "Cache-Control" = "public, no-transform" }}, body = '{DOCUMENT}' }}

[[routes]]
route = "GET /tagged"
integration = {{ type = "mock", headers = {{ "ETag" = '"v1"' }}, body = '{DOCUMENT}' }}

[[routes]]
route = "GET /varied"
integration = {{ type = "mock", headers = {{ "Vary" = "Accept-Encoding, Origin" }}, body = '{DOCUMENT}' }}

[[routes]]
route = "GET /cached"
integration = {{ type = "mock", body = '{DOCUMENT}' }}
cache = {{ ttl = "300s" }}

[[routes]]
route = "GET /backend/{{proxy+}}"
integration = {{ type = "http", uri = "http://127.0.0.1:{backend.port}/{{proxy}}" }}
"""


@pytest.fixture(scope="module")
def backend():
    with Backend() as running:
        yield running


@pytest.fixture
def daemon(start_daemon, backend):
    return start_daemon(config(backend), workers=1)


def get(daemon, path: str, accept_encoding: str | None = None, method: str = "GET"):
    return request(daemon.port, method, path, {"Accept-Encoding": accept_encoding} if accept_encoding is not None else {})


def test_gzip_and_br_bodies_decompress_to_the_original(daemon):
    zipped = get(daemon, "/doc", "gzip")
    assert zipped.status == 200 and zipped.headers["content-encoding"] == "gzip"
    assert "Accept-Encoding" in zipped.headers["vary"]
    assert int(zipped.headers["content-length"]) == len(zipped.body) < len(DOCUMENT) // 3
    assert gzip.decompress(zipped.body).decode() == DOCUMENT
    squeezed = get(daemon, "/doc", "gzip, deflate, br")
    assert squeezed.headers["content-encoding"] == "br"  # equal q-values: the config's order, br first
    assert brotli.decompress(squeezed.body).decode() == DOCUMENT


@pytest.mark.parametrize(
    "accept_encoding, chosen",
    [
        ("br;q=1.0, gzip;q=0.5", "br"),
        ("gzip;q=1, br;q=0.8", "gzip"),
        ("gzip, br;q=0", "gzip"),
        ("*", "br"),
        ("*;q=0.5, br;q=0", "gzip"),
        ("identity", None),
        ("deflate", None),
        ("gzip;q=0, br;q=0", None),
        ("", None),
    ],
)
def test_the_client_q_values_choose_the_encoding(daemon, accept_encoding, chosen):
    reply = get(daemon, "/doc", accept_encoding)
    assert reply.headers.get("content-encoding") == chosen
    assert "Accept-Encoding" in reply.headers["vary"]
    body = {"gzip": gzip.decompress, "br": brotli.decompress, None: bytes}[chosen](reply.body)
    assert body.decode() == DOCUMENT


def test_small_bodies_images_encoded_bodies_no_transform_and_head_go_as_they_are(daemon):
    small = get(daemon, "/small", "gzip, br")
    assert small.body.decode() == SMALL and "content-encoding" not in small.headers
    png = get(daemon, "/png", "gzip, br")
    assert png.body.decode() == DOCUMENT and "content-encoding" not in png.headers and "vary" not in png.headers
    kept = get(daemon, "/no-transform", "gzip, br")
    assert kept.body.decode() == DOCUMENT and "content-encoding" not in kept.headers
    # The backend's own encoding is passed on, never decompressed to be compressed again.
    encoded = get(daemon, "/backend/gzip", "br")
    assert encoded.headers["content-encoding"] == "gzip" and encoded.body == b"\x1f\x8b not really gzip"
    head = get(daemon, "/doc", "gzip", method="HEAD")
    assert head.status == 200 and head.body == b"" and "content-encoding" not in head.headers


def test_vary_is_said_once(daemon):
    for accept_encoding in ("gzip", None):
        conn = http.client.HTTPConnection("127.0.0.1", daemon.port, timeout=10)
        conn.request("GET", "/varied", headers={"Accept-Encoding": accept_encoding} if accept_encoding else {})
        response = conn.getresponse()
        response.read()
        conn.close()
        assert response.headers.get_all("Vary") == ["Accept-Encoding, Origin"]


def test_a_strong_etag_becomes_weak_once_compressed(daemon):
    assert get(daemon, "/tagged", "gzip").headers["etag"] == 'W/"v1"'
    assert get(daemon, "/tagged").headers["etag"] == '"v1"'


@pytest.mark.parametrize("path", ["/backend/chunked/300000", "/backend/bytes/300000"])
@pytest.mark.parametrize("encoding, decompress", [("gzip", gzip.decompress), ("br", brotli.decompress)])
def test_streamed_backend_bodies_are_compressed_as_they_flow(daemon, path, encoding, decompress):
    reply = get(daemon, path, encoding)
    assert reply.headers["content-encoding"] == encoding
    assert reply.headers.get("transfer-encoding") == "chunked" and "content-length" not in reply.headers
    assert len(reply.body) < 300000 // 10
    assert decompress(reply.body) == pattern(300000)


def test_a_stream_is_flushed_chunk_by_chunk(daemon):
    """Each backend piece reaches the client decompressible at once: nothing waits for the stream's end.

    The backend sends 100 pieces 20 ms apart (2 s at least): the first piece,
    decompressed, must be in hand long before the last one arrives.
    """
    conn = http.client.HTTPConnection("127.0.0.1", daemon.port, timeout=20)
    conn.request("GET", "/backend/trickle/100", headers={"Accept-Encoding": "gzip"})
    response = conn.getresponse()
    assert response.getheader("content-encoding") == "gzip"
    inflater = zlib.decompressobj(31)
    first = b""
    while len(first) < 65536:
        first += inflater.decompress(response.read1(65536))
    first_at = time.monotonic()
    rest = inflater.decompress(response.read()) + inflater.flush()
    ended_at = time.monotonic()
    conn.close()
    assert first + rest == pattern(65536) * 100
    assert ended_at - first_at > 1.0, f"the first piece came only {ended_at - first_at:.2f}s before the end"


def test_a_cached_entry_is_served_in_each_client_s_encoding(daemon):
    first = get(daemon, "/cached", "gzip")
    assert first.headers["x-cache"] == "Miss" and gzip.decompress(first.body).decode() == DOCUMENT
    hit = get(daemon, "/cached", "gzip")
    assert hit.headers["x-cache"] == "Hit" and hit.headers["content-encoding"] == "gzip"
    assert gzip.decompress(hit.body).decode() == DOCUMENT
    get(daemon, "/cached")
    plain = get(daemon, "/cached")
    assert plain.headers["x-cache"] == "Hit" and "content-encoding" not in plain.headers and plain.body.decode() == DOCUMENT
    get(daemon, "/cached", "br")
    squeezed = get(daemon, "/cached", "br")
    assert squeezed.headers["x-cache"] == "Hit" and brotli.decompress(squeezed.body).decode() == DOCUMENT


def test_without_the_table_nothing_is_compressed(start_daemon):
    daemon = start_daemon(f"[[routes]]\nroute = \"GET /doc\"\nintegration = {{ type = \"mock\", body = '{DOCUMENT}' }}\n")
    reply = get(daemon, "/doc", "gzip, br")
    assert reply.body.decode() == DOCUMENT and "content-encoding" not in reply.headers and "vary" not in reply.headers
