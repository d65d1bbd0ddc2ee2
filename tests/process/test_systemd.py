"""Running under systemd: sd_notify messages at the right moments, and socket activation."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys

import pytest
from support import ROOT, Daemon, NotifySocket, free_port, process_children, request, wait_for

pytestmark = pytest.mark.process

CONFIG = """
[[routes]]
route = "GET /hello"
integration = { type = "mock", body = "hello" }
"""


def test_sd_notify_ready_reloading_stopping_and_watchdog(tmp_path, monkeypatch, start_daemon):
    notify_socket = NotifySocket(str(tmp_path / "notify"))
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify"))
    monkeypatch.setenv("WATCHDOG_USEC", "400000")  # a ping every 0.2 s
    daemon = start_daemon(CONFIG, workers=2, wait=False)

    ready = notify_socket.wait_for("READY=1")
    # At READY=1 both workers answer: the supervisor waited for each one's readiness byte.
    assert len(process_children(daemon.pid)) == 2
    assert "ready: 2 worker(s)" in daemon.stderr()
    assert request(daemon.port, "GET", "/hello").status == 200
    status = [text for text in notify_socket.receive()[: ready + 1] if "STATUS=" in text]
    assert status and "2 workers" in status[0] and "0 reloads" in status[0]

    def pings() -> list[float]:
        notify_socket.receive()
        return [when for when, text in notify_socket.messages if text == "WATCHDOG=1"]

    wait_for(lambda: len(pings()) >= 6, 10, "six watchdog pings")
    gaps = sorted(later - earlier for earlier, later in zip(pings(), pings()[1:]))
    assert 0.1 <= gaps[len(gaps) // 2] <= 0.5, gaps  # half of WATCHDOG_USEC apart, give or take the loop's waits

    daemon.signal(signal.SIGHUP)
    reloading = notify_socket.wait_for("RELOADING=1", after=ready + 1)
    assert "MONOTONIC_USEC=" in notify_socket.receive()[reloading]
    ready_again = notify_socket.wait_for("READY=1", after=reloading + 1)
    assert "reload complete" in daemon.stderr()
    assert "1 reloads" in notify_socket.receive()[ready_again]

    daemon.signal(signal.SIGTERM)
    notify_socket.wait_for("STOPPING=1", after=ready_again + 1)
    assert daemon.wait_exit(30) == 0


def test_socket_activation_serves_on_the_passed_socket(tmp_path):
    port = free_port()
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", port))
    listener.listen(16)
    config = tmp_path / "gwd.toml"
    config.write_text(CONFIG)
    command = (
        f"LISTEN_PID=$$ LISTEN_FDS=1 exec {sys.executable} -m gwd run -c {config} --listen 127.0.0.1:{port}"
        f" --workers 1 --admin-listen 127.0.0.1:{free_port()}"
    )
    stderr = tmp_path / "stderr.log"
    proc = subprocess.Popen(
        ["sh", "-c", command],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=open(stderr, "wb"),
        pass_fds=(3,),
        preexec_fn=lambda: os.dup2(listener.fileno(), 3),
    )
    try:
        wait_for(lambda: "ready:" in stderr.read_text() or proc.poll() is not None, 30, "the daemon")
        assert proc.poll() is None, stderr.read_text()
        # The port is held by the test's socket: gwd could only serve it through fd 3, not by binding.
        assert request(port, "GET", "/hello").body == b"hello"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        listener.close()


def test_log_lines_carry_syslog_priorities_when_stderr_is_the_journal(tmp_path, monkeypatch, start_daemon):
    # Under systemd stderr is journald's stream and JOURNAL_STREAM names it; here a file stands in for it.
    daemon = Daemon(tmp_path, CONFIG, workers=1)
    daemon.stderr_path.touch()
    stat = os.stat(daemon.stderr_path)
    monkeypatch.setenv("JOURNAL_STREAM", f"{stat.st_dev}:{stat.st_ino}")
    daemon.start()
    try:
        daemon.config_path.write_text("[server]\nworkers = -1\n")
        daemon.signal(signal.SIGHUP)
        wait_for(lambda: "reload failed" in daemon.stderr(), 10, "the failed reload")
        lines = daemon.stderr().splitlines()
        assert any(line.startswith("<6>INFO ") and "ready:" in line for line in lines), lines
        assert any(line.startswith("<3>ERROR ") and "reload failed" in line for line in lines), lines
        assert all(re.match(r"<\d>", line) for line in lines if line.strip()), lines
    finally:
        daemon.stop()


def test_log_lines_carry_time_stamps_on_a_terminal_or_file(start_daemon):
    daemon = start_daemon(CONFIG, workers=1)
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z INFO ", daemon.stderr()), daemon.stderr()
