"""`footprint` against the Decimal reference (tests/reference_order_flow.py), on random tapes and on edge cases."""

from __future__ import annotations

import io
from decimal import Decimal
from math import gcd
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console

from tests.api.test_methods import BASE, SPAN, in_range, request_range, tapes
from tests.reference_order_flow import Trade, decimals_of, reference_footprint
from tradetape.api.errors import QueryError
from tradetape.api.methods import footprint
from tradetape.api.methods.footprint import DEFAULT_ROWS_PER_BAR, MAX_FOOTPRINT_CELLS, FootprintRequest
from tradetape.cli.renderers import renderer
from tradetape.domain.trade import TradeRow
from tradetape.testing import HeldTrades

INTERVAL_MS = {"1s": 1000, "5s": 5000, "1m": 60_000, "1h": 3_600_000}
UNIT = 10**8


@st.composite
def flow_tapes(draw: st.DrawFn) -> list[TradeRow]:
    """Dense tapes for order flow: few prices, trades close in time; quantities half the time from a few small
    values, so that diagonal ratios and row volumes tie."""
    n = draw(st.integers(1, 80))
    gaps = draw(st.lists(st.integers(0, 4_000), min_size=n, max_size=n))
    prices = draw(st.lists(st.integers(1, 14), min_size=n, max_size=n))
    qty = st.sampled_from([0, 1, 2, 3, 6, 9]).map(lambda q: q * UNIT) if draw(st.booleans()) else st.integers(0, 10**12)
    qtys = draw(st.lists(qty, min_size=n, max_size=n))
    sides = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    first = draw(st.integers(1, 10**9))
    times = [sum(gaps[: i + 1]) for i in range(n)]
    return [
        TradeRow(first + i, prices[i] * 50_000_000, qtys[i], first + i, first + i, BASE + times[i], sides[i])
        for i in range(n)
    ]


def decimal_trades(rows: list[TradeRow]) -> list[Trade]:
    return [(r.time, Decimal(r.price).scaleb(-8), Decimal(r.qty).scaleb(-8), r.buyer_maker) for r in rows]


def ask(tape: list[TradeRow], **fields: Any) -> footprint.FootprintReply:
    return footprint.handle(HeldTrades.from_rows(tape), "X", FootprintRequest(**fields), BASE)


def expected_bars(rows: list[TradeRow], body: dict[str, Any], interval: str, row_size: str, **rules: Any) -> Any:
    chosen = decimal_trades(in_range(rows, body["start"], body["end"]))
    return reference_footprint(
        chosen, INTERVAL_MS[interval], row_size, str(rules.get("imbalance", 3.0)), rules.get("stacked", 3),
        str(rules.get("value_area", 0.7)),
    )


def cells_of(bars: list[dict[str, Any]]) -> int:
    return sum(len(bar["rows"]) for bar in bars)


@pytest.mark.slow
@settings(max_examples=150, deadline=None)
@given(
    flow_tapes(),
    st.sampled_from(sorted(INTERVAL_MS)),
    SPAN,
    st.sampled_from(["0.5", "1", "2", "2.5", "0.3", "7"]),
    st.sampled_from([1.0, 1.5, 2.0, 2.7, 3.0]),
    st.integers(1, 4),
    st.sampled_from([0.5, 0.7, 1.0]),
)
def test_footprint_equals_the_decimal_reference(
    rows: list[TradeRow], interval: str, span: tuple[int, int], row_size: str, ratio: float, stacked: int,
    value_area: float,
) -> None:
    body = request_range(span)
    rules = {"imbalance": ratio, "stacked": stacked, "value_area": value_area}
    try:
        reply = ask(rows, interval=interval, row_size=row_size, **rules, **body)
    except QueryError as exc:
        assert exc.code == "range_too_large" and exc.details["intervals"] > 4000
        return
    expected = expected_bars(rows, body, interval, row_size, **rules)
    assert decimals_of(reply.model_dump())["bars"] == expected
    assert reply.trade_count == sum(bar["trade_count"] for bar in expected)
    assert reply.row_size == row_size and (reply.imbalance, reply.stacked) == (ratio, stacked)
    for bar in expected:  # the rows add up to the bar
        assert sum(r["buy_volume"] for r in bar["rows"]) == bar["buy_volume"]
        assert sum(r["trade_count"] for r in bar["rows"]) == bar["trade_count"]


