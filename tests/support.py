"""Helpers for tests that run the real daemon: start it, talk to it, watch its processes."""

from __future__ import annotations

import asyncio
import http.client
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import aiohttp
import orjson
import pytest
from harness import free_port  # loadtests/harness.py: one rule for picking ports

ROOT = Path(__file__).resolve().parent.parent


def forked_results(processes: int, work: Callable[[], int]) -> list[int]:
    """Run ``work`` in ``processes`` forked children at once; the numbers they return."""
    read_fd, write_fd = os.pipe()
    children = []
    for _ in range(processes):
        pid = os.fork()
        if pid == 0:
            os.write(write_fd, b"%d\n" % work())
            os._exit(0)
        children.append(pid)
    for pid in children:
        os.waitpid(pid, 0)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as results:
        return [int(line) for line in results.read().split()]


def wait_for(condition: Callable[[], object], timeout: float, what: str, interval: float = 0.02) -> object:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def statuses_past_403(send: Callable[[], int], count: int, timeout: float = 10) -> list[int]:
    """The statuses of ``send()`` until ``count`` were not 403.

    Each worker reads the key database four times a second: right after a
    key is created, a worker that has not read it yet answers 403, and
    counts nothing against the key's quota.
    """
    statuses: list[int] = []
    deadline = time.monotonic() + timeout
    while len(statuses) < count:
        assert time.monotonic() < deadline, f"only {statuses} in {timeout}s"
        code = send()
        if code != 403:
            statuses.append(code)
    return statuses


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> object:
        return orjson.loads(self.body)


def request(port: int, method: str, path: str, headers: dict[str, str] | None = None, timeout: float = 10) -> Reply:
    """One request on a fresh connection."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, headers=headers or {})
        response = conn.getresponse()
        return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
    finally:
        conn.close()


def raw_exchange(port: int, data: bytes, wait: float = 5.0, responses: int = 1) -> bytes:
    """Send ``data``; what came back once ``responses`` whole responses arrived, the server closed, or ``wait`` passed."""
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as conn:
        try:
            conn.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed before taking it all
        received = b""
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and _whole_responses(received) < responses:
            try:
                piece = conn.recv(65536)
            except (ConnectionResetError, socket.timeout):
                break
            if not piece:
                break
            received += piece
        return received


def _whole_responses(data: bytes) -> int:
    count = 0
    while b"\r\n\r\n" in data:
        head, _, rest = data.partition(b"\r\n\r\n")
        length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")), 0)
        if len(rest) < length:
            break
        count, data = count + 1, rest[length:]
    return count


def status_of(response: bytes) -> int | None:
    if not response.startswith(b"HTTP/1."):
        return None
    return int(response.split(b" ", 2)[1])


def privileged_port() -> int:
    """A free port below 1024, which only root may bind (the machine's ip_unprivileged_port_start is 1024)."""
    with open("/proc/sys/net/ipv4/ip_unprivileged_port_start") as f:
        assert int(f.read()) >= 1024, "unprivileged processes may bind low ports here: the test would prove nothing"
    for port in range(980, 1000):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    pytest.skip("no free port below 1024")


def process_children(pid: int) -> list[int]:
    """PIDs whose parent is ``pid`` (from /proc)."""
    children = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # The command name may hold spaces and parentheses: fields start after the last ')'.
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            children.append(int(entry))
    return children


def proc_status(pid: int) -> dict[str, str]:
    """``/proc/PID/status`` as a dict: ``Uid``, ``CapEff``, ``NoNewPrivs``, ``Seccomp``..."""
    with open(f"/proc/{pid}/status") as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)


def process_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


