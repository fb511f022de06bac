"""Background tasks are held and cancelled at the end, never left running."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any


async def cancel_and_wait(task: asyncio.Task[Any] | None) -> bool:
    """Cancel `task` if it is still running and wait until it has ended; True if it was running."""
    if task is None or task.done():
        return False
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return True
