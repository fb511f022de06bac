"""`footprint` and `market_profile` with `session`: each session's answer against the Decimal references.

Session windows come from `tests/sessions_reference.py` (a scan of the zone's clock), footprints
and TPO profiles from `tests/reference_order_flow.py`, a footprint session's POC and value area
from `tests/reference_profile.py`; naked POCs are checked here trade by trade. None of them shares
code with tradetape.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from tests.api.test_footprint import decimal_trades, text_of
from tests.api.test_sessions import DAY_MS, HOUR_MS, SESSIONS, d, hours_of, inside, tapes, utc
from tests.reference_order_flow import decimals_of, reference_footprint, reference_tpo
from tests.reference_profile import reference_profile
from tests.sessions_reference import reference_windows
from tradetape.api.errors import QueryError
from tradetape.api.methods import footprint, market_profile
from tradetape.api.methods.footprint import MAX_FOOTPRINT_CELLS, FootprintRequest
from tradetape.api.methods.market_profile import MarketProfileRequest
from tradetape.api.methods.volume_profile import MAX_SESSION_ROWS
from tradetape.api.sessions import MAX_SESSIONS
from tradetape.cli.renderers import renderer
from tradetape.domain.trade import TradeRow
from tradetape.testing import HeldTrades

INTERVAL_MS = {"30m": 1_800_000, "1h": 3_600_000, "6h": 21_600_000}
PERIOD_MS = {"30m": 1_800_000, "1h": 3_600_000}
ROW_SIZES = st.sampled_from(["0.5", "1", "2.5", None])
"""None: the range's row size chosen by the method (every session must use it)."""


def session_pieces(rows: list[TradeRow], session: str | dict[str, str], start: int, end: int) -> list[dict[str, Any]]:
    """Each session overlapping `[start, end)` that holds trades: its window, its part of the range, its trades."""
    found = []
    for label, opens, closes in reference_windows(*hours_of(session), start, end):
        part = (max(opens, start), min(closes, end))
        held = inside(rows, *part)
        if held:
            found.append({"label": label, "session_start": opens, "session_end": closes, "start": part[0],
                          "end": part[1], "partial": part != (opens, closes), "trade_count": len(held), "held": held})
    return found


def naked_pocs(rows: list[TradeRow], sessions: list[dict[str, Any]], end: int) -> list[dict[str, Any]]:
    """The sessions closed by `end` whose POC row `[poc_low, poc_high)` no trade from their close to `end` hit."""
    return [
        {key: s[key] for key in ("label", "session_start", "session_end", "poc", "poc_low", "poc_high")}
        for s in sessions
        if s["session_end"] <= end
        and not any(s["poc_low"] <= d(r.price) < s["poc_high"] for r in inside(rows, s["session_end"], end))
    ]