class Daemon:
    """``gwd run`` as a subprocess on a free loopback port, its stdout and stderr in files."""

    def __init__(
        self,
        tmp_path: Path,
        config: str | None,
        workers: int | None = 2,
        extra_args: tuple[str, ...] = (),
        listen: bool = True,
        nofile: int | None = None,
    ) -> None:
        self.tmp_path = tmp_path
        self.nofile = nofile  # the daemon's limit on open files (soft and hard), when set
        self.port = free_port()
        self.admin_port = free_port()
        self.config_path = tmp_path / "gwd.toml"
        if config is not None:
            self.config_path.write_text(config)
        self.stdout_path = tmp_path / "stdout.log"
        self.stderr_path = tmp_path / "stderr.log"
        self.workers = workers
        self.extra_args = extra_args
        self.listen = listen  # False: the config file's server.listen decides
        self.proc: subprocess.Popen[bytes] | None = None
        self.seen_workers: set[int] = set()

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "gwd",
            "run",
            "-c",
            str(self.config_path),
            *(["--listen", f"127.0.0.1:{self.port}"] if self.listen else []),
            "--admin-listen",
            f"127.0.0.1:{self.admin_port}",
            *(["--workers", str(self.workers)] if self.workers is not None else []),
            *self.extra_args,
        ]

    def start(self, wait: bool = True) -> Daemon:
        self.proc = subprocess.Popen(
            self.command(),
            stdin=subprocess.DEVNULL,
            stdout=open(self.stdout_path, "wb"),
            stderr=open(self.stderr_path, "wb"),
            cwd=ROOT,
            preexec_fn=None if self.nofile is None else self._limit_descriptors,
        )
        if wait:
            self.wait_ready()
        return self

    def _limit_descriptors(self) -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (self.nofile, self.nofile))

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def wait_ready(self, timeout: float = 30) -> None:
        wait_for(lambda: "ready:" in self.stderr() or self.proc.poll() is not None, timeout, "the daemon to be ready")
        assert self.proc.poll() is None, f"daemon exited with {self.proc.returncode}:\n{self.stderr()}"

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def access_lines(self) -> list[dict]:
        return [orjson.loads(line) for line in self.stdout_path.read_bytes().splitlines() if line.strip()]

    def worker_pids(self) -> list[int]:
        pids = process_children(self.pid)
        self.seen_workers.update(pids)
        return pids

    def get(self, path: str, **kwargs) -> Reply:
        return request(self.port, "GET", path, **kwargs)

    def signal(self, signum: int) -> None:
        os.kill(self.pid, signum)

    def wait_exit(self, timeout: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def stop(self) -> None:
        """Leave nothing running, whatever state the test left the daemon in."""
        if self.proc is None:
            return
        self.worker_pids()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        for pid in self.seen_workers:
            if process_alive(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass


@dataclass
class LoadClient:
    """Threads sending GETs in a loop until stopped; counts successes and failures.

    ``keepalive=False`` opens a fresh connection per request, so a failure
    means a request the daemon accepted and did not answer.  With
    ``keepalive=True`` each thread reuses one connection and, as RFC 9112
    §9.3.1 lets clients do, retries an idempotent request once when a
    reused connection was closed before any response byte arrived.
    """

    port: int
    path: str
    threads: int = 4
    keepalive: bool = False
    expect_status: int = 200
    ok: int = 0
    failures: list[str] = field(default_factory=list)
    retries: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _threads: list[threading.Thread] = field(default_factory=list)

    def __enter__(self) -> LoadClient:
        for _ in range(self.threads):
            thread = threading.Thread(target=self._loop, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(20)

    def wait_for_requests(self, count: int, timeout: float = 20) -> None:
        start = self.ok
        wait_for(lambda: self.ok >= start + count, timeout, f"{count} more successful requests")

    def _loop(self) -> None:
        conn: http.client.HTTPConnection | None = None
        while not self._stop.is_set():
            if conn is None or not self.keepalive:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            try:
                status = self._send(conn, reused=self.keepalive and conn.sock is not None)
            except (OSError, http.client.HTTPException) as exc:
                with self._lock:
                    self.failures.append(repr(exc))
                conn.close()
                conn = None
                continue
            with self._lock:
                if status == self.expect_status:
                    self.ok += 1
                else:
                    self.failures.append(f"status {status}")
            if not self.keepalive:
                conn.close()
        if conn is not None:
            conn.close()

    def _send(self, conn: http.client.HTTPConnection, reused: bool) -> int:
        try:
            conn.request("GET", self.path)
            response = conn.getresponse()
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            if not reused:
                raise
            conn.close()
            with self._lock:
                self.retries += 1
            conn.request("GET", self.path)
            response = conn.getresponse()
        response.read()
        if response.getheader("Connection", "").lower() == "close":
            conn.close()
        return response.status


class Hammer:
    """Threads sending requests as fast as they can on keep-alive connections, for a fixed time."""

    def __init__(self, port: int, path: str, seconds: float, threads: int, headers: dict[str, str] | None = None) -> None:
        self.port, self.path, self.seconds, self.headers = port, path, seconds, headers or {}
        self.statuses: dict[int, int] = {}
        self.first_ok = float("inf")
        self.last_ok = 0.0
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run) for _ in range(threads)]

    def run(self) -> Hammer:
        self.started = time.monotonic()
        for thread in self._threads:
            thread.start()
        return self

    def join(self) -> Hammer:
        for thread in self._threads:
            thread.join(self.seconds + 30)
        self.elapsed = time.monotonic() - self.started
        return self

    def _run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        deadline = self.started + self.seconds
        while time.monotonic() < deadline:
            conn.request("GET", self.path, headers=self.headers)
            response = conn.getresponse()
            response.read()
            now = time.monotonic()
            with self._lock:
                self.statuses[response.status] = self.statuses.get(response.status, 0) + 1
                if response.status == 200:
                    self.first_ok = min(self.first_ok, now)
                    self.last_ok = max(self.last_ok, now)
        conn.close()

    @property
    def offered_per_second(self) -> float:
        return sum(self.statuses.values()) / self.elapsed


class RedisServer:
    """A real redis-server on a free loopback port, without persistence."""

    def __init__(self, tmp_path) -> None:
        self.port = free_port()
        self.tmp_path = tmp_path
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        if shutil.which("redis-server") is None:
            pytest.fail("redis-server is not installed (apt-get install redis-server; .ci/run does)")
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(self.tmp_path)],
            stdout=subprocess.DEVNULL,
        )
        wait_for(self._answers, 10, "redis-server to answer")

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16) == b"+PONG\r\n"
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def x_cache(daemon: Daemon, path: str, method: str = "GET", headers: dict[str, str] | None = None) -> str:
    """The X-Cache header of one request ('-' when there is none)."""
    return request(daemon.port, method, path, headers).headers.get("x-cache", "-")


