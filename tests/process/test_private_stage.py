"""A private stage: served only on the addresses its config names, and those serve nothing else."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
from support import ROOT, free_port, request, wait_for

pytestmark = pytest.mark.process

CONFIG = """
[[stages]]
name = "$default"
variables = {{ where = "public" }}

[[stages]]
name = "internal"
variables = {{ where = "internal" }}
listen = ["127.0.0.1:{port}"]

[[routes]]
route = "GET /pets/{{id}}"
integration = {{ type = "mock", body = "${{stageVariables.where}} {{id}}" }}
"""


def listening_ports(pid: int) -> set[int]:
    """Ports the process has listening TCP sockets on (from /proc)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                if fields[3] == "0A" and fields[9] in inodes:  # state LISTEN
                    ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def test_private_stage_is_served_only_on_its_own_address(start_daemon):
    private = free_port()
    daemon = start_daemon(CONFIG.format(port=private), workers=2)
    assert request(daemon.port, "GET", "/pets/1").body == b"public 1"
    assert request(daemon.port, "GET", "/internal/pets/1").status == 404  # not on the public address
    assert request(private, "GET", "/internal/pets/2").body == b"internal 2"
    assert request(private, "GET", "/pets/3").status == 404  # the public stage is not served there
    assert listening_ports(daemon.pid) == {daemon.port, private, daemon.admin_port}
    assert f"http://127.0.0.1:{private}" in daemon.stderr()


def test_a_reload_moves_a_private_stage(start_daemon):
    old, new = free_port(), free_port()
    daemon = start_daemon(CONFIG.format(port=old), workers=1)
    assert request(old, "GET", "/internal/pets/1").status == 200
    daemon.config_path.write_text(CONFIG.format(port=new))
    daemon.signal(signal.SIGHUP)
    wait_for(lambda: "reload complete" in daemon.stderr(), 20, "the reload")
    assert request(new, "GET", "/internal/pets/1").body == b"internal 1"
    wait_for(lambda: listening_ports(daemon.pid) == {daemon.port, new, daemon.admin_port}, 20, "the old private address to close")
    assert request(daemon.port, "GET", "/pets/1").status == 200  # the public address never closed


def test_a_private_stage_cannot_take_the_public_address(tmp_path):
    path = tmp_path / "gwd.toml"
    path.write_text(CONFIG.format(port=8080))
    checked = subprocess.run([sys.executable, "-m", "gwd", "check", "-c", str(path)], capture_output=True, text=True, cwd=ROOT)
    assert checked.returncode == 78
    assert "stages[1].listen[0]" in checked.stderr and "server.listen" in checked.stderr
