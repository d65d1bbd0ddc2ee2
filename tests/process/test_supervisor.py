"""The supervisor with real processes and real signals: workers, restarts, backoff, stop."""

from __future__ import annotations

import http.client
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from datetime import datetime
from pathlib import Path

from support import LoadClient, probe, process_alive, request, scrape, total, wait_for

HELLO = """
[[routes]]
route = "GET /hello"
integration = { type = "mock", body = '{"message": "hi"}' }

[[routes]]
route = "GET /slow"
integration = { type = "mock", delay = "2s", body = '{"slow": true}' }
"""


def test_ps_shows_one_supervisor_and_its_workers(start_daemon):
    daemon = start_daemon(HELLO, workers=2)
    listing = subprocess.run(["ps", "-eo", "pid,ppid,args"], capture_output=True, text=True, check=True).stdout
    supervisors = [line for line in listing.splitlines() if line.split()[0] == str(daemon.pid)]
    workers = [line for line in listing.splitlines() if line.split()[1] == str(daemon.pid)]
    assert len(supervisors) == 1 and "gwd: supervisor" in supervisors[0]
    assert len(workers) == 2
    assert sorted(line.split(None, 2)[2] for line in workers) == ["gwd: worker 1", "gwd: worker 2"]


def test_killed_worker_is_replaced_within_a_second_while_clients_barely_notice(start_daemon):
    daemon = start_daemon(HELLO, workers=2)
    with LoadClient(daemon.port, "/hello", threads=4) as load:
        load.wait_for_requests(200)
        victim = daemon.worker_pids()[0]
        os.kill(victim, signal.SIGKILL)
        killed_at = time.monotonic()
        pids = wait_for(
            lambda: (p := daemon.worker_pids()) and len(p) == 2 and victim not in p and p,
            5,
            "a replacement worker",
            interval=0.01,
        )
        replaced_after = time.monotonic() - killed_at
        load.wait_for_requests(200)
    assert replaced_after < 1.0, f"replacement took {replaced_after:.2f}s"
    assert victim not in pids
    # Each client thread has at most one request in flight, on a fresh connection:
    # only those that the killed worker had accepted may fail.
    assert len(load.failures) <= load.threads, load.failures
    assert "was killed by SIGKILL" in daemon.stderr()


def test_a_serving_worker_killed_again_soon_is_still_restarted_at_once(start_daemon):
    """Two kills seconds apart are an operator's (or the OOM killer's), not a crash loop; a third in a minute backs off."""
    daemon = start_daemon(HELLO, workers=1)
    for kill, restart in enumerate(["now", "now", "in 0.5s"], 1):
        [victim] = daemon.worker_pids()
        wait_for(lambda: daemon.get("/hello").status == 200, 5, "the worker to serve")
        os.kill(victim, signal.SIGKILL)
        logged = f"(pid {victim}) was killed by SIGKILL (perhaps out of memory) after"
        wait_for(lambda: logged in daemon.stderr(), 5, "the death to be logged")
        line = next(line for line in daemon.stderr().splitlines() if logged in line)
        assert line.endswith(f"restarting it {restart}"), (kill, line)
        wait_for(lambda: (p := daemon.worker_pids()) and victim not in p, 5, "a replacement")


def test_worker_that_cannot_start_is_restarted_with_growing_delays(start_daemon, tmp_path):
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    daemon = start_daemon(HELLO + f'\n[log]\naccess = "{log_dir}/access.log"\n', workers=1)
    # A real fault: the access log's directory vanishes, so new workers cannot open it.
    shutil.rmtree(log_dir)
    os.kill(daemon.worker_pids()[0], signal.SIGKILL)
    delays = wait_for(
        lambda: (found := re.findall(r"restarting it in ([\d.]+)s", daemon.stderr())) and len(found) >= 3 and found,
        20,
        "three delayed restarts",
    )
    delays = [float(d) for d in delays]
    assert delays[:3] == sorted(delays[:3]) and delays[0] < delays[1] < delays[2], delays
    assert "failed to start" in daemon.stderr()
    spawns = [
        datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
        for stamp in re.findall(r"^(\S+) INFO .*started worker 1 ", daemon.stderr(), re.M)
    ]
    # spawns: the first worker, its immediate replacement after SIGKILL, then one per delayed restart.
    gaps = [later - earlier for earlier, later in zip(spawns[1:], spawns[2:])]
    assert len(gaps) >= 2, spawns
    assert gaps[0] >= delays[0] and gaps[1] >= delays[1] and gaps[1] > gaps[0], (gaps, delays)
    # Once the fault is gone, the worker comes back by itself; until then its slot's socket refuses connections.
    log_dir.mkdir()
    wait_for(lambda: answers(daemon.port), 30, "recovery")