def concurrent_gets(port: int, path: str, count: int) -> list[str]:
    """``count`` GETs at once, each on its own connection; their X-Cache headers."""
    async def run() -> list[str]:
        connector = aiohttp.TCPConnector(limit=count)
        async with aiohttp.ClientSession(connector=connector) as session:

            async def one() -> str:
                async with session.get(f"http://127.0.0.1:{port}{path}") as reply:
                    await reply.read()
                    assert reply.status == 200
                    return reply.headers["X-Cache"]

            return await asyncio.gather(*(one() for _ in range(count)))

    return asyncio.run(run())


def scrape(daemon: Daemon, accept: str | None = None) -> str:
    """The daemon's /metrics text."""
    return scrape_port(daemon.admin_port, accept)


def scrape_port(admin_port: int, accept: str | None = None) -> str:
    """The /metrics text of the admin listener on ``admin_port``."""
    conn = http.client.HTTPConnection("127.0.0.1", admin_port, timeout=10)
    try:
        conn.request("GET", "/metrics", headers={"Accept": accept} if accept else {})
        response = conn.getresponse()
        assert response.status == 200
        return response.read().decode()
    finally:
        conn.close()


def probe(daemon: Daemon, path: str) -> int:
    """The status of a GET on the admin listener."""
    conn = http.client.HTTPConnection("127.0.0.1", daemon.admin_port, timeout=10)
    try:
        conn.request("GET", path)
        return conn.getresponse().status
    finally:
        conn.close()


def total(text: str, name: str, **labels: str) -> float:
    """The sum of a metric's samples whose labels include ``labels``."""
    found = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        series, _, value = line.rpartition(" ")
        if all(f'{key}="{wanted}"' in series for key, wanted in labels.items()):
            found += float(value)
    return found


def series(text: str, name: str) -> list[str]:
    """The labelled series of a metric in an exposition."""
    return [line.rpartition(" ")[0] for line in text.splitlines() if line.startswith(name + "{")]


class NotifySocket:
    """The service manager's end of NOTIFY_SOCKET: records each datagram with when it came."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.settimeout(0.05)
        self.messages: list[tuple[float, str]] = []

    def receive(self) -> list[str]:
        while True:
            try:
                data = self.sock.recv(4096)
            except (socket.timeout, BlockingIOError):
                return [text for _, text in self.messages]
            self.messages.append((time.monotonic(), data.decode()))

    def wait_for(self, field: str, after: int = 0, timeout: float = 20) -> int:
        """The index of the first message from ``after`` on holding ``field`` as a line."""
        def found() -> int | None:
            texts = self.receive()
            for index in range(after, len(texts)):
                if field in texts[index].split("\n"):
                    return index + 1  # +1: 0 would read as "not yet"
            return None

        return wait_for(found, timeout, f"{field} on NOTIFY_SOCKET") - 1


class RssWatch:
    """Samples a process's resident memory in a thread; reports the growth over the start."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.start = self.rss()
        self.peak = self.start
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def rss(self) -> int:
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS")

    def _loop(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self.rss())

    def __enter__(self) -> RssWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def growth_mib(self) -> float:
        return (self.peak - self.start) / 1024 / 1024
