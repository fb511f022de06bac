"""`market_profile` (TPO) against the Decimal reference (tests/reference_order_flow.py), random tapes and edge cases."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.api.test_footprint import decimal_trades, flow_tapes, text_of, trade
from tests.api.test_methods import BASE, SPAN, in_range, request_range, tapes
from tests.reference_order_flow import decimals_of, reference_tpo
from tradetape.api.errors import QueryError
from tradetape.api.methods import market_profile, volume_profile
from tradetape.api.methods.market_profile import MAX_TPO_CELLS, MarketProfileRequest
from tradetape.cli.renderers import renderer
from tradetape.domain.trade import TradeRow
from tradetape.testing import HeldTrades

PERIOD_MS = {"1s": 1000, "5s": 5000, "10s": 10_000, "1m": 60_000, "30m": 1_800_000}


def ask(tape: list[TradeRow], **fields: Any) -> market_profile.MarketProfileReply:
    return market_profile.handle(HeldTrades.from_rows(tape), "X", MarketProfileRequest(**fields), BASE)


def expected_profile(tape: list[TradeRow], body: dict[str, Any], period: str, row_size: str, value_area: float) -> Any:
    chosen = decimal_trades(in_range(tape, body["start"], body["end"]))
    return reference_tpo(chosen, PERIOD_MS[period], body["start"], row_size, str(value_area))


@pytest.mark.slow
@settings(max_examples=150, deadline=None)
@given(
    st.one_of(flow_tapes(), tapes()),
    st.sampled_from(sorted(PERIOD_MS)),
    SPAN,
    st.sampled_from(["0.5", "1", "2", "2.5", "0.3", "7"]),
    st.sampled_from([0.5, 0.7, 1.0]),
)
def test_market_profile_equals_the_decimal_reference(
    tape: list[TradeRow], period: str, span: tuple[int, int], row_size: str, value_area: float
) -> None:
    body = request_range(span)
    try:
        reply = ask(tape, period=period, row_size=row_size, value_area=value_area, **body)
    except QueryError as exc:
        if exc.code == "insufficient_trades":
            assert not in_range(tape, body["start"], body["end"]) and exc.details == {"found": 0, "needed": 1}
        else:
            assert exc.code == "range_too_large" and exc.details["intervals"] > 4000
        return
    expected = expected_profile(tape, body, period, row_size, value_area)
    got = decimals_of(reply.model_dump())
    assert {key: got[key] for key in expected} == expected
    assert reply.trade_count == len(in_range(tape, body["start"], body["end"]))
    assert sum(row.tpo_count for row in reply.rows) == sum(len(row.letters) for row in reply.rows)


def test_one_trade_is_one_row_one_letter_without_single_prints_or_poor_extremes() -> None:
    reply = ask([trade(0, "100.5")], row_size="1", period="1m", start=BASE, end=BASE + 3_600_000)
    assert [(r.price_low, r.tpo_count, r.letters) for r in reply.rows] == [("100", 1, "A")]
    assert (reply.poc, reply.val, reply.vah) == ("100.5", "100", "101")
    assert reply.initial_balance is not None and reply.initial_balance.model_dump() == {"high": "100.5", "low": "100.5"}
    assert reply.single_prints == [] and not reply.poor_high and not reply.poor_low


def minute_trades(*prices: str) -> list[TradeRow]:
    """One trade a minute from BASE, at each of `prices` in turn."""
    return [trade(i, price, at=i * 60_000) for i, price in enumerate(prices)]


def test_letters_follow_time_from_the_range_start_and_run_on_after_z() -> None:
    tape = minute_trades(*["100"] * 60)
    reply = ask(tape, row_size="1", period="1m", start=BASE, end=BASE + 3_600_000)
    [row] = reply.rows
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyzABCDEFGH"
    assert row.letters == letters and row.tpo_count == 60 and [p.letter for p in reply.periods] == list(letters)
    later = ask(tape[3:5], row_size="1", period="1m", start=BASE, end=BASE + 3_600_000)
    assert later.rows[0].letters == "DE" and later.initial_balance is None  # A and B did not trade


def test_poc_ties_value_area_single_prints_and_poor_extremes() -> None:
    # A covers 100-103, B 100-101, C 103-106 (a tail of singles above), D 100
    tape = [trade(0, "100"), trade(1, "103.5"), trade(2, "100", at=60_000), trade(3, "101", at=60_000),
            trade(4, "103", at=120_000), trade(5, "106", at=120_000), trade(6, "100", at=180_000)]
    reply = ask(tape, row_size="1", period="1m", start=BASE, end=BASE + 3_600_000)
    shown = [(r.price_low, r.tpo_count, r.letters) for r in reply.rows]
    assert shown == [("100", 3, "ABD"), ("101", 2, "AB"), ("102", 1, "A"), ("103", 2, "AC"),
                     ("104", 1, "C"), ("105", 1, "C"), ("106", 1, "C")]
    assert reply.poc == "100.5" and reply.poor_low and not reply.poor_high
    assert [s.model_dump() for s in reply.single_prints] == [{"price_low": "102", "price_high": "103", "rows": 1}]
    assert reply.initial_balance is not None and reply.initial_balance.model_dump() == {"high": "103.5", "low": "100"}
    # 11 TPOs; 70 % is 7.7: from 100 (3), up 101 (2, no row below), 102 (1), 103 (2) = 8
    assert (reply.val, reply.vah) == ("100", "104")
    lines = text_of(renderer("market_profile")(reply)).splitlines()
    assert any(line.split()[:3] == ["100", "3", "ABD"] and "POC" in line for line in lines)
    assert any(line.split()[:3] == ["102", "1", "A"] and "single" in line for line in lines)
    assert "poor low" in "\n".join(lines) and "poor high" not in "\n".join(lines)
    frame = reply.to_polars()
    assert frame["letters"].to_list() == [r.letters for r in reply.rows] and frame.height == 7


def test_an_empty_range_is_insufficient_trades() -> None:
    with pytest.raises(QueryError) as caught:
        ask(minute_trades("100"), start=BASE + 10**7, end=BASE + 2 * 10**7)
    assert caught.value.code == "insufficient_trades" and caught.value.details == {"found": 0, "needed": 1}


def test_too_many_periods_or_cells_are_range_too_large_and_too_many_rows_invalid() -> None:
    with pytest.raises(QueryError) as caught:
        ask([], period="1s", start=BASE, end=BASE + 86_400_000)
    assert caught.value.code == "range_too_large" and caught.value.details["intervals"] == 86_400
    tape = [trade(i, "100" if i % 2 else "199", at=i * 1000) for i in range(3000)]
    with pytest.raises(QueryError) as caught:
        ask(tape, period="1s", row_size="0.05", start=BASE, end=BASE + 3_600_000)
    assert caught.value.code == "range_too_large"
    assert caught.value.details == {"cells": 3000 * 1981, "max_cells": MAX_TPO_CELLS, "periods": 3000, "rows": 1981}
    with pytest.raises(QueryError) as caught:
        ask(tape, period="1s", row_size="0.001", start=BASE, end=BASE + 3_600_000)
    assert caught.value.code == "invalid_request" and caught.value.details["row_count"] == 99_001


def test_a_count_tie_goes_to_the_row_nearest_the_middle_then_the_lower() -> None:
    # A covers 100-101, B 103-104, 102 untouched: four rows of one TPO around an empty middle row
    tape = [trade(0, "100"), trade(1, "101"), trade(2, "103", at=60_000), trade(3, "104", at=60_000)]
    reply = ask(tape, row_size="1", period="1m", start=BASE, end=BASE + 3_600_000)
    assert [r.tpo_count for r in reply.rows] == [1, 1, 0, 1, 1]
    assert reply.poc == "101.5" and reply.single_prints == []  # 101 and 103 are as near the middle: the lower


def test_default_row_size_is_the_volume_profiles() -> None:
    tape = minute_trades(*(str(100 + i * 7) for i in range(30)))
    body = {"start": BASE, "end": BASE + 3_600_000}
    for rows in (None, 5, 40):
        volume = volume_profile.VolumeProfileRequest(**body, rows=rows, min_trades=1)
        expected = volume_profile.handle(HeldTrades.from_rows(tape), "X", volume, BASE).row_size
        assert ask(tape, **body, rows=rows).row_size == expected
