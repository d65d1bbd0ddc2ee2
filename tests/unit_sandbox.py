"""Run a command under the restrictions a systemd unit file asks for, without systemd as PID 1.

The unit test for systemd/gwd.service uses it to show that the daemon works
inside the unit's sandbox.  Each setting it reads is applied with the kernel
feature systemd itself uses:

- ``ProtectSystem=strict``, ``ProtectKernelTunables``, ``ProtectControlGroups``:
  every mount read-only except the service's own directories;
- ``ProtectHome``, ``PrivateTmp``, ``PrivateDevices``, ``ProtectProc``,
  ``ProcSubset``: empty or private mounts in a new mount namespace;
- ``StateDirectory``, ``RuntimeDirectory``, ``LogsDirectory``,
  ``ConfigurationDirectory``: created under a prefix, owned by the user,
  their paths in ``$STATE_DIRECTORY`` and the others;
- ``User``, ``CapabilityBoundingSet``, ``AmbientCapabilities``,
  ``NoNewPrivileges``: util-linux ``setpriv``;
- ``SystemCallFilter``, ``RestrictAddressFamilies``, ``MemoryDenyWriteExecute``,
  ``SystemCallArchitectures=native``: a seccomp filter built with libseccomp,
  from the groups ``systemd-analyze syscall-filter`` lists.  It is stricter
  than the unit: a refused call kills the process rather than failing with
  ``SystemCallErrorNumber``, so no refusal can go unnoticed;
- ``LimitNOFILE``, ``UMask``.

Usage, as root: ``python3 unit_sandbox.py enter UNIT PREFIX -- COMMAND...``, where
PREFIX stands for ``/`` in the unit's directories (``PREFIX/var/lib/NAME``...).
It needs Debian's ``/usr/bin/python3`` for its second stage, because
``ProtectHome`` hides an interpreter installed under /root.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import pwd
import resource
import socket
import subprocess
import sys
from pathlib import Path

CLONE_NEWNS = 0x00020000
DEVICES = ("null", "zero", "full", "random", "urandom", "tty")
API_MOUNTS = ("/proc", "/dev")
DIRECTORY_SETTINGS = {
    "StateDirectory": ("STATE_DIRECTORY", "var/lib"),
    "RuntimeDirectory": ("RUNTIME_DIRECTORY", "run"),
    "LogsDirectory": ("LOGS_DIRECTORY", "var/log"),
    "ConfigurationDirectory": ("CONFIGURATION_DIRECTORY", "etc"),
}
FAMILIES = {"AF_UNIX": socket.AF_UNIX, "AF_INET": socket.AF_INET, "AF_INET6": socket.AF_INET6}


def service_settings(unit: Path) -> list[tuple[str, str]]:
    """The ``[Service]`` section's ``Key=value`` lines in order (keys may repeat)."""
    settings, section = [], None
    for line in unit.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line
        elif section == "[Service]":
            key, _, value = line.partition("=")
            settings.append((key.strip(), value.strip()))
    return settings


def last(settings: list[tuple[str, str]], key: str, default: str | None = None) -> str | None:
    values = [value for name, value in settings if name == key]
    return values[-1] if values else default


def enabled(settings: list[tuple[str, str]], key: str) -> bool:
    """A boolean setting (systemd's spellings of true)."""
    return (last(settings, key) or "no").lower() in ("yes", "true", "on", "1")


def allowed_syscalls(settings: list[tuple[str, str]]) -> list[str]:
    """The allow list ``SystemCallFilter=`` lines make: the first sets it, ``~`` lines take from it."""
    allowed: set[str] = set()
    for value in (value for name, value in settings if name == "SystemCallFilter"):
        deny = value.startswith("~")
        names = set().union(*(expand(item) for item in value.lstrip("~").split()))
        allowed = allowed - names if deny else allowed | names
    return sorted(allowed)


def expand(item: str) -> set[str]:
    if not item.startswith("@"):
        return {item}
    listing = subprocess.run(["systemd-analyze", "syscall-filter", item], capture_output=True, text=True, check=True)
    names: set[str] = set()
    for line in listing.stdout.splitlines()[1:]:
        line = line.strip()
        if line and not line.startswith("#"):
            names |= expand(line)
    return names


def mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True)