def answers(port: int) -> bool:
    try:
        return request(port, "GET", "/hello", timeout=2).status == 200
    except OSError:  # refused, or not answered yet
        return False


def test_sigterm_lets_a_slow_request_finish_and_exits_zero(start_daemon):
    daemon = start_daemon(HELLO, workers=2)
    result: dict = {}

    def slow_request() -> None:
        result["reply"] = request(daemon.port, "GET", "/slow", timeout=20)

    client = threading.Thread(target=slow_request)
    client.start()
    # The request is in flight once the mock is sleeping in a worker: give the bytes time to arrive.
    wait_for(lambda: daemon.worker_pids(), 5, "workers")
    time.sleep(0.3)
    started = time.monotonic()
    daemon.signal(signal.SIGTERM)
    assert daemon.wait_exit(20) == 0
    client.join(5)
    assert result["reply"].status == 200 and result["reply"].json() == {"slow": True}
    assert time.monotonic() - started >= 1.0  # it waited for the request rather than cutting it off
    assert "SIGTERM: stopping" in daemon.stderr()
    # The port is closed after exit.
    try:
        request(daemon.port, "GET", "/hello", timeout=2)
        raise AssertionError("daemon still answers after exit")
    except ConnectionRefusedError:
        pass


def test_sigint_stops_quickly(start_daemon):
    daemon = start_daemon(HELLO + '\n[server]\ndrain_timeout = "30s"\n', workers=2)
    started = time.monotonic()
    daemon.signal(signal.SIGINT)
    assert daemon.wait_exit(10) == 0
    assert time.monotonic() - started < 5


def listening_socket_inode(port: int) -> str:
    """The inode of the socket listening on 127.0.0.1:``port`` (from /proc/net/tcp)."""
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if fields[1] == f"0100007F:{port:04X}" and fields[3] == "0A":  # 0A: LISTEN
                return fields[9]
    raise AssertionError(f"nothing listens on 127.0.0.1:{port}")


def holds_socket(pid: int, inode: str) -> bool:
    directory = f"/proc/{pid}/fd"
    return any(os.readlink(os.path.join(directory, fd)) == f"socket:[{inode}]" for fd in os.listdir(directory))


def socket_inodes(port: int, state: str) -> list[str]:
    """Inodes of the sockets on local port 127.0.0.1:``port`` in ``state`` (/proc/net/tcp's hex code: 0A listen, 01 established)."""
    with open("/proc/net/tcp") as f:
        rows = [line.split() for line in f.readlines()[1:]]
    return [fields[9] for fields in rows if fields[1] == f"0100007F:{port:04X}" and fields[3] == state]


def held_by(pids: list[int], inodes: list[str]) -> dict[int, int]:
    """How many of ``inodes`` each process holds."""
    held = {}
    for pid in pids:
        directory = f"/proc/{pid}/fd"
        targets = {os.readlink(os.path.join(directory, fd)) for fd in os.listdir(directory)}
        held[pid] = sum(f"socket:[{inode}]" in targets for inode in inodes)
    return held


def fresh_connections_answered(port: int, count: int) -> bool:
    """``count`` new connections in a row, each answered within 2 s (a connection queued where no worker accepts is not)."""
    for _ in range(count):
        if request(port, "GET", "/hello", timeout=2).status != 200:
            return False
    return True


