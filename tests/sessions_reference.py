"""Slow, obviously-correct session windows and local midnights: a minute-by-minute scan of the zone's clock.

The rule (docs/querying.md, Sessions): a local date and time name the first instant at
which the clock reads that date and time or later. The scan reads the clock every minute
(every zone used in the tests changes offset on whole minutes) and compares wall times
as plain (date, time) pairs.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

MINUTE_MS = 60_000


def wall(ms: int, tz: str) -> datetime:
    return datetime.fromtimestamp(ms / 1000, ZoneInfo(tz)).replace(tzinfo=None)


def first_reading(tz: str, day: date, hhmm: str) -> int:
    """The first minute (epoch ms) whose wall time is at or after `day hhmm`."""
    goal = datetime.combine(day, time.fromisoformat(hhmm))
    ms = int((goal - timedelta(hours=16)).replace(tzinfo=UTC).timestamp() * 1000)
    while wall(ms, tz) < goal:
        ms += MINUTE_MS
    return ms


def reference_windows(tz: str, start: str, end: str, range_start: int, range_end: int) -> list[tuple[str, int, int]]:
    """(label, open, close) of every session overlapping the range, opens labelled by their local date."""
    crosses = end <= start
    day = wall(range_start, tz).date() - timedelta(days=2)
    last = wall(range_end, tz).date() + timedelta(days=1)
    found = []
    while day <= last:
        opens = first_reading(tz, day, start)
        closes = first_reading(tz, day + timedelta(days=1 if crosses else 0), end)
        if opens < closes and opens < range_end and closes > range_start:
            found.append((day.isoformat(), opens, closes))
        day += timedelta(days=1)
    return found


def local_midnight_of(ms: int, tz: str, *, week: bool = False) -> int:
    """The first instant of the local day (of the Monday-started week) holding `ms`."""
    day = wall(ms, tz).date()
    if week:
        day -= timedelta(days=day.weekday())
    return first_reading(tz, day, "00:00")
