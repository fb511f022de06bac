"""Every query method against a plain, obviously correct reference, on random trade sets.

The handlers run on an in-memory `TradeSource` (`tradetape.testing.HeldTrades`, served as the
shard reader serves); `tests/analytics/test_methods_over_nats.py` checks that the service answers
exactly what the handlers compute.
"""

from __future__ import annotations

import math
from collections import defaultdict
from decimal import Decimal
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tradetape.api.errors import QueryError
from tradetape.api.methods import bars, flow, large_trades, trades, vwap
from tradetape.domain.columns import TradeColumns
from tradetape.domain.decimals import format_units
from tradetape.domain.trade import TradeRow
from tradetape.testing import HeldTrades

BASE = 1_767_225_600_000  # 2026-01-01T00:00:00Z
UNIT = Decimal("0.00000001")


@st.composite
def tapes(draw: st.DrawFn, max_size: int = 60) -> list[TradeRow]:
    """Consecutive agg ids with non-decreasing times (as Binance writes them), prices on a small grid."""
    n = draw(st.integers(1, max_size))
    gaps = draw(st.lists(st.integers(0, 20_000), min_size=n, max_size=n))
    prices = draw(st.lists(st.integers(1, 40), min_size=n, max_size=n))
    qtys = draw(st.lists(st.integers(0, 10**12), min_size=n, max_size=n))
    sides = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    first = draw(st.integers(1, 10**9))
    times = np.cumsum(gaps).tolist()
    return [
        TradeRow(first + i, prices[i] * 50_000_000, qtys[i], 2 * (first + i), 2 * (first + i) + 1, BASE + t, sides[i])
        for i, t in enumerate(times)
    ]


def in_range(rows: list[TradeRow], start: int, end: int) -> list[TradeRow]:
    return sorted((r for r in rows if start <= r.time < end), key=lambda r: r.agg_id)


def d(units: int) -> Decimal:
    return Decimal(units) * UNIT


INTERVALS = st.sampled_from(["1s", "5s", "1m", "1h"])
SPAN = st.tuples(st.integers(-5_000, 100_000), st.integers(1, 6_000_000))


def request_range(span: tuple[int, int]) -> dict[str, Any]:
    return {"start": BASE + span[0], "end": BASE + span[0] + span[1]}


