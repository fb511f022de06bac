"""Session windows and local midnights across DST, against a minute-by-minute scan of the zone's clock."""

from __future__ import annotations

from datetime import UTC, date, datetime

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.sessions_reference import first_reading, local_midnight_of, reference_windows
from tradetape.domain.local_time import day_starts, local_instant, zone
from tradetape.domain.sessions import (
    PRESETS,
    SessionPoc,
    SessionSpec,
    TooManySessions,
    TradedPrices,
    naked_pocs,
    session_windows,
)

ZONES = ["America/New_York", "Europe/London", "Asia/Tokyo", "Australia/Lord_Howe", "America/Santiago", "UTC"]
"""Lord Howe moves by 30 minutes; Santiago changes at midnight (its local midnight is skipped in September)."""
T_2026 = 1_767_225_600_000
YEAR_MS = 365 * 86_400_000
DAY_MS = 86_400_000
CHANGE_DAYS = ["2026-03-08", "2026-11-01", "2026-03-29", "2026-10-25", "2026-04-05", "2026-10-04", "2026-09-06"]
"""DST change days of the zones above (New York, London, Lord Howe and Santiago)."""
OFFSETS = st.one_of(
    st.integers(0, YEAR_MS),
    st.builds(
        lambda day, shift: datetime.fromisoformat(day).replace(tzinfo=UTC).timestamp() * 1000 - T_2026 + shift,
        st.sampled_from(CHANGE_DAYS),
        st.integers(-3 * DAY_MS, DAY_MS),
    ).map(int),
)


