"""The store's changes stay one at a time when a small one runs on the event loop."""

from __future__ import annotations

import asyncio
import contextlib
import threading

from tradetape.services.persist.store_thread import StoreThread


async def test_a_small_change_runs_on_the_loop_when_the_thread_is_idle() -> None:
    store_thread = StoreThread()
    try:
        assert await store_thread.run_small(threading.get_ident) == threading.get_ident()
        assert await store_thread.run(threading.get_ident) != threading.get_ident()
        assert await store_thread.run_small(threading.get_ident) == threading.get_ident()
    finally:
        store_thread.shutdown()


async def test_a_small_change_waits_for_what_the_thread_holds_even_when_its_waiter_gave_up() -> None:
    store_thread = StoreThread()
    release = threading.Event()
    order: list[str] = []

    def long_change() -> None:
        order.append("long started")
        release.wait(10)
        order.append("long ended")

    try:
        waiter = asyncio.create_task(store_thread.run(long_change))
        while not order:
            await asyncio.sleep(0.001)
        waiter.cancel()  # the roll-up's caller stopped: the thread still writes
        with contextlib.suppress(asyncio.CancelledError):
            await waiter
        small = asyncio.create_task(store_thread.run_small(order.append, "small"))
        await asyncio.sleep(0.05)
        assert order == ["long started"]  # not beside the long change
        release.set()
        await small
        assert order == ["long started", "long ended", "small"]
        assert await store_thread.run_small(threading.get_ident) == threading.get_ident()  # idle again
    finally:
        release.set()
        store_thread.shutdown()
