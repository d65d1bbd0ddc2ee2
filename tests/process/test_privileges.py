"""Started as root with server.user: the port is bound as root, then every process runs as that user."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from support import ROOT, free_port, privileged_port, proc_status, process_children, request, wait_for

pytestmark = [
    pytest.mark.process,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (CI runs as root)"),
]


@pytest.fixture
def shared_dir():
    """A directory the dropped user can reach (pytest's own tmp_path is under a 0700 directory)."""
    directory = Path(tempfile.mkdtemp(prefix="gwd-user-"))
    os.chmod(directory, 0o755)
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


def test_workers_run_as_the_configured_user_after_binding_as_root(shared_dir):
    tmp_path = shared_dir
    nobody = pwd.getpwnam("nobody").pw_uid
    port = privileged_port()
    state = tmp_path / "state"
    config = tmp_path / "gwd.toml"
    config.write_text(
        f'[server]\nuser = "nobody"\nstate_dir = "{state}"\n[log]\naccess = "{tmp_path}/access.log"\n'
        '[[routes]]\nroute = "GET /hello"\nintegration = { type = "mock", body = "hello" }\n'
    )
    stderr = tmp_path / "stderr.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "gwd", "run", "-c", str(config), "--listen", f"127.0.0.1:{port}", "--workers", "2",
         "--admin-listen", f"127.0.0.1:{free_port()}"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=open(stderr, "wb"),
    )
    try:
        wait_for(lambda: "ready:" in stderr.read_text() or proc.poll() is not None, 30, "the daemon")
        assert proc.poll() is None, stderr.read_text()
        assert request(port, "GET", "/hello").body == b"hello"  # serving a port nobody could not have bound
        workers = process_children(proc.pid)
        assert len(workers) == 2
        assert {int(proc_status(pid)['Uid'].split()[1]) for pid in [proc.pid, *workers]} == {nobody}
        assert os.stat(state).st_uid == nobody
        wait_for(lambda: (tmp_path / "access.log").stat().st_size > 0, 5, "the access log written by the workers")
    finally:
        proc.terminate()
        proc.wait(30)
    assert proc.returncode == 0, stderr.read_text()


def test_workers_added_after_root_is_given_up_share_the_sockets_root_bound(shared_dir):
    """The kernel lets only their user add to a SO_REUSEPORT group: new slots share sockets rather than fail to start."""
    port = free_port()
    config = shared_dir / "gwd.toml"
    body = '[[routes]]\nroute = "GET /hello"\nintegration = { type = "mock", body = "hello" }\n'
    config.write_text(f'[server]\nuser = "nobody"\nworkers = 2\nstate_dir = "{shared_dir}/state"\n[log]\naccess = "off"\n' + body)
    stderr = shared_dir / "stderr.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "gwd", "run", "-c", str(config), "--listen", f"127.0.0.1:{port}", "--admin-listen", "off"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=open(stderr, "wb"),
    )

    def serving(workers: int) -> bool:
        return len(process_children(proc.pid)) == workers and all(
            request(port, "GET", "/hello", timeout=2).body == b"hello" for _ in range(20)
        )

    try:
        wait_for(lambda: "ready:" in stderr.read_text() or proc.poll() is not None, 30, "the daemon")
        assert proc.poll() is None, stderr.read_text()
        proc.send_signal(signal.SIGTTIN)
        wait_for(lambda: serving(3), 15, "a third worker, serving")
        # A reload to more workers than the sockets root bound.
        config.write_text(config.read_text().replace("workers = 2", "workers = 4"))
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "reload complete" in stderr.read_text(), 20, "the reload")
        wait_for(lambda: serving(4), 20, "four workers, serving")
        proc.send_signal(signal.SIGTTOU)
        wait_for(lambda: serving(3), 20, "three workers, every connection answered")
        assert "cannot start worker" not in stderr.read_text() and "reload failed" not in stderr.read_text()
    finally:
        proc.terminate()
        proc.wait(30)
    assert proc.returncode == 0, stderr.read_text()