def enter(unit: Path, prefix: Path, command: list[str]) -> None:
    """Stage one, as root: the mounts, directories, limits and environment; then setpriv into stage two."""
    settings = service_settings(unit)
    user = pwd.getpwnam(last(settings, "User") or "root")
    environment = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}
    if "NOTIFY_SOCKET" in os.environ:
        environment["NOTIFY_SOCKET"] = os.environ["NOTIFY_SOCKET"]
    watchdog = last(settings, "WatchdogSec")
    if watchdog:
        environment["WATCHDOG_USEC"] = str(int(float(watchdog.rstrip("s")) * 1_000_000))
        environment["WATCHDOG_PID"] = str(os.getpid())  # the pid execs keep: the unit's main process
    writable = []
    for key, (variable, base) in DIRECTORY_SETTINGS.items():
        name = last(settings, key)
        if name:
            directory = prefix / base / name
            directory.mkdir(parents=True, exist_ok=True)
            if key != "ConfigurationDirectory":
                os.chown(directory, user.pw_uid, user.pw_gid)
                writable.append(directory)
            environment[variable] = str(directory)

    if ctypes.CDLL(None, use_errno=True).unshare(CLONE_NEWNS) != 0:
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNS)")
    mount("--make-rprivate", "/")
    # Handles on what later mounts hide, to bind back from /proc/PID/fd.
    prefix_fd = os.open(prefix, os.O_PATH)
    device_fds = {name: os.open(f"/dev/{name}", os.O_PATH) for name in DEVICES}
    me = os.getpid()

    if last(settings, "ProtectSystem") == "strict":
        for point in mount_points():
            if not point.startswith(API_MOUNTS):
                mount("-o", "remount,bind,ro", point)
    if enabled(settings, "PrivateTmp"):
        for directory in ("/tmp", "/var/tmp"):
            mount("-t", "tmpfs", "-o", "mode=1777,nosuid,nodev", "tmpfs", directory)
        if str(prefix).startswith(("/tmp/", "/var/tmp/")):
            prefix.mkdir(parents=True)
            mount("--no-canonicalize", "--bind", f"/proc/{me}/fd/{prefix_fd}", str(prefix))
    for directory in writable:
        mount("--bind", str(directory), str(directory))
        mount("-o", "remount,bind,rw", str(directory))
    if enabled(settings, "ProtectHome"):
        for directory in ("/root", "/home", "/run/user"):
            if os.path.isdir(directory):
                mount("-t", "tmpfs", "-o", "mode=000,ro", "tmpfs", directory)
    if enabled(settings, "PrivateDevices"):
        mount("-t", "tmpfs", "-o", "mode=755,nosuid,noexec", "tmpfs", "/dev")
        for name, fd in device_fds.items():
            Path(f"/dev/{name}").touch()
            mount("--no-canonicalize", "--bind", f"/proc/{me}/fd/{fd}", f"/dev/{name}")
        for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")):
            os.symlink(target, f"/dev/{name}")
        os.mkdir("/dev/shm")
        mount("-t", "tmpfs", "-o", "mode=1777,nosuid,nodev", "tmpfs", "/dev/shm")
    if last(settings, "ProtectProc") or last(settings, "ProcSubset"):
        options = ["hidepid=invisible" if last(settings, "ProtectProc") == "invisible" else "hidepid=off"]
        if last(settings, "ProcSubset") == "pid":
            options.append("subset=pid")
        mount("-t", "proc", "-o", ",".join(options), "proc", "/proc")

    limit = last(settings, "LimitNOFILE")
    if limit:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (int(limit), int(limit)))
        except ValueError:  # a container or VM may cap even root below it
            hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    umask = last(settings, "UMask")
    if umask:
        os.umask(int(umask, 8))
    os.chdir("/")

    setpriv = ["setpriv", "--reuid", str(user.pw_uid), "--regid", str(user.pw_gid), "--init-groups"]
    bounding = (last(settings, "CapabilityBoundingSet") or "").split()
    ambient = (last(settings, "AmbientCapabilities") or "").split()
    setpriv += ["--bounding-set", only(bounding), "--inh-caps", only(ambient), "--ambient-caps", only(ambient)]
    if enabled(settings, "NoNewPrivileges"):
        setpriv.append("--no-new-privs")
    stage_two = ["/usr/bin/python3", str(prefix / Path(__file__).name), "filter"]
    stage_two += ["--allow", ",".join(allowed_syscalls(settings))]
    families = (last(settings, "RestrictAddressFamilies") or "").split()
    stage_two += ["--families", ",".join(str(int(FAMILIES[name])) for name in families)]
    if enabled(settings, "MemoryDenyWriteExecute"):
        stage_two.append("--deny-write-execute")
    os.execvpe("setpriv", [*setpriv, "--", *stage_two, "--", *command], environment)


