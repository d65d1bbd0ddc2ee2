"""The shared count of running function invocations: one limit across processes, and no slot lost to a dead one."""

from __future__ import annotations

import os
import signal

from gwd.stores.invocations import InvocationSlots


def test_a_limit_holds_across_processes():
    slots = InvocationSlots()
    row = slots.row("orders")
    results_read, results_write = os.pipe()
    hold_read, hold_write = os.pipe()
    children = []
    for _ in range(4):
        pid = os.fork()
        if pid == 0:
            # Ten tries each, none given back; the child lives on (holding its slots) until told.
            os.close(hold_write)
            os.write(results_write, b"%d\n" % sum(slots.take(row, 7) for _ in range(10)))
            os.read(hold_read, 1)
            os._exit(0)
        children.append(pid)
    os.close(results_write)
    with os.fdopen(results_read, "rb") as results:
        taken = [int(results.readline()) for _ in children]
    assert sum(taken) == 7  # exactly the limit's worth, in all
    assert not slots.take(row, 7) and slots.running(row) == 7
    os.close(hold_write)
    for pid in children:
        os.waitpid(pid, 0)
    # Those processes are gone: their slots come back once the row is full.
    assert slots.take(row, 7)
    assert slots.running(row) == 1


def test_giving_back_frees_a_slot_and_functions_have_their_own_rows():
    slots = InvocationSlots()
    orders, users = slots.row("orders"), slots.row("users")
    assert orders != users and slots.row("orders") == orders
    assert slots.take(orders, 1)
    assert not slots.take(orders, 1)
    assert slots.take(users, 1)  # another function's limit
    slots.give_back(orders)
    assert slots.take(orders, 1)
    assert (slots.running(orders), slots.running(users)) == (1, 1)


def test_a_process_killed_while_running_leaves_no_slot_behind():
    slots = InvocationSlots()
    row = slots.row("orders")
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        slots.take(row, 2)
        slots.take(row, 2)
        os.write(write_fd, b"x")
        signal.pause()
        os._exit(0)
    assert os.read(read_fd, 1) == b"x"
    assert not slots.take(row, 2)  # the child holds both while it lives
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    assert slots.take(row, 2) and slots.take(row, 2)
    assert not slots.take(row, 2)
