"""Sessions, tz day bars and threshold bars through the handlers, against plain references.

Session windows and local midnights come from `tests/sessions_reference.py` (a scan of the
zone's clock), profiles from `tests/reference_profile.py` (Decimal, one trade at a time),
threshold bars from a running Decimal total; none of them shares code with tradetape.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from tests.reference_profile import reference_profile
from tests.sessions_reference import local_midnight_of, reference_windows
from tradetape.api.errors import QueryError
from tradetape.api.methods import bars, volume_profile
from tradetape.domain import threshold_bars
from tradetape.domain.decimals import format_units
from tradetape.domain.sessions import PRESETS
from tradetape.domain.trade import TradeRow
from tradetape.testing import HeldTrades

UNIT = Decimal("0.00000001")
HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
STARTS = ["2026-03-06", "2026-10-30", "2026-03-27", "2026-10-23", "2026-07-01"]
"""A few days before New York's and London's DST changes, and a summer week."""
ZONES = ["America/New_York", "Europe/London", "Asia/Tokyo", "UTC"]


def utc(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


def d(units: int) -> Decimal:
    return Decimal(units) * UNIT


@st.composite
def tapes(draw: st.DrawFn, max_size: int = 120, big: bool = False) -> tuple[int, list[TradeRow]]:
    """A few days of trades from a day near a DST change: consecutive agg ids, times not decreasing."""
    base = utc(draw(st.sampled_from(STARTS)))
    n = draw(st.integers(1, max_size))
    gaps = draw(st.lists(st.integers(0, 4 * HOUR_MS), min_size=n, max_size=n))
    high = 2**62 if big else 40
    prices = draw(st.lists(st.integers(1, high), min_size=n, max_size=n))
    qtys = draw(st.lists(st.integers(0, 2**62 if big else 10**10), min_size=n, max_size=n))
    sides = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    times = np.cumsum(gaps).tolist()
    scale = 1 if big else 50_000_000
    return base, [
        TradeRow(1000 + i, prices[i] * scale, qtys[i], 2 * i, 2 * i + 1, base + t, sides[i])
        for i, t in enumerate(times)
    ]


def inside(rows: list[TradeRow], start: int, end: int) -> list[TradeRow]:
    return [row for row in rows if start <= row.time < end]


SESSIONS = st.one_of(
    st.sampled_from(list(PRESETS)),
    st.builds(
        lambda tz, a, b: {"tz": tz, "start": f"{a // 60:02d}:{a % 60:02d}", "end": f"{b // 60:02d}:{b % 60:02d}"},
        st.sampled_from(ZONES),
        st.integers(0, 1439),
        st.integers(0, 1439),
    ),
)


def hours_of(session: str | dict[str, str]) -> tuple[str, str, str]:
    if isinstance(session, dict):
        return session["tz"], session["start"], session["end"]
    spec = PRESETS[session]
    return spec.tz, f"{spec.start // 60:02d}:{spec.start % 60:02d}", f"{spec.end // 60:02d}:{spec.end % 60:02d}"


@pytest.mark.slow
@settings(max_examples=40, deadline=None)
@given(tapes(), SESSIONS, st.integers(0, 2 * DAY_MS), st.integers(HOUR_MS, 6 * DAY_MS))
def test_session_profiles_and_naked_pocs_equal_the_reference(
    tape: tuple[int, list[TradeRow]], session: str | dict[str, str], shift: int, span: int
) -> None:
    base, rows = tape
    start, end = base + shift, base + shift + span
    body: dict[str, Any] = {"start": start, "end": end, "row_size": "0.5", "min_trades": 1, "session": session}
    source = HeldTrades.from_rows(rows)
    try:
        reply = volume_profile.handle(source, "X", volume_profile.VolumeProfileRequest(**body), base)
    except QueryError as exc:
        assert exc.code == "insufficient_trades" and not inside(rows, start, end)
        return
    plain = volume_profile.handle(source, "X", volume_profile.VolumeProfileRequest(**{**body, "session": None}), base)
    assert reply.model_dump(exclude={"sessions", "naked_pocs"}) == plain.model_dump()
    assert "sessions" not in plain.model_dump_json()

    expected_sessions, expected_naked = [], []
    for label, opens, closes in reference_windows(*hours_of(session), start, end):
        held = inside(rows, max(opens, start), min(closes, end))
        if not held:
            continue
        ref = reference_profile([(str(d(r.price)), str(d(r.qty)), r.buyer_maker) for r in held], "0.5", "0.7")
        expected_sessions.append((label, opens, closes, len(held), ref["poc"], ref["val"], ref["vah"],
                                  [(low, high, volume) for _, low, high, volume, *_ in ref["rows"]]))
        poc_low = Decimal(ref["poc"]) - Decimal("0.25")  # type: ignore[operator]
        later = inside(rows, closes, end)
        if closes <= end and not any(poc_low <= d(r.price) < poc_low + Decimal("0.5") for r in later):
            expected_naked.append((label, ref["poc"]))
    assert reply.sessions is not None and reply.naked_pocs is not None
    got = [
        (s.label, s.session_start, s.session_end, s.trade_count, Decimal(s.poc), Decimal(s.val), Decimal(s.vah),
         [(Decimal(r.price_low), Decimal(r.price_high), Decimal(r.volume)) for r in s.rows])
        for s in reply.sessions
    ]
    assert got == expected_sessions
    assert [(n.label, Decimal(n.poc)) for n in reply.naked_pocs] == expected_naked
    for s in reply.sessions:
        assert s.partial == ((s.start, s.end) != (s.session_start, s.session_end))


@pytest.mark.slow
@settings(max_examples=40, deadline=None)
@given(tapes(), st.sampled_from(ZONES), st.sampled_from(["1d", "1w", "24h", "7d"]), st.integers(0, DAY_MS),
       st.integers(HOUR_MS, 9 * DAY_MS))
def test_tz_bars_start_at_local_midnights(
    tape: tuple[int, list[TradeRow]], tz: str, interval: str, shift: int, span: int
) -> None:
    base, rows = tape
    start, end = base + shift, base + shift + span
    reply = bars.handle(HeldTrades.from_rows(rows), "X", bars.BarsRequest(interval=interval, tz=tz, start=start,
                                                                          end=end), base)
    week = interval in ("1w", "7d")
    groups: dict[int, list[TradeRow]] = defaultdict(list)
    for row in inside(rows, start, end):
        groups[local_midnight_of(row.time, tz, week=week)].append(row)
    assert [b.time for b in reply.bars] == sorted(groups)
    assert reply.tz == tz and reply.interval_ms == (7 if week else 1) * DAY_MS
    for bar in reply.bars:
        group = groups[bar.time]
        assert (Decimal(bar.open), Decimal(bar.close)) == (d(group[0].price), d(group[-1].price))
        assert (Decimal(bar.high), Decimal(bar.low)) == (d(max(r.price for r in group)), d(min(r.price for r in group)))
        assert Decimal(bar.buy_volume) == d(sum(r.qty for r in group if not r.buyer_maker))
        assert bar.trade_count == len(group) and bar.end_time is None and bar.partial is None


def reference_threshold_bars(rows: list[TradeRow], kind: str, threshold: Decimal) -> list[tuple[Any, ...]]:
    """Trades in order; a bar closes on the trade at which its running total reaches the threshold."""
    found, bar, total = [], [], Decimal(0)
    for row in rows:
        bar.append(row)
        total += {"tick_bar": Decimal(1), "volume_bar": d(row.qty), "dollar_bar": d(row.price) * d(row.qty)}[kind]
        if total >= threshold:
            found.append((bar, False))
            bar, total = [], Decimal(0)
    if bar:
        found.append((bar, True))
    return [
        (b[0].time, b[-1].time, d(b[0].price), d(max(r.price for r in b)), d(min(r.price for r in b)), d(b[-1].price),
         d(sum(r.qty for r in b)), d(sum(r.qty for r in b if r.buyer_maker)), len(b), partial)
        for b, partial in found
    ]


@pytest.mark.slow
@settings(max_examples=150, deadline=None)
@given(
    st.one_of(tapes(), tapes(max_size=40, big=True)),
    st.sampled_from(["tick_bar", "volume_bar", "dollar_bar"]),
    st.integers(1, 10**12),
    st.integers(0, 12),
    st.sampled_from([1, 2, 3, 7, threshold_bars.CHUNK]),
)
def test_threshold_bars_close_where_the_running_total_reaches_the_threshold(
    tape: tuple[int, list[TradeRow]], kind: str, amount: int, digits: int, chunk: int
) -> None:
    with pytest.MonkeyPatch.context() as patch:  # totals are found chunk by chunk: cut tiny tapes as large ones
        patch.setattr(threshold_bars, "CHUNK", chunk)
        threshold_bars_equal_the_reference(tape, kind, amount, digits)


def threshold_bars_equal_the_reference(tape: tuple[int, list[TradeRow]], kind: str, amount: int, digits: int) -> None:
    base, rows = tape
    amount = amount if kind == "tick_bar" else amount * 10**digits
    value: int | str = min(amount, 1000) if kind == "tick_bar" else format_units(min(amount, 2**63 - 1))
    start, end = base, base + 10 * DAY_MS
    request = bars.BarsRequest(**{kind: value}, start=start, end=end)
    try:
        reply = bars.handle(HeldTrades.from_rows(rows), "X", request, base)
    except QueryError as exc:  # more than 4,000 bars or totals past 2**127: only with the huge tapes
        assert exc.code == "range_too_large"
        return
    expected = reference_threshold_bars(inside(rows, start, end), kind, Decimal(value) if kind == "tick_bar"
                                        else Decimal(str(value)))
    got = [
        (b.time, b.end_time, Decimal(b.open), Decimal(b.high), Decimal(b.low), Decimal(b.close), Decimal(b.volume),
         Decimal(b.sell_volume), b.trade_count, b.partial)
        for b in reply.bars
    ]
    assert got == expected
    assert reply.interval is None and reply.model_dump()[kind] == value


def test_one_huge_trade_makes_one_exact_dollar_bar() -> None:
    """price × quantity past int64 (and past float64's exact integers) is still compared exactly."""
    price, qty = 90_000 * 10**8, 10**12  # 10,000 at 90,000: 9e8 quote, 9e24 units of 1e-16
    rows = [TradeRow(1, price, qty, 1, 1, utc("2026-07-01T00:00"), False),
            TradeRow(2, price, 1, 2, 2, utc("2026-07-01T00:01"), False)]
    source = HeldTrades.from_rows(rows)
    span = {"start": utc("2026-07-01T00:00"), "end": utc("2026-07-01T01:00")}
    exact = bars.handle(source, "X", bars.BarsRequest(dollar_bar="900000000", **span), span["end"])
    assert [(b.trade_count, b.partial) for b in exact.bars] == [(1, False), (1, True)]
    above = bars.handle(source, "X", bars.BarsRequest(dollar_bar="900000000.00000001", **span), span["end"])
    assert [(b.trade_count, b.partial) for b in above.bars] == [(2, False)]


def test_requests_are_checked_strictly() -> None:
    refused: list[dict[str, Any]] = [
        {"interval": "1m", "tick_bar": 5},
        {"volume_bar": "1", "dollar_bar": "1"},
        {"tz": "America/New_York"},  # 1m bars are epoch-aligned
        {"interval": "1h", "tz": "UTC"},
        {"interval": "1d", "tz": "Nowhere/City"},
        {"interval": "1d", "tz": "../../../etc/passwd"},
        {"interval": "1d", "tz": "x" * 10_000},
        {"interval": "1d", "tz": 5},
        {"interval": "2w"},
        {"volume_bar": "0"},
        {"dollar_bar": "1e9"},
        {"tick_bar": 0},
        {"tick_bar": 10**12},
        {"tick_bar": 5, "tz": "UTC"},
    ]
    for body in refused:
        with pytest.raises(ValidationError):
            bars.BarsRequest(**body)
    sessions: list[Any] = [
        "tokyo", "", "x" * 1000, {"tz": "America/New_York", "start": "9:30", "end": "16:00"},
        {"tz": "UTC", "start": "24:00", "end": "01:00"}, {"tz": "UTC", "start": "09:30:00", "end": "10:00"},
        {"tz": "UTC", "start": "٠٩:٣٠", "end": "10:00"}, {"tz": "UTC", "start": "09:30"},
        {"tz": "UTC", "start": "09:30", "end": "10:00", "extra": 1}, {"tz": "utc", "start": "09:30", "end": "10:00"},
        '{"tz": "UTC", "start": "09:30"', 42, ["new-york"],
    ]
    for session in sessions:
        with pytest.raises(ValidationError):
            volume_profile.VolumeProfileRequest(session=session)
    text = volume_profile.VolumeProfileRequest(session='{"tz": "Europe/London", "start": "22:00", "end": "06:00"}')
    assert text.session == volume_profile.VolumeProfileRequest(
        session={"tz": "Europe/London", "start": "22:00", "end": "06:00"}).session


@pytest.mark.slow
def test_bounds_are_range_too_large() -> None:
    rows = [TradeRow(i + 1, (100 + i % 50) * 10**8, 10**8, i, i, utc("2026-01-01T00:00") + i * 60_000, i % 2 == 0)
            for i in range(90 * 24 * 60)]
    source = HeldTrades.from_rows(rows)
    span = {"start": utc("2026-01-01T00:00"), "end": utc("2026-03-01T00:00")}
    cases = [
        (volume_profile.handle, volume_profile.VolumeProfileRequest(session="utc-day", min_trades=1, **span)),
        (volume_profile.handle, volume_profile.VolumeProfileRequest(
            session="utc-day", row_size="0.00000001", min_trades=1, start=span["start"], end=span["start"] + DAY_MS)),
        (bars.handle, bars.BarsRequest(tick_bar=10, **span)),
        (bars.handle, bars.BarsRequest(volume_bar="1", **span)),
        (bars.handle, bars.BarsRequest(interval="1d", tz="UTC", start=utc("2017-01-01T00:00"),
                                       end=utc("2029-01-01T00:00"))),
    ]
    for handler, request in cases:
        with pytest.raises(QueryError) as caught:
            handler(source, "X", request, span["end"])  # type: ignore[operator]
        assert caught.value.code in ("range_too_large", "invalid_request"), request
    in_range = 59 * 24 * 60
    whole = bars.handle(source, "X", bars.BarsRequest(tick_bar=96, **span), span["end"]).bars
    assert [bar.partial for bar in whole] == [False] * (in_range // 96)
    last = bars.handle(source, "X", bars.BarsRequest(tick_bar=100, **span), span["end"]).bars[-1]
    assert (last.partial, last.trade_count) == (True, in_range % 100)