def expected_footprint_sessions(
    rows: list[TradeRow], session: str | dict[str, str], start: int, end: int, interval_ms: int, row_size: str,
    rules: dict[str, Any],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """`(sessions, naked_pocs)` as the reply's JSON with Decimals: each session's footprint and volume POC."""
    size = Decimal(row_size)
    sessions = []
    for found in session_pieces(rows, session, start, end):
        held: list[TradeRow] = found.pop("held")
        profile = reference_profile([(str(d(r.price)), str(d(r.qty)), r.buyer_maker) for r in held], row_size,
                                    str(rules["value_area"]))
        poc: Decimal = profile["poc"]  # type: ignore[assignment]
        buy = sum((d(r.qty) for r in held if not r.buyer_maker), Decimal(0))
        sell = sum((d(r.qty) for r in held if r.buyer_maker), Decimal(0))
        sessions.append({
            **found, "volume": buy + sell, "buy_volume": buy, "sell_volume": sell, "delta": buy - sell,
            "poc": poc, "poc_low": poc - size / 2, "poc_high": poc + size / 2, "vah": profile["vah"],
            "val": profile["val"],
            "bars": reference_footprint(decimal_trades(held), interval_ms, row_size, str(rules["imbalance"]),
                                        rules["stacked"], str(rules["value_area"])),
        })
    return sessions, naked_pocs(rows, sessions, end)


def expected_tpo_sessions(
    rows: list[TradeRow], session: str | dict[str, str], start: int, end: int, period_ms: int, row_size: str,
    value_area: str,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """`(sessions, naked_pocs)` as the reply's JSON with Decimals: each session's TPO profile, lettered from its
    first period."""
    sessions = []
    for found in session_pieces(rows, session, start, end):
        held: list[TradeRow] = found.pop("held")
        profile = reference_tpo(decimal_trades(held), period_ms, found["start"], row_size, value_area)
        del profile["row_size"]  # the range's, given once in the reply
        sessions.append({**found, **profile})
    return sessions, naked_pocs(rows, sessions, end)


def footprint_rules(ratio: float, stacked: int, value_area: float) -> dict[str, Any]:
    return {"imbalance": ratio, "stacked": stacked, "value_area": value_area}


@pytest.mark.slow
@settings(max_examples=150, deadline=None)
@given(
    tapes(), SESSIONS, st.integers(0, 2 * DAY_MS), st.integers(HOUR_MS, 4 * DAY_MS),
    st.sampled_from(sorted(INTERVAL_MS)), ROW_SIZES, st.sampled_from([1.5, 3.0]), st.integers(1, 3),
    st.sampled_from([0.5, 0.7, 1.0]),
)
def test_footprint_per_session_equals_the_reference(
    tape: tuple[int, list[TradeRow]], session: str | dict[str, str], shift: int, span: int, interval: str,
    row_size: str | None, ratio: float, stacked: int, value_area: float,
) -> None:
    base, rows = tape
    start, end = base + shift, base + shift + span
    rules = footprint_rules(ratio, stacked, value_area)
    body = {"start": start, "end": end, "interval": interval, "row_size": row_size, **rules}
    source = HeldTrades.from_rows(rows)
    plain = footprint.handle(source, "X", FootprintRequest(**body), base)
    assert "sessions" not in plain.model_dump_json() and "naked_pocs" not in plain.model_dump_json()
    if plain.row_size is None:  # no trades in the range
        reply = footprint.handle(source, "X", FootprintRequest(**body, session=session), base)
        assert (reply.sessions, reply.naked_pocs, reply.bars) == ([], [], [])
        return
    sessions, naked = expected_footprint_sessions(rows, session, start, end, INTERVAL_MS[interval], plain.row_size,
                                                  rules)
    event(f"sessions with trades: {min(len(sessions), 3)}, naked POCs: {min(len(naked), 2)}")
    cells = sum(len(bar.rows) for bar in plain.bars) + sum(len(bar["rows"]) for s in sessions for bar in s["bars"])
    try:
        reply = footprint.handle(source, "X", FootprintRequest(**body, session=session), base)
    except QueryError as exc:
        assert exc.code == "range_too_large" and cells > MAX_FOOTPRINT_CELLS
        return
    assert cells <= MAX_FOOTPRINT_CELLS
    assert reply.model_dump(exclude={"sessions", "naked_pocs"}) == plain.model_dump()
    got = decimals_of(reply.model_dump())
    assert got["sessions"] == sessions
    assert got["naked_pocs"] == naked


@pytest.mark.slow
@settings(max_examples=150, deadline=None)
@given(
    tapes(), SESSIONS, st.integers(0, 2 * DAY_MS), st.integers(HOUR_MS, 4 * DAY_MS),
    st.sampled_from(sorted(PERIOD_MS)), ROW_SIZES, st.sampled_from([0.5, 0.7, 1.0]),
)
def test_market_profile_per_session_equals_the_reference(
    tape: tuple[int, list[TradeRow]], session: str | dict[str, str], shift: int, span: int, period: str,
    row_size: str | None, value_area: float,
) -> None:
    base, rows = tape
    start, end = base + shift, base + shift + span
    body = {"start": start, "end": end, "period": period, "row_size": row_size, "value_area": value_area}
    source = HeldTrades.from_rows(rows)
    if not inside(rows, start, end):
        for asked in (body, {**body, "session": session}):
            with pytest.raises(QueryError) as caught:
                market_profile.handle(source, "X", MarketProfileRequest(**asked), base)
            assert caught.value.code == "insufficient_trades"
        return
    plain = market_profile.handle(source, "X", MarketProfileRequest(**body), base)
    assert "sessions" not in plain.model_dump_json() and "naked_pocs" not in plain.model_dump_json()
    reply = market_profile.handle(source, "X", MarketProfileRequest(**body, session=session), base)
    assert reply.model_dump(exclude={"sessions", "naked_pocs"}) == plain.model_dump()
    sessions, naked = expected_tpo_sessions(rows, session, start, end, PERIOD_MS[period], plain.row_size,
                                            str(value_area))
    event(f"sessions with trades: {min(len(sessions), 3)}, naked POCs: {min(len(naked), 2)}")
    got = decimals_of(reply.model_dump())
    assert got["sessions"] == sessions
    assert got["naked_pocs"] == naked


def minutes(first: str, count: int, price_of: Any, step_ms: int = 60_000) -> list[TradeRow]:
    """One trade every `step_ms` from `first` (UTC), at `price_of(i)` (a decimal string), buys and sells in turn."""
    base = utc(first)
    return [TradeRow(1 + i, int(Decimal(price_of(i)) * 10**8), 10**8, i, i, base + i * step_ms, i % 2 == 0)
            for i in range(count)]


def test_a_session_poc_stays_naked_until_a_later_trade_reaches_its_row() -> None:
    # day 1 trades mostly at 100 (its POC), day 2 stays above 101 until its last hour, which trades at 100.7
    day_one = [("100" if i % 4 else "101.2") for i in range(24 * 60)]
    day_two = ["102"] * (23 * 60) + ["100.7"] * 60
    prices = day_one + day_two
    rows = minutes("2026-07-01T00:00", len(prices), lambda i: prices[i])
    for end in (utc("2026-07-02T23:00"), utc("2026-07-03T00:00")):
        span = {"start": utc("2026-07-01T00:00"), "end": end, "row_size": "1", "session": "utc-day"}
        shown = footprint.handle(HeldTrades.from_rows(rows), "X", FootprintRequest(interval="6h", **span), end)
        profile = market_profile.handle(HeldTrades.from_rows(rows), "X", MarketProfileRequest(period="1h", **span),
                                        end)
        for reply in (shown, profile):
            assert reply.sessions is not None and [s.label for s in reply.sessions] == ["2026-07-01", "2026-07-02"]
            assert reply.sessions[0].poc == "100.5"
            naked = [(n.label, n.poc_low, n.poc_high) for n in reply.naked_pocs or []]
            # until the last hour row 100 is not traded again; then day one's POC is reached, day two's is not
            assert naked == ([("2026-07-01", "100", "101")] if end < utc("2026-07-03T00:00")
                             else [("2026-07-02", "102", "103")])


def test_tpo_letters_and_initial_balance_start_at_each_session_open() -> None:
    # New York 09:30-16:00 (EDT: 13:30Z-20:00Z): a trade every 30 minutes over two days
    rows = minutes("2026-07-01T00:00", 96, lambda i: str(100 + i % 7), step_ms=1_800_000)
    span = {"start": utc("2026-07-01T00:00"), "end": utc("2026-07-03T00:00"), "period": "30m", "row_size": "1"}
    reply = market_profile.handle(HeldTrades.from_rows(rows), "X", MarketProfileRequest(session="new-york", **span),
                                  span["end"])
    assert reply.sessions is not None and len(reply.sessions) == 2
    for session in reply.sessions:
        assert [p.letter for p in session.periods] == list("ABCDEFGHIJKLM")  # 13 half hours from 09:30 local
        assert session.periods[0].start == session.session_start and not session.partial
        first_two = [int(Decimal(p.high)) for p in session.periods[:2]]
        assert session.initial_balance is not None
        assert Decimal(session.initial_balance.high) == max(first_two)
    assert reply.periods[0].letter == "A" and reply.periods[0].start == span["start"]  # the range's own letters


@pytest.mark.slow
def test_session_bounds_are_range_too_large() -> None:
    many_days = minutes("2026-01-01T00:00", 60, lambda i: "100", step_ms=DAY_MS)
    span = {"start": utc("2026-01-01T00:00"), "end": utc("2026-03-01T00:00"), "session": "utc-day"}
    for handler, request in (
        (footprint.handle, FootprintRequest(interval="1d", **span)),
        (market_profile.handle, MarketProfileRequest(period="1d", **span)),
    ):
        with pytest.raises(QueryError) as caught:
            handler(HeldTrades.from_rows(many_days), "X", request, span["end"])  # type: ignore[operator]
        assert caught.value.code == "range_too_large" and caught.value.details == {"max_sessions": MAX_SESSIONS}

    # a day of 24 hourly bars of 200 rows each: 4,800 cells alone, twice that with the day's session
    wide = minutes("2026-07-01T00:00", 24 * 60, lambda i: str(100 + (i % 60) * Decimal("3.33")))
    day = {"start": utc("2026-07-01T00:00"), "end": utc("2026-07-02T00:00"), "interval": "1h", "row_size": "1"}
    assert sum(len(bar.rows) for bar in footprint.handle(HeldTrades.from_rows(wide), "X", FootprintRequest(**day),
                                                         day["end"]).bars) == 24 * 197
    with pytest.raises(QueryError) as caught:
        footprint.handle(HeldTrades.from_rows(wide), "X", FootprintRequest(session="utc-day", **day), day["end"])
    assert caught.value.code == "range_too_large"
    assert caught.value.details == {"cells": 2 * 24 * 197, "max_cells": MAX_FOOTPRINT_CELLS, "bars": 24}

    # a session's POC needs its rows from low to high: two far prices at the smallest row are refused, not built
    far = [TradeRow(1, 10**8, 10**8, 1, 1, utc("2026-07-01T00:00"), False),
           TradeRow(2, 10**17, 10**8, 2, 2, utc("2026-07-01T02:00"), False)]
    tiny = {"start": utc("2026-07-01T00:00"), "end": utc("2026-07-02T00:00"), "interval": "1h",
            "row_size": "0.00000001", "session": "utc-day"}
    with pytest.raises(QueryError) as caught:
        footprint.handle(HeldTrades.from_rows(far), "X", FootprintRequest(**tiny), tiny["end"])
    assert caught.value.code == "range_too_large" and caught.value.details["rows"] > 10**16

    # three days of 8,001 rows each: each profile fits, the three sessions together pass MAX_SESSION_ROWS
    climbing = minutes("2026-07-01T00:00", 3 * 1440, lambda i: str(100 + Decimal(i % 1440) / 18))
    three = {"start": utc("2026-07-01T00:00"), "end": utc("2026-07-04T00:00"), "period": "1d", "row_size": "0.01"}
    plain = market_profile.handle(HeldTrades.from_rows(climbing), "X", MarketProfileRequest(**three), three["end"])
    assert len(plain.rows) == 7995
    with pytest.raises(QueryError) as caught:
        market_profile.handle(HeldTrades.from_rows(climbing), "X", MarketProfileRequest(session="utc-day", **three),
                              three["end"])
    assert caught.value.code == "range_too_large"
    assert caught.value.details == {"rows": 3 * 7995, "max_rows": MAX_SESSION_ROWS}


def test_sessions_are_checked_as_volume_profile_checks_them() -> None:
    for method in (footprint.METHOD, market_profile.METHOD):
        for bad in ("tokyo", "x" * 100_000, {"tz": "../../../etc/passwd", "start": "00:00", "end": "01:00"},
                    {"tz": "UTC", "start": "9:30", "end": "16:00"}, 42, '{"tz": "UTC"'):
            with pytest.raises(QueryError) as caught:
                method.parse_request({"session": bad})
            assert caught.value.code == "invalid_request", (method.name, bad)
        text = method.parse_request({"session": '{"tz": "Europe/London", "start": "22:00", "end": "06:00"}'})
        assert text.session == method.parse_request(  # type: ignore[attr-defined]
            {"session": {"tz": "Europe/London", "start": "22:00", "end": "06:00"}}).session  # type: ignore[attr-defined]


def test_renderers_show_each_session_and_the_naked_pocs() -> None:
    prices = [("100" if i % 4 else "101.2") for i in range(24 * 60)] + ["102"] * (24 * 60)
    rows = minutes("2026-07-01T00:00", len(prices), lambda i: prices[i])
    span = {"start": utc("2026-07-01T00:00"), "end": utc("2026-07-03T00:00"), "row_size": "1", "session": "utc-day"}
    shown = footprint.handle(HeldTrades.from_rows(rows), "X", FootprintRequest(interval="12h", **span), span["end"])
    profile = market_profile.handle(HeldTrades.from_rows(rows), "X", MarketProfileRequest(period="6h", **span),
                                    span["end"])
    for name, reply in (("footprint", shown), ("market_profile", profile)):
        text = text_of(renderer(name)(reply))
        assert "sessions 2" in text, name
        lines = [line.split() for line in text.splitlines()]
        day_one = next(line for line in lines if line[:2] == ["2026-07-01", "2026-07-01"])  # label, from
        assert "1440" in day_one and "100.5" in day_one, (name, day_one)
        assert "naked POCs: 100.5 (2026-07-01)" in text, name
        plain = text_of(renderer(name)(reply.model_copy(update={"sessions": None, "naked_pocs": None})))
        assert "sessions" not in plain and "naked" not in plain