def nice_sizes(tick: int) -> list[int]:
    """1, 2, 5, 10, 20, 25, 50, 100, ... ticks, written out."""
    sizes = [1, 2, 5]
    for decade in (10**j for j in range(1, 19)):
        sizes += [decade, 2 * decade, 5 * decade // 2, 5 * decade]
    return [tick * m for m in sizes]


@settings(max_examples=40, deadline=None)
@given(tapes(), st.sampled_from(["5s", "1m", "1h"]), SPAN, st.integers(1, 12))
def test_rows_picks_the_smallest_nice_size_that_keeps_every_bar_within_them(
    rows: list[TradeRow], interval: str, span: tuple[int, int], wanted: int
) -> None:
    body = request_range(span)
    reply = ask(rows, interval=interval, rows=wanted, **body)
    chosen = in_range(rows, body["start"], body["end"])
    if not chosen:
        assert reply.bars == [] and reply.row_size is None
        return
    tick = 0
    for row in chosen:
        tick = gcd(tick, row.price)
    assert reply.row_size is not None
    size = int(Decimal(reply.row_size) * UNIT)
    widest = {size_: max(len(b["rows"]) for b in expected_bars(rows, body, interval, str(Decimal(size_) / UNIT)))
              for size_ in nice_sizes(tick)[: nice_sizes(tick).index(size) + 1]}
    assert widest[size] <= wanted
    assert all(rows_ > wanted for size_, rows_ in widest.items() if size_ < size)
    assert decimals_of(reply.model_dump())["bars"] == expected_bars(rows, body, interval, reply.row_size)
    default = ask(rows, interval=interval, **body)
    assert default.row_size == ask(rows, interval=interval, rows=DEFAULT_ROWS_PER_BAR, **body).row_size


def trade(n: int, price: str, qty: str = "1", *, sell: bool = False, at: int = 0) -> TradeRow:
    units = int(Decimal(price) * UNIT)
    return TradeRow(1000 + n, units, int(Decimal(qty) * UNIT), n, n, BASE + at + n, sell)


SPAN_1M = {"start": BASE, "end": BASE + 60_000, "interval": "1m"}


def test_one_trade_is_one_bar_of_one_row_without_imbalances() -> None:
    reply = ask([trade(0, "100.5", "2")], row_size="1", **SPAN_1M)
    [bar] = reply.bars
    [row] = bar.rows
    assert (row.price_low, row.price_high, row.buy_volume, row.sell_volume) == ("100", "101", "2", "0")
    assert not row.buy_imbalance and not row.sell_imbalance and bar.stacked_imbalances == []
    assert (bar.poc, bar.val, bar.vah, bar.delta) == ("100.5", "100", "101", "2")


def test_all_buys_imbalance_every_row_but_the_lowest_and_stack() -> None:
    rows = [trade(i, str(100 + i)) for i in range(5)]
    [bar] = ask(rows, row_size="1", stacked=3, **SPAN_1M).bars
    assert [r.buy_imbalance for r in bar.rows] == [False, True, True, True, True]
    assert not any(r.sell_imbalance for r in bar.rows)
    assert [s.model_dump() for s in bar.stacked_imbalances] == [
        {"side": "buy", "price_low": "101", "price_high": "105", "rows": 4}
    ]
    assert bar.sell_volume == "0" and bar.delta == bar.volume == "5"


def test_a_poc_tie_goes_to_the_row_nearest_the_middle_then_the_lower() -> None:
    rows = [trade(0, "10", "2"), trade(1, "11", "1"), trade(2, "12", "2")]
    [bar] = ask(rows, row_size="1", **SPAN_1M).bars
    assert bar.poc == "10.5"  # 10 and 12 tie, equally near the middle (11): the lower
    rows = [trade(0, "10", "2"), trade(1, "11", "1"), trade(2, "12", "2"), trade(3, "13", "1")]
    [bar] = ask(rows, row_size="1", **SPAN_1M).bars
    assert bar.poc == "12.5"  # middle 11.5: 12 is nearer than 10


def test_the_diagonal_imbalance_is_inclusive_and_needs_volume() -> None:
    # row 10: sell 1; row 11: buy 3 (= 3 × 1: an imbalance), sell 0; row 12: nothing; row 13: buy 0, sell 5
    rows = [trade(0, "10", "1", sell=True), trade(1, "11", "3"), trade(2, "13", "5", sell=True)]
    [bar] = ask(rows, row_size="1", **SPAN_1M).bars
    flags = [(r.price_low, r.buy_imbalance, r.sell_imbalance) for r in bar.rows]
    # row 10's sell is against buy(11) = 3: 1 < 3 × 3; row 13 is the highest: no row above
    assert flags == [("10", False, False), ("11", True, False), ("12", False, False), ("13", False, False)]


def test_an_empty_range_has_no_bars_and_no_row_size() -> None:
    reply = ask([trade(0, "100")], start=BASE + 10**6, end=BASE + 2 * 10**6)
    assert reply.bars == [] and reply.row_size is None and reply.trade_count == 0
    assert reply.to_polars().height == 0
    assert "no trades in the range" in text_of(renderer("footprint")(reply))
    assert ask([], row_size="5", **SPAN_1M).row_size == "5"


def test_sums_past_int64_stay_exact() -> None:
    huge = "50000000000"  # 5e18 units: two of them leave int64
    rows = [trade(0, "1", huge), trade(1, "1", huge), trade(2, "2", huge, sell=True)]
    [bar] = ask(rows, row_size="1", **SPAN_1M).bars
    assert (bar.rows[0].buy_volume, bar.volume, bar.delta) == ("100000000000", "150000000000", "50000000000")
    body = {"start": BASE, "end": BASE + 60_000}
    assert decimals_of(bar.model_dump()) == expected_bars(rows, body, "1m", "1")[0]


def test_too_many_rows_or_intervals_are_range_too_large_before_any_answer() -> None:
    rows = [trade(0, "1"), trade(1, "20")]
    with pytest.raises(QueryError) as caught:
        ask(rows, row_size="0.001", **SPAN_1M)
    assert caught.value.code == "range_too_large" and caught.value.status == 413
    assert caught.value.details == {"cells": 19_001, "max_cells": MAX_FOOTPRINT_CELLS, "bars": 1}
    with pytest.raises(QueryError) as caught:
        ask(rows, interval="1s", start=BASE, end=BASE + 86_400_000)
    assert caught.value.code == "range_too_large" and caught.value.details["intervals"] == 86_400


@settings(max_examples=80, deadline=None)
@given(
    flow_tapes(),
    st.sampled_from(["1s", "1m", "5m"]),
    SPAN,
    st.sampled_from([{"row_size": "0.5"}, {"row_size": "2.5"}, {"rows": 3}, {}]),
    st.sampled_from([{}, {"imbalance": 2}, {"imbalance": 1.5, "stacked": 1}, {"value_area": 1}]),
    st.sampled_from([None, "utc-day", {"tz": "Europe/London", "start": "00:00", "end": "00:01"}]),
)
def test_the_encoded_reply_is_what_its_model_dumps_byte_for_byte(
    rows: list[TradeRow], interval: str, span: tuple[int, int], size: dict[str, Any], rules: dict[str, Any],
    session: Any,
) -> None:
    """The service sends `encode`'s JSON, built without models: it must be exactly what the reply model dumps,
    also from plain fields (an int `imbalance` is a float in the model: `3.0`, never `3`)."""
    request = FootprintRequest(interval=interval, session=session, **size, **rules, **request_range(span))
    try:
        sent = footprint.encode(HeldTrades.from_rows(rows), "X", request, BASE)
    except QueryError as exc:
        assert exc.code == "range_too_large"
        return
    assert footprint.METHOD.reply_json(HeldTrades.from_rows(rows), "X", request, BASE) == sent
    assert footprint.FootprintReply.model_validate_json(sent).model_dump_json().encode() == sent
    assert footprint.FootprintReply.model_validate(orjson.loads(sent)).model_dump_json().encode() == sent


def test_request_rules() -> None:
    with pytest.raises(QueryError, match="row_size or rows"):
        footprint.METHOD.parse_request({"row_size": "1", "rows": 5})
    for bad in ({"imbalance": 0.5}, {"imbalance": "NaN"}, {"stacked": 0}, {"value_area": 0}, {"row_size": "0"}):
        with pytest.raises(QueryError) as caught:
            footprint.METHOD.parse_request(bad)
        assert caught.value.code == "invalid_request", bad


def text_of(renderable: Any) -> str:
    out = io.StringIO()
    Console(file=out, width=200, no_color=True, highlight=False).print(renderable)
    return out.getvalue()


def test_render_shows_each_bar_top_down_with_imbalances_stacks_and_poc() -> None:
    rows = [trade(i, str(100 + i), "1") for i in range(5)] + [trade(5, "102", "4", sell=True)]
    reply = ask(rows, row_size="1", stacked=2, **SPAN_1M)
    shown = text_of(renderer("footprint")(reply)).splitlines()
    lines = [line.split() for line in shown if line.strip()[:3].isdigit() and "×" in line]
    assert [line[0] for line in lines] == ["104", "103", "102", "101", "100"]
    assert lines[0][:4] == ["104", "1", "×", "0"] and "▲" in lines[0] and "▲▲" not in lines[0]  # alone
    assert lines[2] == ["102", "1", "×", "4", "2", "▲▲", "▼", "POC"]  # sell 4 ≥ 3 × buy(103) = 3
    assert "▲▲" in lines[3] and "▲" not in lines[1]  # 101-102 stack; 103's buy 1 < 3 × sell(102)
    frame = reply.to_polars()
    assert frame.height == 5 and frame["buy_imbalance"].to_list() == [r.buy_imbalance for r in reply.bars[0].rows]
