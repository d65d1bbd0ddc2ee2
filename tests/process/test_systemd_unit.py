"""systemd/gwd.service and gwd.socket: they verify, the unit scores <= 2.0, and gwd runs inside its sandbox.

gwd is installed the way the README's operations guide says (a venv made by
Debian's python3, ``pip install``), under a temporary prefix standing for
``/``: the unit's ``/opt/gwd`` and ``/etc/gwd`` become ``PREFIX/opt/gwd`` and
``PREFIX/etc/gwd``, and its user ``gwd`` the stand-in ``nobody``.
"""

from __future__ import annotations

import grp
import os
import pwd
import re
import shutil
import signal
import ssl
import subprocess
import tempfile
import urllib.request
import uuid
from pathlib import Path

import pytest
from backend import Backend
from support import ROOT, NotifySocket, free_port, privileged_port, proc_status, process_children, scrape_port, wait_for
from unit_sandbox import last, service_settings

pytestmark = [
    pytest.mark.process,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (CI runs as root)"),
]


def mount_namespaces_allowed() -> bool:
    return shutil.which("unshare") is not None and subprocess.run(["unshare", "--mount", "true"]).returncode == 0

UNIT = ROOT / "systemd" / "gwd.service"
SOCKET_UNIT = ROOT / "systemd" / "gwd.socket"
SERVICE_USER = "nobody"
CAP_NET_BIND_SERVICE = 1 << 10


@pytest.fixture(scope="module")
def prefix():
    """gwd installed as the operations guide says, under a prefix every user may read."""
    directory = Path(tempfile.mkdtemp(prefix="gwd-unit-"))
    os.chmod(directory, 0o755)
    venv = directory / "opt" / "gwd"
    subprocess.run(["/usr/bin/python3", "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", str(ROOT)], check=True)
    for unit in (UNIT, SOCKET_UNIT):
        text = unit.read_text().replace("/opt/gwd/", f"{directory}/opt/gwd/").replace("/etc/gwd/", f"{directory}/etc/gwd/")
        (directory / unit.name).write_text(text)
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


def group_of(user: str) -> str:
    return grp.getgrgid(pwd.getpwnam(user).pw_gid).gr_name


