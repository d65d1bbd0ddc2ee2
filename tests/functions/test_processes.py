"""A runtime process's hand-over of invocations, where its connection can go at any moment."""

from __future__ import annotations

import asyncio

from gwd.functions.processes import Invocation, RuntimeProcess


class Pool:
    """What a runtime process asks of its pool, recorded."""

    class config:  # noqa: N801 - stands for a FunctionIntegration
        name = "f"

    arn = b"arn:aws:lambda:us-east-1:000000000000:function:f"

    def __init__(self) -> None:
        self.dispatched: list[Invocation] = []

    def queued(self) -> None:
        return None

    def waiting(self, process: RuntimeProcess) -> None:
        pass

    def not_waiting(self, process: RuntimeProcess) -> None:
        pass

    def started_one(self) -> None:
        pass

    def dispatch(self, invocation: Invocation) -> None:
        self.dispatched.append(invocation)


def test_an_invocation_handed_over_as_the_connection_goes_is_given_to_another_process():
    async def scenario() -> tuple[list[Invocation], Invocation]:
        pool = Pool()
        process = RuntimeProcess(pool)  # type: ignore[arg-type]
        asking = asyncio.ensure_future(process.next_invocation())
        await asyncio.sleep(0)  # it waits for work
        invocation = Invocation("req-1", b"{}", 5.0, "Root=1-0-0")
        assert process.offer(invocation)
        asking.cancel()  # the runtime's connection closed before the hand-over completed
        try:
            await asking
        except asyncio.CancelledError:
            pass
        process.exited(-9)  # and the process is gone: the invocation is handed on once, not twice
        return pool.dispatched, invocation

    dispatched, invocation = asyncio.run(scenario())
    assert dispatched == [invocation]


def test_a_process_that_exits_while_waiting_gives_its_offer_on():
    async def scenario() -> tuple[list[Invocation], Invocation]:
        pool = Pool()
        process = RuntimeProcess(pool)  # type: ignore[arg-type]
        asking = asyncio.ensure_future(process.next_invocation())
        await asyncio.sleep(0)
        invocation = Invocation("req-2", b"{}", 5.0, "Root=1-0-0")
        assert process.offer(invocation)
        process.exited(1)  # before the task resumed with the offer
        asking.cancel()
        try:
            await asking
        except asyncio.CancelledError:
            pass
        return pool.dispatched, invocation

    dispatched, invocation = asyncio.run(scenario())
    assert dispatched == [invocation]