@settings(max_examples=40, deadline=None)
@given(tapes(), INTERVALS, SPAN)
def test_bars_equal_a_per_interval_reference(rows: list[TradeRow], interval: str, span: tuple[int, int]) -> None:
    body = request_range(span)
    interval_ms = {"1s": 1000, "5s": 5000, "1m": 60_000, "1h": 3_600_000}[interval]
    try:
        reply = bars.handle(HeldTrades.from_rows(rows), "X", bars.BarsRequest(interval=interval, **body), BASE)
    except QueryError as exc:
        assert exc.code == "range_too_large"
        return
    groups: dict[int, list[TradeRow]] = defaultdict(list)
    for row in in_range(rows, body["start"], body["end"]):
        groups[row.time // interval_ms * interval_ms].append(row)
    assert [b.time for b in reply.bars] == sorted(groups)
    assert reply.trade_count == sum(len(g) for g in groups.values())
    for bar in reply.bars:
        group = groups[bar.time]
        assert Decimal(bar.open) == d(group[0].price) and Decimal(bar.close) == d(group[-1].price)
        assert Decimal(bar.high) == d(max(r.price for r in group))
        assert Decimal(bar.low) == d(min(r.price for r in group))
        assert Decimal(bar.volume) == d(sum(r.qty for r in group))
        assert Decimal(bar.sell_volume) == d(sum(r.qty for r in group if r.buyer_maker))
        assert Decimal(bar.buy_volume) == d(sum(r.qty for r in group if not r.buyer_maker))
        assert bar.trade_count == len(group)
        volume = sum(r.qty for r in group)
        if volume:
            expected = sum(Decimal(r.price) * r.qty for r in group) / volume * UNIT
            assert bar.vwap is not None and math.isclose(bar.vwap, float(expected), rel_tol=1e-9)
        else:
            assert bar.vwap is None


@settings(max_examples=40, deadline=None)
@given(tapes(), INTERVALS, SPAN)
def test_flow_deltas_accumulate_over_the_range(rows: list[TradeRow], interval: str, span: tuple[int, int]) -> None:
    body = request_range(span)
    try:
        reply = flow.handle(HeldTrades.from_rows(rows), "X", flow.FlowRequest(interval=interval, **body), BASE)
    except QueryError as exc:
        assert exc.code == "range_too_large"
        return
    chosen = in_range(rows, body["start"], body["end"])
    running = Decimal(0)
    for row in reply.rows:
        delta = Decimal(row.buy_volume) - Decimal(row.sell_volume)
        running += delta
        assert Decimal(row.delta) == delta and Decimal(row.cumulative_delta) == running
    buy = d(sum(r.qty for r in chosen if not r.buyer_maker))
    sell = d(sum(r.qty for r in chosen if r.buyer_maker))
    assert (Decimal(reply.buy_volume), Decimal(reply.sell_volume), Decimal(reply.delta)) == (buy, sell, buy - sell)
    assert running == buy - sell and sum(r.trade_count for r in reply.rows) == len(chosen)
    sent = flow.METHOD.reply_json(HeldTrades.from_rows(rows), "X", flow.FlowRequest(interval=interval, **body), BASE)
    assert sent == reply.model_dump_json().encode()  # the service sends the encoder's JSON: the model's, byte for byte


@settings(max_examples=40, deadline=None)
@given(tapes(), SPAN)
def test_vwap_and_bands_equal_the_weighted_mean_and_deviation(rows: list[TradeRow], span: tuple[int, int]) -> None:
    body = request_range(span)
    chosen = in_range(rows, body["start"], body["end"])
    volume = sum(r.qty for r in chosen)
    try:
        reply = vwap.handle(HeldTrades.from_rows(rows), "X", vwap.VwapRequest(interval="1m", **body), BASE)
    except QueryError as exc:
        assert exc.code == "insufficient_trades" and volume == 0
        return
    prices = [float(d(r.price)) for r in chosen]
    weights = [float(r.qty) for r in chosen]
    mean = sum(p * w for p, w in zip(prices, weights, strict=True)) / sum(weights)
    std = math.sqrt(sum(w * (p - mean) ** 2 for p, w in zip(prices, weights, strict=True)) / sum(weights))
    assert math.isclose(reply.vwap, mean, rel_tol=1e-9)
    assert math.isclose(reply.std, std, rel_tol=1e-6, abs_tol=1e-6)
    assert [b.deviations for b in reply.bands] == [1.0, 2.0, 3.0]
    assert math.isclose(reply.bands[1].upper, mean + 2 * reply.std, rel_tol=1e-12)
    assert reply.series is not None and reply.series[-1].time >= chosen[-1].time
    assert math.isclose(reply.series[-1].vwap, mean, rel_tol=1e-9)
    assert math.isclose(reply.series[-1].std, std, rel_tol=1e-5, abs_tol=1e-5)


def test_anchored_vwap_starts_at_the_anchor() -> None:
    rows = [TradeRow(i, (100 + i) * 10**8, 10**8, i, i, BASE + i * 1000, False) for i in range(1, 11)]
    anchored = vwap.handle(HeldTrades.from_rows(rows), "X", vwap.VwapRequest(anchor=BASE + 6000), BASE + 60_000)
    assert anchored.anchored and anchored.start == BASE + 6000 and anchored.trade_count == 5
    assert math.isclose(anchored.vwap, 108.0)
    with pytest.raises(ValueError, match="anchor"):
        vwap.VwapRequest(anchor=BASE, last="1h")


@settings(max_examples=40, deadline=None)
@given(tapes(), SPAN, st.integers(1, 30), st.one_of(st.none(), st.integers(0, 10**12)))
def test_large_trades_are_the_largest_by_quantity(
    rows: list[TradeRow], span: tuple[int, int], top: int, min_units: int | None
) -> None:
    body = request_range(span)
    min_qty = None if min_units is None else format_units(min_units)
    request = large_trades.LargeTradesRequest(top=top, min_qty=min_qty, **body)
    reply = large_trades.handle(HeldTrades.from_rows(rows), "X", request, BASE)
    chosen = [r for r in in_range(rows, body["start"], body["end"]) if min_units is None or r.qty >= min_units]
    expected = sorted(chosen, key=lambda r: (-r.qty, r.agg_id))[:top]
    assert [t.agg_id for t in reply.trades] == [r.agg_id for r in expected]
    assert reply.matched == len(chosen) and reply.truncated == (len(chosen) > top)
    for trade, row in zip(reply.trades, expected, strict=True):
        assert Decimal(trade.quote_qty) == d(row.price) * d(row.qty)
        assert trade.side == ("sell" if row.buyer_maker else "buy")


@settings(max_examples=40, deadline=None)
@given(tapes(), SPAN, st.integers(1, 15))
def test_trade_pages_join_without_gap_or_repeat(rows: list[TradeRow], span: tuple[int, int], limit: int) -> None:
    source = HeldTrades.from_rows(rows)
    body = request_range(span)
    page = trades.handle(source, "X", trades.TradesRequest(limit=limit, **body), BASE)
    seen = list(page.trades)
    while page.next_cursor is not None:
        assert len(page.trades) == limit
        page = trades.handle(source, "X", trades.TradesRequest(limit=limit, cursor=page.next_cursor), BASE)
        seen += page.trades
    expected = in_range(rows, body["start"], body["end"])
    assert [(t.a, Decimal(t.p), Decimal(t.q), t.f, t.l, t.T, t.m) for t in seen] == [
        (r.agg_id, d(r.price), d(r.qty), r.first_id, r.last_id, r.time, r.buyer_maker) for r in expected
    ]


def test_a_cursor_answers_only_the_question_it_was_made_for() -> None:
    def tape(first_id: int) -> list[TradeRow]:
        ids = range(first_id, first_id + 50)
        return [TradeRow(a, 10**8, 10**8, a, a, BASE + 100 * (a - first_id), False) for a in ids]

    source = HeldTrades(
        {"BTCUSDT": TradeColumns.from_rows(tape(3_800_000_000)), "ETHUSDT": TradeColumns.from_rows(tape(2_100_000_000))}
    )
    span = {"start": BASE, "end": BASE + 60_000}
    first = trades.handle(source, "BTCUSDT", trades.TradesRequest(limit=10, **span), BASE)
    cursor = first.next_cursor
    assert cursor is not None
    with pytest.raises(QueryError) as caught:  # it used to answer "0 trades, last page"
        trades.handle(source, "ETHUSDT", trades.TradesRequest(cursor=cursor), BASE)
    assert caught.value.code == "invalid_request"
    assert "belongs to BTCUSDT trades" in caught.value.message and "limit 10" in caught.value.message

    # the cursor alone (its limit, not the default 1,000), or beside the options of the first page (as the CLI's
    # hint repeats them): the next 10
    for repeated in ({}, {"limit": 10}, span, {"start": BASE}, {"last": "1m", "limit": 10}):
        page = trades.handle(source, "BTCUSDT", trades.TradesRequest(cursor=cursor, **repeated), BASE)
        assert [t.a for t in page.trades] == list(range(3_800_000_010, 3_800_000_020)), repeated
    for other in ({"limit": 1000}, {"start": BASE + 1}, {"end": BASE + 59_999}, {"last": "1h"}):
        with pytest.raises(ValueError, match=f"cursor belongs to BTCUSDT trades .*{next(iter(other))} differ"):
            trades.TradesRequest(cursor=cursor, **other)


def test_edge_cases_one_trade_one_price_and_none() -> None:
    one = HeldTrades.from_rows([TradeRow(7, 5 * 10**8, 3 * 10**8, 7, 7, BASE + 1500, True)])
    reply = bars.handle(one, "X", bars.BarsRequest(interval="1s", start=BASE, end=BASE + 10_000), BASE)
    got = [(b.time, b.open, b.close, b.volume, b.sell_volume) for b in reply.bars]
    assert got == [(BASE + 1000, "5", "5", "3", "3")]
    same = HeldTrades.from_rows([TradeRow(i, 10**8, 10**8, i, i, BASE + i, i % 2 == 0) for i in range(1, 6)])
    assert vwap.handle(same, "X", vwap.VwapRequest(start=BASE, end=BASE + 10), BASE).std == 0.0
    empty = HeldTrades.empty()
    assert bars.handle(empty, "X", bars.BarsRequest(start=BASE, end=BASE + 60_000), BASE).bars == []
    assert trades.handle(empty, "X", trades.TradesRequest(start=BASE, end=BASE + 1), BASE).next_cursor is None
    with pytest.raises(QueryError, match="insufficient_trades|trades in the range"):
        vwap.handle(empty, "X", vwap.VwapRequest(start=BASE, end=BASE + 1), BASE)


def test_too_many_intervals_and_foreign_cursors_are_refused() -> None:
    with pytest.raises(QueryError) as caught:
        bars.handle(HeldTrades.empty(), "X", bars.BarsRequest(interval="1s", start=BASE, end=BASE + 86_400_000), BASE)
    assert caught.value.code == "range_too_large" and caught.value.details["max_intervals"] == 4000
    foreign = [
        trades.TradesCursor("X", BASE, BASE + 10, 5, 1, BASE + 99),  # its last trade outside its range
        trades.TradesCursor("../x", BASE, BASE + 10, 5, 1, BASE + 1),  # no symbol
        trades.TradesCursor("X", BASE, BASE + 10, 5000 + 1, 1, BASE + 1),  # a page above the limit
    ]
    for cursor in ("nonsense", "W10", "A" * 300, *(c.encode() for c in foreign)):
        with pytest.raises(ValueError, match="cursor"):
            trades.TradesRequest(cursor=cursor)
    with pytest.raises(ValueError, match="interval"):
        bars.BarsRequest(interval="2d")
    with pytest.raises(ValueError, match="interval"):
        bars.BarsRequest(interval="1500ms")