def only(capabilities: list[str]) -> str:
    """setpriv's spelling of "these capabilities and no others": ``-all,+net_bind_service``."""
    return ",".join(["-all", *(f"+{name.lower().removeprefix('cap_')}" for name in capabilities)])


def mount_points() -> list[str]:
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    return sorted(set(points), key=len)


class ArgumentCheck(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int), ("datum_a", ctypes.c_uint64), ("datum_b", ctypes.c_uint64)]


SCMP_ACT_KILL_PROCESS = 0x80000000
SCMP_ACT_ALLOW = 0x7FFF0000
SCMP_CMP_EQ = 4
SCMP_CMP_MASKED_EQ = 7
PROT_WRITE, PROT_EXEC, SHM_EXEC = 0x2, 0x4, 0o100000


def load_filter(allow: list[str], families: list[int], deny_write_execute: bool) -> None:
    """Stage two: install the seccomp filter (kill on anything else) in this process."""
    seccomp = ctypes.CDLL("libseccomp.so.2", use_errno=True)
    seccomp.seccomp_init.restype = ctypes.c_void_p
    seccomp.seccomp_init.argtypes = [ctypes.c_uint32]
    seccomp.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    seccomp.seccomp_rule_add_array.argtypes = [
        ctypes.c_void_p,
        ctypes.c_uint32,
        ctypes.c_int,
        ctypes.c_uint,
        ctypes.POINTER(ArgumentCheck),
    ]
    seccomp.seccomp_load.argtypes = [ctypes.c_void_p]
    context = seccomp.seccomp_init(SCMP_ACT_KILL_PROCESS)

    def allow_when(syscall: int, *checks: tuple[int, int, int, int]) -> None:
        array = (ArgumentCheck * max(1, len(checks)))(*(ArgumentCheck(*check) for check in checks))
        if seccomp.seccomp_rule_add_array(context, SCMP_ACT_ALLOW, syscall, len(checks), array) != 0:
            raise OSError(f"seccomp rule for syscall {syscall} refused")

    conditional: dict[str, list[tuple[int, int, int, int]]] = {}
    if families:
        conditional["socket"] = [(0, SCMP_CMP_EQ, family, 0) for family in families]
    if deny_write_execute:
        wx = PROT_WRITE | PROT_EXEC
        conditional["mmap"] = [(2, SCMP_CMP_MASKED_EQ, wx, value) for value in (0, PROT_WRITE, PROT_EXEC)]
        conditional["mprotect"] = [(2, SCMP_CMP_MASKED_EQ, PROT_EXEC, 0)]
        conditional["pkey_mprotect"] = [(2, SCMP_CMP_MASKED_EQ, PROT_EXEC, 0)]
        conditional["shmat"] = [(2, SCMP_CMP_MASKED_EQ, SHM_EXEC, 0)]
    for name in allow:
        number = seccomp.seccomp_syscall_resolve_name(name.encode())
        if number < 0:
            continue  # not a call on this architecture
        if name in conditional:
            for check in conditional[name]:
                allow_when(number, check)  # each its own rule: any one of them allows
        else:
            allow_when(number)
    if seccomp.seccomp_load(context) != 0:
        raise OSError("seccomp_load failed")


def main(argv: list[str]) -> None:
    split = argv.index("--")
    options, command = argv[:split], argv[split + 1 :]
    if options[0] == "enter":
        enter(Path(options[1]), Path(options[2]), command)
        return
    parser = argparse.ArgumentParser(prog="unit_sandbox.py filter")
    parser.add_argument("--allow", required=True, help="comma-separated system calls")
    parser.add_argument("--families", default="", help="comma-separated address family numbers")
    parser.add_argument("--deny-write-execute", action="store_true")
    args = parser.parse_args(options[1:])
    families = [int(family) for family in args.families.split(",") if family]
    load_filter(args.allow.split(","), families, args.deny_write_execute)
    os.execv(command[0], command)


if __name__ == "__main__":
    main(sys.argv[1:])
