"""A time zone's wall clock as instants: the one rule sessions and calendar bars follow across DST.

A local date and time of day name the first instant at which the zone's clock reads that
time or later on that date. So on a spring-forward day a time inside the skipped hour is
the transition itself (02:30 in New York on 2026-03-08 is 03:00 EDT, 07:00Z), and on a
fall-back day a time the clock shows twice is its first showing (01:30 on 2026-11-01 is
01:30 EDT, 05:30Z). zoneinfo (the OS's tz database, or the `tzdata` package) holds the
offsets; instants are epoch milliseconds.
"""

from __future__ import annotations

import functools
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, available_timezones

DAY = timedelta(days=1)
MINUTES_A_DAY = 1440


HOST_ZONES = frozenset({"localtime"})
"""Names a system's zoneinfo directory holds that are no IANA zone: Debian's `localtime` links to the host's own
/etc/localtime, so a request naming it would be answered in whatever zone each worker's machine is set to."""


@functools.cache
def zone_names() -> frozenset[str]:
    """Every zone the tz database names (read once: it walks the database), the host's own zone left out."""
    return frozenset(available_timezones() - HOST_ZONES | {"UTC"})


@functools.cache
def zone(name: str) -> ZoneInfo:
    """The zone of a known name; `ValueError` for any other string (never a path opened)."""
    if name not in zone_names():
        raise ValueError(f"unknown time zone {name[:64]!r}: an IANA name such as America/New_York, Europe/London, UTC")
    return ZoneInfo(name)


def local_date(tz: ZoneInfo, ms: int) -> date:
    """The date the zone's clock shows at epoch ms `ms`."""
    return datetime.fromtimestamp(ms // 1000, tz).date()


def local_instant(tz: ZoneInfo, day: date, minute: int) -> int:
    """Epoch ms of the first instant the clock of `tz` reads `minute` (of the day) or later on `day`."""
    naive = datetime.combine(day, time(minute // 60, minute % 60))
    first = _epoch_s(naive.replace(tzinfo=tz, fold=0))
    second = _epoch_s(naive.replace(tzinfo=tz, fold=1))
    if second >= first:  # shown once (equal), or twice (fold 0 is the first showing)
        return first * 1000
    # Skipped: fold 1 reads the time with the offset after the jump, fold 0 with the one before,
    # so the transition lies in (second, first]; find its second (offsets change on whole seconds).
    before = _offset(tz, second)
    low, high = second, first
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if _offset(tz, middle) == before else (low, middle)
    return high * 1000


def _epoch_s(moment: datetime) -> int:
    return int((moment - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds())


def _offset(tz: ZoneInfo, epoch_s: int) -> timedelta | None:
    return datetime.fromtimestamp(epoch_s, tz).utcoffset()


def day_starts(tz: ZoneInfo, start_ms: int, end_ms: int, *, days: int = 1) -> list[int]:
    """Local midnights (of Mondays when `days` is 7) from the last at or before `start_ms` to the first at or after
    `end_ms`: the edges of day (week) bars, 23 or 25 hours long on DST change days."""
    first = local_date(tz, start_ms) - DAY  # a day early: a clock falling back across midnight shows yesterday
    if days == 7:
        first -= timedelta(days=first.weekday())
    edges = [local_instant(tz, first, 0)]
    day = first
    while edges[-1] < end_ms:
        day += timedelta(days=days)
        edges.append(local_instant(tz, day, 0))
    while len(edges) > 2 and edges[1] <= start_ms:
        edges.pop(0)
    return edges
