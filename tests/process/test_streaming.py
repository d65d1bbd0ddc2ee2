"""1 GiB through the proxy each way, with the worker's memory staying flat."""

from __future__ import annotations

import hashlib
import http.client

import orjson
import pytest
from backend import Backend, pattern
from support import RssWatch

GIB = 1024 * 1024 * 1024
BLOCK = pattern(65536)


def one_gib() -> object:
    for _ in range(GIB // len(BLOCK)):
        yield BLOCK


def expected_digest() -> str:
    digest = hashlib.sha256()
    for block in one_gib():
        digest.update(block)
    return digest.hexdigest()


@pytest.fixture(scope="module")
def gib_digest() -> str:
    return expected_digest()


@pytest.fixture
def proxied(start_daemon):
    with Backend(keep_body=False) as backend:
        config = f"""
[server]
max_body = "2GiB"

[log]
access = "off"

[[routes]]
route = "ANY /{{proxy+}}"
integration = {{ type = "http", uri = "{backend.url}/{{proxy}}", timeout = "60s" }}
"""
        daemon = start_daemon(config, workers=1)
        (worker,) = daemon.worker_pids()
        yield daemon, worker


def test_one_gib_upload_streams_with_flat_memory(proxied, gib_digest):
    daemon, worker = proxied
    conn = http.client.HTTPConnection("127.0.0.1", daemon.port, timeout=120)
    with RssWatch(worker) as watch:
        conn.request("POST", "/upload-digest", body=one_gib(), headers={"Content-Length": str(GIB)})
        reply = orjson.loads(conn.getresponse().read())
    conn.close()
    assert reply == {"length": GIB, "sha256": gib_digest}
    assert watch.growth_mib < 50, f"worker RSS grew {watch.growth_mib:.1f} MiB"


def test_one_gib_download_streams_with_flat_memory(proxied, gib_digest):
    daemon, worker = proxied
    conn = http.client.HTTPConnection("127.0.0.1", daemon.port, timeout=120)
    digest = hashlib.sha256()
    received = 0
    with RssWatch(worker) as watch:
        conn.request("GET", f"/bytes/{GIB}")
        response = conn.getresponse()
        assert response.status == 200 and response.getheader("Content-Length") == str(GIB)
        while chunk := response.read(1024 * 1024):
            digest.update(chunk)
            received += len(chunk)
    conn.close()
    assert received == GIB
    assert digest.hexdigest() == gib_digest
    assert watch.growth_mib < 50, f"worker RSS grew {watch.growth_mib:.1f} MiB"