def test_each_worker_listens_on_a_socket_of_its_own_and_connections_spread_over_them(start_daemon):
    daemon = start_daemon(HELLO, workers=2)
    workers = daemon.worker_pids()
    listening = socket_inodes(daemon.port, "0A")
    assert len(listening) == 2
    assert sorted(held_by(workers, listening).values()) == [1, 1], "each worker holds one listening socket"
    assert all(holds_socket(daemon.pid, inode) for inode in listening)
    # A burst of keep-alive clients, as a load balancer or wrk opens them: the kernel hashes each to a socket.
    clients = [http.client.HTTPConnection("127.0.0.1", daemon.port, timeout=10) for _ in range(40)]
    for client in clients:
        client.connect()
    for client in clients:
        client.request("GET", "/hello")
        assert client.getresponse().read() == b'{"message": "hi"}'
    served = held_by(workers, socket_inodes(daemon.port, "01"))
    for client in clients:
        client.close()
    print(f"40 connections per worker: {sorted(served.values())}")
    # Binomial(40, 1/2): fewer than 6 on one worker has a chance of about 1 in 700,000.
    assert sum(served.values()) == 40 and min(served.values()) >= 6, served


def test_with_reuse_port_off_the_workers_share_one_socket(start_daemon):
    daemon = start_daemon(HELLO + "\n[server]\nreuse_port = false\n", workers=2)
    listening = socket_inodes(daemon.port, "0A")
    assert len(listening) == 1
    assert held_by(daemon.worker_pids(), listening) == {pid: 1 for pid in daemon.worker_pids()}
    assert fresh_connections_answered(daemon.port, 10)


def test_a_reload_keeps_every_listening_socket_and_refuses_to_change_reuse_port(start_daemon):
    daemon = start_daemon(HELLO, workers=2)
    before = sorted(socket_inodes(daemon.port, "0A"))
    old_workers = daemon.worker_pids()
    daemon.signal(signal.SIGHUP)
    wait_for(lambda: "reload complete" in daemon.stderr(), 15, "the reload")
    wait_for(lambda: not set(daemon.worker_pids()) & set(old_workers), 15, "the old workers to leave")
    assert sorted(socket_inodes(daemon.port, "0A")) == before
    assert sorted(held_by(daemon.worker_pids(), before).values()) == [1, 1]
    daemon.config_path.write_text(HELLO + "\n[server]\nreuse_port = false\n")
    daemon.signal(signal.SIGHUP)
    wait_for(lambda: "server.reuse_port changes only with a restart" in daemon.stderr(), 10, "the refusal")
    assert sorted(socket_inodes(daemon.port, "0A")) == before and fresh_connections_answered(daemon.port, 10)


def test_a_crashing_worker_s_socket_closes_while_it_waits_to_restart(start_daemon, tmp_path):
    """The kernel then sends every new connection to the workers that serve, instead of a queue nobody takes."""
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    daemon = start_daemon(HELLO + f'\n[log]\naccess = "{log_dir}/access.log"\n', workers=2)
    # Worker 2 keeps its open log file; worker 1's replacements cannot open one and exit at start.
    shutil.rmtree(log_dir)
    [victim] = [pid for pid in daemon.worker_pids() if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"gwd: worker 1")]
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: "restarting it in 2s" in daemon.stderr(), 20, "the third delayed restart")
    assert len(socket_inodes(daemon.port, "0A")) == 1
    assert fresh_connections_answered(daemon.port, 30)
    log_dir.mkdir()
    wait_for(lambda: len(socket_inodes(daemon.port, "0A")) == 2, 30, "worker 1 back on a socket of its own")
    assert fresh_connections_answered(daemon.port, 10)


def test_workers_leave_when_the_supervisor_is_killed(start_daemon):
    """The kernel tells workers at once (SIGQUIT); with an idle keep-alive client open they are gone within ~1 s."""
    daemon = start_daemon(HELLO, workers=2)
    workers = daemon.worker_pids()
    assert len(workers) == 2
    admin = listening_socket_inode(daemon.admin_port)
    assert holds_socket(daemon.pid, admin)
    assert not any(holds_socket(pid, admin) for pid in workers), "a worker holds the admin listener's socket"
    idle = http.client.HTTPConnection("127.0.0.1", daemon.port, timeout=10)
    idle.request("GET", "/hello")
    idle.getresponse().read()
    daemon.signal(signal.SIGKILL)
    daemon.wait_exit(5)
    killed_at = time.monotonic()
    wait_for(lambda: not any(process_alive(pid) for pid in workers), 3.0, "orphaned workers to exit")
    took = time.monotonic() - killed_at
    idle.close()
    print(f"orphaned workers exited {took:.2f}s after the supervisor was killed")
    assert took <= 1.5
    assert daemon.stderr().count("is gone; draining and exiting") == 2


