"""An event loop of its own in a daemon thread, for code under test that might hang.

pytest's loop never waits for a task running here: a service that ignores its
cancellation, or a wait that never ends, makes the test fail within its bounds instead
of hanging the run (the thread is abandoned, and reported, at the end).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from typing import Any, TypeVar

T = TypeVar("T")


class LoopThread:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="isolated-loop", daemon=True)
        self._thread.start()

    async def call(self, coro: Coroutine[Any, Any, T], timeout: float) -> T:
        """Run `coro` in the isolated loop and return its result; `TimeoutError` after `timeout` s."""
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return await asyncio.wait_for(asyncio.wrap_future(future), timeout)

    async def spawn(self, coro: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        """Start `coro` as a task of the isolated loop."""

        async def create() -> asyncio.Task[T]:
            return asyncio.create_task(coro)

        return await self.call(create(), 5)

    def cancel(self, task: asyncio.Task[Any]) -> None:
        self.loop.call_soon_threadsafe(task.cancel)

    async def aclose(self, timeout: float = 10) -> list[str]:
        """Cancel what still runs, then stop the loop; the names of tasks that would not end (then abandoned)."""
        try:
            left = await self.call(_cancel_all(timeout), timeout + 2)
        except TimeoutError:
            left = ["(the isolated loop does not answer)"]
        if left:
            return left
        self.loop.call_soon_threadsafe(self.loop.stop)
        for _ in range(100):
            if not self._thread.is_alive():
                self.loop.close()
                break
            await asyncio.sleep(0.02)
        return []


async def _cancel_all(timeout: float) -> list[str]:
    current = asyncio.current_task()
    tasks = [t for t in asyncio.all_tasks() if t is not current]
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.wait(tasks, timeout=timeout)
    return sorted(t.get_name() for t in tasks if not t.done())


@asynccontextmanager
async def isolated_loop() -> AsyncIterator[LoopThread]:
    """A `LoopThread` for the block; the block fails if a task there ignores its cancellation at the end."""
    thread = LoopThread()
    try:
        yield thread
    finally:
        left = await thread.aclose()
        if left:
            raise AssertionError(f"tasks of the isolated loop ignored cancellation and were abandoned: {left}")


async def ended(task: asyncio.Task[Any], timeout: float) -> bool:
    """Whether `task` (of an isolated loop) has ended within `timeout` s; never waits longer."""
    deadline = time.monotonic() + timeout
    while not task.done() and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    return task.done()
