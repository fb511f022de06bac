"""What a trader wants to know of a liquidity vacuum beyond its bounds: how thin, when price
last crossed it and how fast, and where a stop belongs relative to it.

Pure functions over one symbol's trades (numpy columns, prices in units of 1e-8) and the
vacuums `tradetape.domain.profile.liquidity_vacuums` found.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from tradetape.domain.profile import LiquidityVacuum

SEVERE_DEFICIT = 90.0
HIGH_DEFICIT = 75.0


def deficit_pct(vacuum: LiquidityVacuum, mean_row_volume: float) -> float:
    """How far the zone's volume per row falls short of the profile's mean row, in percent."""
    if mean_row_volume <= 0:
        return 0.0
    return max(0.0, 100.0 * (1.0 - vacuum.volume / vacuum.rows / mean_row_volume))


def impact_class(deficit: float) -> str:
    """`severe` (≥ 90 % below the mean row), `high` (≥ 75 %), else `moderate`: how freely price runs through."""
    if deficit >= SEVERE_DEFICIT:
        return "severe"
    if deficit >= HIGH_DEFICIT:
        return "high"
    return "moderate"


@dataclass(frozen=True, slots=True)
class Crossing:
    """The last time price went from one side of a zone to the other."""

    start: int
    """Time of the last trade on the side it came from, epoch ms."""
    end: int
    """Time of the first trade on the far side, epoch ms."""
    direction: str
    """`up` or `down`."""


def last_crossing(
    time: npt.NDArray[np.int64], price: npt.NDArray[np.int64], low: int, high: int
) -> Crossing | None:
    """The last passage of price through `[low, high)`, trades in agg-id order; None if it never crossed."""
    side = (price >= high).view(np.int8) - (price < low).view(np.int8)  # -1 below, 1 above: a byte a trade
    outside = np.flatnonzero(side != 0)
    if len(outside) < 2:
        return None
    sides = side[outside]
    changes = np.flatnonzero(sides[1:] != sides[:-1])
    if len(changes) == 0:
        return None
    before, after = int(outside[changes[-1]]), int(outside[changes[-1] + 1])
    return Crossing(int(time[before]), int(time[after]), "up" if side[after] > 0 else "down")


@dataclass(frozen=True, slots=True)
class StopAdvice:
    side: str
    entry: int
    stop: int | None
    """Beyond the far edge of the nearest vacuum on the losing side, by one row; None without one."""
    vacuum: LiquidityVacuum | None
    reason: str


def suggest_stop(side: str, entry: int, vacuums: list[LiquidityVacuum], row_size: int) -> StopAdvice:
    """A stop past the nearest vacuum between the entry and the losing direction.

    Price tends to run through a vacuum once it enters one, so a stop inside it (or just
    before it) is taken by the run; beyond its far edge, the next volume shelf holds it.
    """
    if side == "long":
        below = [v for v in vacuums if v.price_high <= entry]
        if not below:
            return StopAdvice(side, entry, None, None, "no vacuum below the entry in this range")
        nearest = max(below, key=lambda v: v.price_high)
        stop = nearest.price_low - row_size
        return StopAdvice(side, entry, max(stop, 0), nearest, "one row below the nearest vacuum under the entry")
    above = [v for v in vacuums if v.price_low >= entry]
    if not above:
        return StopAdvice(side, entry, None, None, "no vacuum above the entry in this range")
    nearest = min(above, key=lambda v: v.price_low)
    stop = nearest.price_high + row_size
    return StopAdvice(side, entry, stop, nearest, "one row above the nearest vacuum over the entry")
