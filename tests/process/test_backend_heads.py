"""Backend response heads are held to the limits request heads are: 502, a closed connection, flat memory."""

from __future__ import annotations

import socket
import threading
import time

import pytest
from support import RssWatch, wait_for

pytestmark = pytest.mark.process

HEADS = {
    # An endless header line: it never ends, so only a limit stops it.
    "endless": None,
    "many-lines": b"HTTP/1.1 200 OK\r\n" + b"X-Line: v\r\n" * 200_000 + b"Content-Length: 2\r\n\r\nok",
    "long-line": b"HTTP/1.1 200 OK\r\nX-Long: " + b"a" * 200_000 + b"\r\nContent-Length: 2\r\n\r\nok",
}


class HostileBackend:
    """Answers every request on its port with one of :data:`HEADS`, until the gateway hangs up."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.sent: list[int] = []  # bytes sent per connection, once it ended
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        sent = 0
        with conn:
            conn.settimeout(10)
            try:
                conn.recv(65536)
                if self.kind == "endless":
                    conn.sendall(b"HTTP/1.1 200 OK\r\nX-Endless: ")
                    deadline = time.monotonic() + 20
                    while time.monotonic() < deadline:  # bounded, should the gateway never hang up
                        sent += conn.send(b"a" * 65536)
                else:
                    conn.sendall(HEADS[self.kind])
                    sent = len(HEADS[self.kind])
                    conn.recv(65536)  # until the gateway hangs up
            except OSError:
                pass
        self.sent.append(sent)

    def close(self) -> None:
        self.listener.close()


@pytest.mark.parametrize("kind", list(HEADS))
def test_an_oversized_backend_head_is_a_502_and_costs_no_memory(start_daemon, kind):
    backend = HostileBackend(kind)
    try:
        daemon = start_daemon(
            f"""
[[routes]]
route = "GET /hostile"
integration = {{ type = "http", uri = "http://127.0.0.1:{backend.port}/", timeout = "5s" }}
""",
            workers=1,
        )
        [worker] = daemon.worker_pids()
        with RssWatch(worker) as watch:
            for _ in range(5):
                started = time.monotonic()
                reply = daemon.get("/hostile")
                assert reply.status == 502, reply
                assert time.monotonic() - started < 5
                assert len(reply.body) < 1000  # nothing of the backend's head is relayed
        wait_for(lambda: len(backend.sent) == 5, 10, "the gateway to hang up on each backend connection")
        print(f"{kind}: worker RSS grew {watch.growth_mib:.1f} MiB; backend sent {backend.sent}")
        assert watch.growth_mib < 20
        lines = wait_for(lambda: len(daemon.access_lines()) == 5 and daemon.access_lines(), 10, "the access-log lines")
        assert {(line["status"], line["integrationError"]) for line in lines} == {(502, "protocol")}
        assert "Traceback" not in daemon.stderr()
    finally:
        backend.close()
