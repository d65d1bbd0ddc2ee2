"""CORS as a real browser enforces it: headless Chromium runs a page on one origin that calls gwd on another."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from support import free_port, wait_for

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed")

CONFIG = """
cors = {{ allow_origins = ["{page}"], allow_headers = ["Content-Type", "X-Trace"], allow_credentials = true }}

[[routes]]
route = "GET /data"
integration = {{ type = "mock", body = '{{"data": 1}}' }}

[[routes]]
route = "POST /items"
integration = {{ type = "mock", status = 201, body = '{{"created": true}}' }}

[[routes]]
route = "GET /anonymous"
integration = {{ type = "mock", body = '{{"anonymous": true}}' }}
cors = {{ allow_origins = ["*"] }}

[[routes]]
route = "GET /elsewhere"
integration = {{ type = "mock", body = '{{"elsewhere": true}}' }}
cors = {{ allow_origins = ["https://other.example.com"] }}
"""

# Each call's outcome: the body the page could read, or the error the browser raised (a CORS refusal is a TypeError).
PAGE = """<!doctype html>
<script>
const gwd = "http://127.0.0.1:" + new URLSearchParams(location.search).get("port");
async function call(path, init) {
  try {
    const response = await fetch(gwd + path, init);
    return response.status + " " + (await response.text());
  } catch (error) {
    return error.name;
  }
}
(async () => {
  const results = {
    simple: await call("/data", {}),
    preflighted: await call("/items", {method: "POST", headers: {"Content-Type": "application/json", "X-Trace": "t1"}, body: "{}"}),
    credentialed: await call("/data", {credentials: "include"}),
    anonymous: await call("/anonymous", {}),
    credentialedToStar: await call("/anonymous", {credentials: "include"}),
    otherOrigin: await call("/elsewhere", {}),
    unlistedHeader: await call("/items", {method: "POST", headers: {"X-Secret": "s"}, body: "{}"}),
  };
  await fetch("/result", {method: "POST", body: JSON.stringify(results)});
})();
</script>
"""


class PageServer(ThreadingHTTPServer):
    """Serves the page on its own origin and keeps what the page reports."""

    def __init__(self) -> None:
        self.page = PAGE.encode()
        self.results: dict | None = None
        super().__init__(("127.0.0.1", free_port()), _PageHandler)

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _PageHandler(BaseHTTPRequestHandler):
    server: PageServer

    def do_GET(self) -> None:
        self._answer(200, "text/html", self.server.page)

    def do_POST(self) -> None:
        self.server.results = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self._answer(204, "text/plain", b"")

    def _answer(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_chromium_reads_what_the_policy_allows_and_nothing_else(start_daemon, tmp_path):
    page = PageServer()
    threading.Thread(target=page.serve_forever, daemon=True).start()
    daemon = start_daemon(CONFIG.format(page=page.origin), workers=1)
    browser = subprocess.Popen(
        [
            CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
            f"--user-data-dir={tmp_path / 'profile'}", f"{page.origin}/?port={daemon.port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: page.results is not None, 60, "the page to report its calls")
    finally:
        browser.kill()
        browser.wait(10)
        page.shutdown()
    assert page.results == {
        "simple": '200 {"data": 1}',
        "preflighted": '201 {"created": true}',
        "credentialed": '200 {"data": 1}',
        "anonymous": '200 {"anonymous": true}',
        "credentialedToStar": "TypeError",  # "*" is no answer to a request with credentials
        "otherOrigin": "TypeError",
        "unlistedHeader": "TypeError",
    }
    assert daemon.get("/data").status == 200
