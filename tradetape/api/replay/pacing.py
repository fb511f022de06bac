"""Replay by trade time: when each trade is due, at `speed` times real time from the first one."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True, slots=True)
class Schedule:
    """Trade time `origin_ms` is due at clock `origin_s` (seconds, the event loop's clock); the rest follow."""

    speed: float
    origin_s: float
    origin_ms: int

    def __post_init__(self) -> None:
        if not self.speed > 0:
            raise ValueError(f"speed must be positive: {self.speed}")

    def due(self, time_ms: int) -> float:
        """The clock time trade time `time_ms` is due at."""
        return self.origin_s + (time_ms - self.origin_ms) / 1000 / self.speed

    def due_count(self, times: npt.NDArray[np.int64], now_s: float) -> int:
        """How many of `times` (ascending) are due at clock `now_s`."""
        reached = self.origin_ms + (now_s - self.origin_s) * 1000 * self.speed
        return int(np.searchsorted(times, reached, side="right"))
