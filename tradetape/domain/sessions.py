"""Trading sessions in a time zone: their windows over a range, and the POCs later trades never revisited.

A session is a wall-clock window of a zone, `start` to `end` (minutes of the day); one that
ends at or before its start crosses midnight (and `start == end` is the whole local day).
Its window on local date D opens at D `start` and closes at `end` on D (or on D + 1 when it
crosses midnight), each read by `tradetape.domain.local_time`'s rule, so a New York session
keeps its local hours across daylight-saving changes. The window is labelled with D, the
local date it opens on. Presets name the usual hours (see `PRESETS`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

import numpy as np

from tradetape.domain.columns import Int64Array
from tradetape.domain.local_time import DAY, MINUTES_A_DAY, local_date, local_instant, zone
from tradetape.errors import LimitError


@dataclass(frozen=True, slots=True)
class SessionSpec:
    tz: str
    """IANA zone name, e.g. America/New_York."""
    start: int
    """Minute of the local day the session opens at."""
    end: int
    """Minute of the local day it closes at (exclusive); at or before `start`: on the next day."""

    def __post_init__(self) -> None:
        zone(self.tz)
        if not (0 <= self.start < MINUTES_A_DAY and 0 <= self.end < MINUTES_A_DAY):
            raise ValueError(f"session minutes must be within a day, got {self.start} and {self.end}")

    @property
    def crosses_midnight(self) -> bool:
        return self.end <= self.start


PRESETS: dict[str, SessionSpec] = {
    "utc-day": SessionSpec("UTC", 0, 0),
    "asia": SessionSpec("Asia/Tokyo", 9 * 60, 15 * 60 + 30),
    "london": SessionSpec("Europe/London", 8 * 60, 16 * 60 + 30),
    "new-york": SessionSpec("America/New_York", 9 * 60 + 30, 16 * 60),
    "cme-globex": SessionSpec("America/Chicago", 17 * 60, 16 * 60),
}
"""The UTC day (Binance's daily candle); the cash sessions of Tokyo, London and New York's main stock exchanges;
CME Globex's day (17:00 to 16:00 Chicago, across midnight)."""


@dataclass(frozen=True, slots=True)
class SessionWindow:
    label: str
    """The local date the session opens on, ISO (2026-03-09)."""
    start: int
    """Epoch ms it opens at (inclusive)."""
    end: int
    """Epoch ms it closes at (exclusive)."""


class TooManySessions(LimitError, ValueError):
    """A range touching more sessions than the caller allows."""


def session_windows(spec: SessionSpec, start_ms: int, end_ms: int, limit: int) -> list[SessionWindow]:
    """The windows of `spec` that overlap `[start_ms, end_ms)`, ascending; `TooManySessions` past `limit`.

    A window the clock skips entirely (02:00-03:00 on a spring-forward day) is left out.
    """
    tz = zone(spec.tz)
    windows: list[SessionWindow] = []
    day = local_date(tz, start_ms) - DAY  # yesterday's session may still be open (or a clock fell back)
    last = local_date(tz, end_ms)
    while day <= last:
        opens = local_instant(tz, day, spec.start)
        closes = local_instant(tz, day + timedelta(days=1 if spec.crosses_midnight else 0), spec.end)
        if opens < closes and opens < end_ms and closes > start_ms:
            windows.append(SessionWindow(day.isoformat(), opens, closes))
            if len(windows) > limit:
                raise TooManySessions(f"the range touches more than {limit} sessions")
        day += DAY
    return windows


@dataclass(frozen=True, slots=True)
class SessionPoc:
    """A session's POC row `[low, high)` (units of 1e-8) and when the session closed."""

    closes: int
    low: int
    high: int


@dataclass(frozen=True, slots=True)
class TradedPrices:
    """The distinct prices traded in `[start, end)` (epoch ms), ascending, in units of 1e-8."""

    start: int
    end: int
    prices: Int64Array


def naked_pocs(pocs: Sequence[SessionPoc], traded: Sequence[TradedPrices]) -> list[bool]:
    """Per POC: whether no trade from its session's close on falls in its row (a naked POC).

    `traded` covers the time after every close (pieces split at session closes); a piece
    counts for a POC when it starts at or after that POC's close.
    """
    naked = []
    for poc in pocs:
        hit = False
        for piece in traded:
            if piece.start >= poc.closes and len(piece.prices):
                at = int(np.searchsorted(piece.prices, poc.low, side="left"))
                hit = at < len(piece.prices) and int(piece.prices[at]) < poc.high
                if hit:
                    break
        naked.append(not hit)
    return naked