def test_units_verify_with_execstart_at_the_installed_gwd(prefix):
    assert (prefix / "opt/gwd/bin/gwd").exists()
    result = subprocess.run(
        ["systemd-analyze", "verify", str(prefix / "gwd.service"), str(prefix / "gwd.socket")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert "gwd.service" not in result.stderr, result.stderr  # no warning about the unit either
    # The check is real: a unit whose ExecStart is missing fails it.
    broken = prefix / "broken" / "gwd.service"
    broken.parent.mkdir(exist_ok=True)
    broken.write_text((prefix / "gwd.service").read_text().replace("/opt/gwd/bin/gwd run", "/opt/gwd/bin/nothing run"))
    assert subprocess.run(["systemd-analyze", "verify", str(broken)], capture_output=True).returncode != 0


def test_security_exposure_is_at_most_2_and_the_readme_says_it():
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--no-pager", str(UNIT)], capture_output=True, text=True
    )
    found = re.search(r"Overall exposure level for gwd\.service: (\d+\.\d)", result.stdout)
    assert found, result.stdout + result.stderr
    score = float(found.group(1))
    assert score <= 2.0, result.stdout
    assert f"`systemd-analyze security --offline=true systemd/gwd.service`: **{score}**" in (ROOT / "README.md").read_text()


@pytest.mark.skipif(not mount_namespaces_allowed(), reason="this kernel or container refuses mount namespaces")
def test_gwd_runs_inside_the_units_sandbox(prefix):
    """Every process as the unit's user, with only CAP_NET_BIND_SERVICE, under the seccomp filter and read-only /."""
    config_dir = prefix / "etc" / "gwd"
    (config_dir / "tls").mkdir(parents=True, exist_ok=True)
    gwd = str(prefix / "opt/gwd/bin/gwd")
    subprocess.run([gwd, "certs", "init", str(config_dir / "tls"), "--force"], check=True, capture_output=True)
    subprocess.run(
        [gwd, "certs", "issue", str(config_dir / "tls"), "--name", "server", "--san", "127.0.0.1", "--force"],
        check=True,
        capture_output=True,
    )
    user = pwd.getpwnam(SERVICE_USER)
    for key in (config_dir / "tls").glob("*.key"):
        os.chown(key, user.pw_uid, user.pw_gid)  # the guide: keys belong to the service user, mode 0600
    shutil.copy(ROOT / "tests" / "unit_sandbox.py", prefix / "unit_sandbox.py")
    port, admin_port = privileged_port(), free_port()
    notify_name = f"gwd-test-{uuid.uuid4().hex}"
    notify = NotifySocket("\0" + notify_name)
    with Backend() as backend:
        (config_dir / "gwd.toml").write_text(
            f"""
[server]
listen = "127.0.0.1:{port}"
workers = 2
tls = {{ cert = "{config_dir}/tls/server.pem", key = "{config_dir}/tls/server.key" }}

[admin]
listen = "127.0.0.1:{admin_port}"

[log]
access = "{prefix}/var/log/gwd/access.log"

[[routes]]
route = "GET /hello"
integration = {{ type = "mock", body = "hello" }}

[[routes]]
route = "GET /api/{{proxy+}}"
integration = {{ type = "http", uri = "{backend.url}/{{proxy}}" }}
"""
        )
        # The user gwd does not exist here; nobody stands in for it.
        unit = prefix / "sandbox" / "gwd.service"
        unit.parent.mkdir(exist_ok=True)
        text = (prefix / "gwd.service").read_text()
        unit.write_text(text.replace("User=gwd", f"User={SERVICE_USER}").replace("Group=gwd", f"Group={group_of(SERVICE_USER)}"))
        settings = service_settings(unit)
        sandboxed = [
            str(ROOT / "tests" / "unit_sandbox.py"),
            "enter",
            str(unit),
            str(prefix),
            "--",
        ]
        environment = {**os.environ, "NOTIFY_SOCKET": "@" + notify_name}
        # ExecStartPre, in the same sandbox.
        check = subprocess.run(
            ["/usr/bin/python3", *sandboxed, *last(settings, "ExecStartPre").split()],
            capture_output=True,
            text=True,
            env=environment,
            timeout=60,
        )
        assert check.returncode == 0 and "OK" in check.stdout, check.stdout + check.stderr
        # The sandbox is real: writable and executable memory, which MemoryDenyWriteExecute forbids, kills.
        wx = "import mmap; mmap.mmap(-1, 4096, prot=mmap.PROT_WRITE | mmap.PROT_EXEC); print('mapped')"
        refused = subprocess.run(["/usr/bin/python3", *sandboxed, "/usr/bin/python3", "-c", wx], capture_output=True, timeout=60)
        assert refused.returncode == -signal.SIGSYS and b"mapped" not in refused.stdout, refused
        stderr_path = prefix / "stderr.log"
        daemon = subprocess.Popen(
            ["/usr/bin/python3", *sandboxed, *last(settings, "ExecStart").split()],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=open(stderr_path, "wb"),
            env=environment,
        )
        try:
            ready = notify.wait_for("READY=1", timeout=60)
            supervisor = daemon.pid  # every stage exec'd: the unit's main process keeps this pid
            workers = process_children(supervisor)
            assert len(workers) == 2, stderr_path.read_text()
            for pid in (supervisor, *workers):
                status = proc_status(pid)
                assert status["Uid"].split() == [str(user.pw_uid)] * 4, status["Uid"]
                assert int(status["CapEff"], 16) == CAP_NET_BIND_SERVICE, status["CapEff"]
                assert int(status["CapBnd"], 16) == CAP_NET_BIND_SERVICE, status["CapBnd"]
                assert status["NoNewPrivs"] == "1" and status["Seccomp"] == "2", status
            with open(f"/proc/{supervisor}/mountinfo") as f:
                root_mount = next(line.split() for line in f if line.split()[4] == "/")
            assert "ro" in root_mount[5].split(","), root_mount

            context = ssl.create_default_context(cafile=str(config_dir / "tls" / "ca.pem"))
            with urllib.request.urlopen(f"https://127.0.0.1:{port}/hello", context=context, timeout=10) as reply:
                assert reply.status == 200 and reply.read() == b"hello"
            with urllib.request.urlopen(f"https://127.0.0.1:{port}/api/pets", context=context, timeout=10) as reply:
                assert reply.status == 200
            assert backend.received and backend.received[-1].raw_path == "/pets"
            # The two requests may have gone to two workers, each flushing on its own second.
            wait_for(
                lambda: all(f'route="{route}"' in scrape_port(admin_port) for route in ("GET /hello", "GET /api/{proxy+}")),
                10,
                "both requests in /metrics",
            )
            assert any((prefix / "run" / "gwd").iterdir()), "no metrics files in RUNTIME_DIRECTORY"
            wait_for(lambda: (prefix / "var/log/gwd/access.log").stat().st_size > 0, 10, "the access log")

            os.kill(supervisor, signal.SIGHUP)  # what ExecReload sends
            reloading = notify.wait_for("RELOADING=1", after=ready + 1)
            notify.wait_for("READY=1", after=reloading + 1, timeout=60)
            with urllib.request.urlopen(f"https://127.0.0.1:{port}/hello", context=context, timeout=10) as reply:
                assert reply.status == 200
            os.kill(supervisor, signal.SIGTERM)
            assert daemon.wait(30) == 0, stderr_path.read_text()
            notify.wait_for("STOPPING=1")
            assert "Traceback" not in stderr_path.read_text()
        finally:
            if daemon.poll() is None:
                daemon.kill()
                daemon.wait(10)
