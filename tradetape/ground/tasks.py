"""Background tasks are held and cancelled at the end, never left running; waits always end."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any


async def cancel_and_wait(task: asyncio.Task[Any] | None) -> bool:
    """Cancel `task` if it is still running and wait until it has ended; True if it was running.

    An error it ends with instead of the cancellation is raised. Unlike
    `suppress(CancelledError): await task`, a cancellation of the caller while it waits
    here is not mistaken for the task's own: it propagates.
    """
    if task is None or task.done():
        return False
    task.cancel()
    await asyncio.wait((task,))
    if not task.cancelled() and (error := task.exception()) is not None:
        raise error
    return True


async def wait_event(event: asyncio.Event, timeout: float) -> bool:
    """Wait at most `timeout` seconds for `event`; True if it is set. A cancellation of the caller propagates."""
    if event.is_set():
        return True
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout):
            await event.wait()
    return event.is_set()
