"""Capped exponential backoff with jitter, reset after a healthy run."""

from __future__ import annotations

import random


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
