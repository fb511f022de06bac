"""The one thread that changes persist's store, and when a small change may skip it.

Live writes, roll-ups, retention and bulk imports change the store one at a time on one
thread, so the event loop goes on fetching, announcing and acking beside a long one. A
live write of a few trades (~1 ms of CPU at 2,000 trades/s, a write every ~4 ms) paid
more for the trip than for the work: a submit, a wake-up of the thread, the GIL handed
over and back, the result posted to the loop, each a context switch on a busy machine
(persist's main thread waited on the run queue longer than it ran: `/proc/<pid>/task/*/
schedstat` during `python bench/pipeline.py --skip-raw --skip-throughput`). `run_small`
runs such a change on the loop itself when the thread has nothing in hand: every change
is asked for from the loop, so none can start beside it.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")


class StoreThread:
    """Runs the store's changes one at a time; asked from one event loop only."""

    def __init__(self) -> None:
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="persist-store")
        self._lock = threading.Lock()
        self._in_hand = 0
        """Changes handed to the thread and not yet finished there (a cancelled wait does not finish one)."""

    async def run(self, call: Callable[..., T], *args: object) -> T:
        """`call(*args)` on the store thread, after what it already holds."""
        with self._lock:
            self._in_hand += 1
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._finish, call, args)

    async def run_small(self, call: Callable[..., T], *args: object) -> T:
        """`call(*args)` here and now if the thread holds nothing, else after what it holds: for a change of
        about a millisecond, which the loop can afford to wait for."""
        with self._lock:
            idle = not self._in_hand
        return call(*args) if idle else await self.run(call, *args)

    def shutdown(self) -> None:
        """Wait for what the thread holds, then stop it (blocking: call it off the loop)."""
        self._executor.shutdown()

    def _finish(self, call: Callable[..., T], args: tuple[object, ...]) -> T:
        try:
            return call(*args)
        finally:
            with self._lock:
                self._in_hand -= 1