def test_worker_with_a_stuck_event_loop_is_killed_and_replaced(start_daemon):
    config = HELLO + """
[server]
worker_timeout = "2s"

[[authorizers]]
name = "stuck"
type = "request"
function = "tests.authorizer_function:stuck"
identity_sources = ["header:Authorization"]

[[routes]]
route = "GET /blocked"
authorizer = "stuck"
integration = { type = "mock", body = '{}' }
"""
    daemon = start_daemon(config, workers=2)
    before = set(daemon.worker_pids())
    result: dict = {}

    def blocked_request() -> None:
        try:
            result["reply"] = request(daemon.port, "GET", "/blocked", headers={"Authorization": "x"}, timeout=20)
        except OSError as exc:
            result["error"] = exc

    client = threading.Thread(target=blocked_request)
    sent_at = time.monotonic()
    client.start()
    replaced = wait_for(
        lambda: (now := set(daemon.worker_pids())) != before and len(now) == 2 and now, 15, "the stuck worker's replacement"
    )
    waited = time.monotonic() - sent_at
    client.join(20)
    # Exactly one worker was stuck; the idle one kept beating and was left alone for those seconds.
    assert len(replaced & before) == 1, (before, replaced)
    # Silent for worker_timeout (2 s) since its last heartbeat, which came at most 0.4 s before the request.
    assert 1.6 <= waited < 10, waited
    assert "error" in result, result  # the request on the killed worker was cut, not answered
    assert "sent no heartbeat" in daemon.stderr()
    wait_for(lambda: all(daemon.get("/hello").status == 200 for _ in range(4)), 10, "both workers to serve")
    metrics = wait_for(lambda: (text := scrape(daemon)) and 'reason="timeout"' in text and text, 5, "the restart metric")
    assert total(metrics, "gwd_worker_restarts_total", reason="timeout") == 1


def test_sigttin_and_sigttou_add_and_remove_workers(start_daemon):
    daemon = start_daemon(HELLO, workers=2)

    def titles() -> list[str]:
        found = []
        for pid in daemon.worker_pids():
            try:
                found.append(Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode())
            except OSError:
                pass  # exited while listed
        return sorted(found)

    daemon.signal(signal.SIGTTIN)
    wait_for(lambda: titles() == ["gwd: worker 1", "gwd: worker 2", "gwd: worker 3"], 10, "a third worker")
    wait_for(lambda: len(socket_inodes(daemon.port, "0A")) == 3, 10, "the third worker's socket to listen")
    wait_for(lambda: total(scrape(daemon), "gwd_workers") == 3, 10, "gwd_workers to say 3")
    assert probe(daemon, "/readyz") == 200
    # One signal at a time: the kernel merges a signal sent again before the first is handled.
    daemon.signal(signal.SIGTTOU)
    wait_for(lambda: titles() == ["gwd: worker 1", "gwd: worker 2"], 10, "two workers left")
    # The removed worker's socket closed with it: no new connection waits where nobody accepts.
    assert len(socket_inodes(daemon.port, "0A")) == 2 and fresh_connections_answered(daemon.port, 20)
    daemon.signal(signal.SIGTTOU)
    wait_for(lambda: titles() == ["gwd: worker 1"], 10, "one worker left")
    assert len(socket_inodes(daemon.port, "0A")) == 1 and fresh_connections_answered(daemon.port, 20)
    daemon.signal(signal.SIGTTOU)  # never below one
    wait_for(lambda: "already down to one worker" in daemon.stderr(), 5, "the refusal")
    assert titles() == ["gwd: worker 1"] and daemon.get("/hello").status == 200
    assert probe(daemon, "/readyz") == 200
    # A reload starts the config's count again.
    daemon.signal(signal.SIGHUP)
    wait_for(lambda: titles() == ["gwd: worker 1", "gwd: worker 2"], 15, "the config's two workers after SIGHUP")
