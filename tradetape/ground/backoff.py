"""Capped exponential backoff with jitter, reset after a healthy run; retrying until stopped."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

logger = logging.getLogger(__name__)
T = TypeVar("T")


class Backoff:
    def __init__(self, initial: float = 1.0, maximum: float = 60.0, jitter: float = 0.2) -> None:
        self.initial = initial
        self.maximum = maximum
        self.jitter = jitter
        self._next = initial

    def next_delay(self) -> float:
        """The delay to wait now; the one after it doubles, up to `maximum`."""
        delay = self._next
        self._next = min(self._next * 2, self.maximum)
        return delay * (1 + random.uniform(-self.jitter, self.jitter))

    def reset(self) -> None:
        self._next = self.initial


async def retry_until(
    stop: asyncio.Event,
    attempt: Callable[[], Awaitable[T]],
    *,
    transient: tuple[type[BaseException], ...],
    what: str,
    timeout_s: float,
    backoff: Backoff | None = None,
) -> T | None:
    """`attempt()` (each at most `timeout_s`) again after a transient failure, until it succeeds or `stop` is set.

    For start-up reads and writes a NATS cluster answers only once it has elected its
    leaders; None if stopped first. One warning a failure, naming `what`.
    """
    backoff = backoff or Backoff(0.2, 5.0)
    retried: tuple[type[BaseException], ...] = (TimeoutError, *transient)
    while not stop.is_set():
        try:
            async with asyncio.timeout(timeout_s):
                return await attempt()
        except retried as exc:
            logger.warning("not done yet, trying again", extra={"what": what, "error": repr(exc)})
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), backoff.next_delay())
    return None
