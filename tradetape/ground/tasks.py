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


def raise_if_cancelled() -> None:
    """Raise `CancelledError` in a task asked to cancel whose cancellation a library dropped.

    Python 3.11's `asyncio.wait_for` (under nats-py's requests and publishes) returns a result that lands together
    with a cancel and drops the cancel: a loop that does not look at its task's `cancelling()` runs on after it was
    cancelled, and whoever awaits its end waits with it (an analytics worker hung a minute on SIGTERM). nats-py's
    publish, when it waits for its flush (its pending buffer full), swallows a cancel whatever the timing. Loops call
    this at the top of each turn.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def wait_any(timeout: float, *events: asyncio.Event) -> bool:
    """Wait at most `timeout` seconds for any of `events`; True if one is set. A cancellation propagates."""
    if any(event.is_set() for event in events):
        return True
    waits = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()
        await asyncio.wait(waits)
    return any(event.is_set() for event in events)


async def wait_event(event: asyncio.Event, timeout: float) -> bool:
    """Wait at most `timeout` seconds for `event`; True if it is set. A cancellation of the caller propagates."""
    if event.is_set():
        return True
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout):
            await event.wait()
    return event.is_set()