def utc(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


def hhmm(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


def test_dst_days_in_new_york_and_london() -> None:
    ny = SessionSpec("America/New_York", 9 * 60 + 30, 16 * 60)
    # Friday before the March change 09:30 EST, Monday after it 09:30 EDT
    got = session_windows(ny, utc("2026-03-06T00:00"), utc("2026-03-10T00:00"), 10)
    assert [(w.label, w.start, w.end) for w in got] == [
        ("2026-03-06", utc("2026-03-06T14:30"), utc("2026-03-06T21:00")),
        ("2026-03-07", utc("2026-03-07T14:30"), utc("2026-03-07T21:00")),
        ("2026-03-08", utc("2026-03-08T13:30"), utc("2026-03-08T20:00")),
        ("2026-03-09", utc("2026-03-09T13:30"), utc("2026-03-09T20:00")),
    ]
    # a time inside the skipped hour is the jump itself; a time shown twice is its first showing
    tz = zone("America/New_York")
    assert local_instant(tz, date(2026, 3, 8), 2 * 60 + 30) == utc("2026-03-08T07:00")
    assert local_instant(tz, date(2026, 11, 1), 60 + 30) == utc("2026-11-01T05:30")
    # overnight across the November change: 18:00 EDT Saturday to 09:30 EST Sunday, 16.5 hours
    night = session_windows(SessionSpec("America/New_York", 18 * 60, 9 * 60 + 30), utc("2026-11-01T00:00"),
                            utc("2026-11-01T12:00"), 5)
    assert [(w.label, w.start, w.end) for w in night] == [("2026-10-31", utc("2026-10-31T22:00"),
                                                            utc("2026-11-01T14:30"))]
    # local days of 23 and 25 hours
    assert np.diff(day_starts(tz, utc("2026-03-08T12:00"), utc("2026-03-08T13:00"))).tolist() == [23 * 3_600_000]
    assert np.diff(day_starts(tz, utc("2026-11-01T12:00"), utc("2026-11-01T13:00"))).tolist() == [25 * 3_600_000]
    london = zone("Europe/London")
    assert day_starts(london, utc("2026-03-29T12:00"), utc("2026-03-29T13:00")) == [
        utc("2026-03-29T00:00"), utc("2026-03-29T23:00")]
    assert session_windows(PRESETS["london"], utc("2026-03-27T00:00"), utc("2026-03-31T00:00"), 9)[0].start == utc(
        "2026-03-27T08:00")
    assert session_windows(PRESETS["london"], utc("2026-03-30T00:00"), utc("2026-03-31T00:00"), 9)[0].start == utc(
        "2026-03-30T07:00")
    # weeks start on Monday: 2026-11-02 is a Monday, 00:00 EST
    weeks = day_starts(tz, utc("2026-11-04T12:00"), utc("2026-11-05T12:00"), days=7)
    assert weeks == [utc("2026-11-02T05:00"), utc("2026-11-09T05:00")]


@pytest.mark.slow
@settings(max_examples=60, deadline=None)
@given(
    st.sampled_from(ZONES),
    st.integers(0, 1439),
    st.integers(0, 1439),
    OFFSETS,
    st.integers(3_600_000, 4 * 86_400_000),
)
def test_windows_equal_a_scan_of_the_clock(tz: str, opens: int, closes: int, offset: int, span: int) -> None:
    start = T_2026 + offset
    spec = SessionSpec(tz, opens, closes)
    got = [(w.label, w.start, w.end) for w in session_windows(spec, start, start + span, 10)]
    assert got == reference_windows(tz, hhmm(opens), hhmm(closes), start, start + span)


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(ZONES), OFFSETS, st.integers(1, 20 * 86_400_000), st.booleans())
def test_day_starts_are_the_local_midnights(tz: str, offset: int, span: int, week: bool) -> None:
    start = T_2026 + offset
    edges = day_starts(zone(tz), start, start + span, days=7 if week else 1)
    assert edges[0] == local_midnight_of(start, tz, week=week) and edges[-1] >= start + span
    assert edges[-2] < start + span
    for edge in edges:
        assert edge == local_midnight_of(edge, tz, week=week)
    assert all(later > earlier for earlier, later in zip(edges, edges[1:], strict=False))


def test_presets_and_bounds() -> None:
    day = date(2026, 7, 1)
    for name, spec in PRESETS.items():
        window = session_windows(spec, utc("2026-07-01T00:00"), utc("2026-07-02T00:00"), 3)
        assert window, name
        assert window[-1].start == first_reading(spec.tz, date.fromisoformat(window[-1].label), hhmm(spec.start))
    assert first_reading("Asia/Tokyo", day, "09:00") == utc("2026-07-01T00:00")
    assert session_windows(PRESETS["utc-day"], utc("2026-07-01T00:00"), utc("2026-07-03T00:00"), 5) == [
        w for w in session_windows(PRESETS["utc-day"], utc("2026-06-30T00:00"), utc("2026-07-03T00:00"), 5)
        if w.label != "2026-06-30"
    ]
    with pytest.raises(TooManySessions):
        session_windows(PRESETS["utc-day"], utc("2026-01-01T00:00"), utc("2026-03-01T00:00"), 40)
    with pytest.raises(ValueError, match="unknown time zone"):
        SessionSpec("../../etc/passwd", 0, 60)
    with pytest.raises(ValueError, match="within a day"):
        SessionSpec("UTC", 0, 1440)
    # a session the clock skips entirely is left out: 02:00-03:00 in New York on 2026-03-08
    skipped = session_windows(SessionSpec("America/New_York", 120, 180), utc("2026-03-08T00:00"),
                              utc("2026-03-09T00:00"), 5)
    assert [w.label for w in skipped] == []


def test_naked_pocs_are_rows_no_later_trade_reached() -> None:
    pocs = [SessionPoc(100, 10, 20), SessionPoc(200, 30, 40), SessionPoc(300, 50, 60)]
    traded = [
        TradedPrices(0, 100, np.array([10, 30, 50])),  # before every close: counts for none
        TradedPrices(100, 200, np.array([9, 20, 25])),  # 20 is the top edge of [10, 20): outside
        TradedPrices(200, 300, np.array([39])),  # reaches the second POC's row
        TradedPrices(300, 400, np.array([], dtype=np.int64)),
    ]
    assert naked_pocs(pocs, traded) == [True, False, True]
    traded.append(TradedPrices(400, 500, np.array([15])))
    assert naked_pocs(pocs, traded) == [False, False, True]
