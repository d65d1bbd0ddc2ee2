"""The access-log writer: batching, whole lines per write on pipes, CLF time."""

from __future__ import annotations

import os
import select
import threading

from gwd.telemetry.accesslog import AccessLog, format_clf_time


def test_pipe_writes_are_whole_lines_of_at_most_pipe_buf(tmp_path, monkeypatch):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    received = bytearray()

    def read_all() -> None:
        with open(fifo, "rb") as f:
            while data := f.read(65536):
                received.extend(data)

    reader = threading.Thread(target=read_all)
    reader.start()
    log = AccessLog(str(fifo))  # a FIFO is no regular file: writes are cut like on stdout's pipe
    writes: list[bytes] = []
    real_write = os.write
    monkeypatch.setattr(os, "write", lambda fd, data: writes.append(bytes(data)) or real_write(fd, data))
    lines = [b'{"n": %d, "pad": "%s"}\n' % (i, b"x" * (i % 300)) for i in range(500)]
    lines[250] = b"y" * (select.PIPE_BUF + 10) + b"\n"  # longer than a whole write can be: it goes alone
    log._pending = bytearray(b"".join(lines))
    log.close()
    reader.join(10)
    assert bytes(received) == b"".join(lines)
    assert len(writes) > 1
    assert lines[250] in writes
    for chunk in writes:
        assert len(chunk) <= select.PIPE_BUF or chunk == lines[250]
        assert chunk.endswith(b"\n")


def test_regular_file_gets_one_write_per_batch(tmp_path, monkeypatch):
    log = AccessLog(str(tmp_path / "access.log"))
    writes: list[bytes] = []
    real_write = os.write
    monkeypatch.setattr(os, "write", lambda fd, data: writes.append(bytes(data)) or real_write(fd, data))
    log._pending = bytearray((b"x" * 100 + b"\n") * 100)
    log.close()
    assert len(writes) == 1
    assert (tmp_path / "access.log").read_bytes() == (b"x" * 100 + b"\n") * 100


def test_clf_time():
    assert format_clf_time(1795593378) == "25/Nov/2026:07:56:18 +0000"
    assert format_clf_time(0) == "01/Jan/1970:00:00:00 +0000"
