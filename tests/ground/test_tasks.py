"""Loops end when cancelled even where Python 3.11's `asyncio.wait_for` dropped the cancel (nats-py's requests)."""

from __future__ import annotations

import asyncio
import sys

import pytest

from tradetape.ground.tasks import cancel_and_wait, raise_if_cancelled, wait_any


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="Python 3.12's wait_for no longer drops the cancel")
@pytest.mark.parametrize("checks", [False, True])
async def test_a_cancel_dropped_by_wait_for_still_ends_a_loop_that_checks(checks: bool) -> None:
    """The drop itself (what hung the analytics worker a minute on SIGTERM), then the loop ending on its check."""
    reply: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    waiting = asyncio.Event()
    answered: list[int] = []

    async def loop() -> None:
        waiting.set()
        answered.append(await asyncio.wait_for(reply, 10))
        while True:
            if checks:
                raise_if_cancelled()
            await asyncio.sleep(0.01)

    task = asyncio.create_task(loop())
    await waiting.wait()
    reply.set_result(1)
    task.cancel()  # the reply and the cancel land together
    await asyncio.sleep(0.1)
    assert answered == [1]  # the cancel is gone: wait_for returned the reply
    assert task.done() is checks
    await cancel_and_wait(task)  # without the check, a second cancel lands at the next await


async def test_wait_any_ends_on_the_first_event_set_and_on_its_timeout() -> None:
    first, second = asyncio.Event(), asyncio.Event()
    asyncio.get_running_loop().call_later(0.05, second.set)
    started = asyncio.get_running_loop().time()
    assert await wait_any(5.0, first, second)
    assert asyncio.get_running_loop().time() - started < 1.0
    assert not await wait_any(0.01, asyncio.Event())
    assert len(asyncio.all_tasks()) == 1  # no event's waiter left behind
