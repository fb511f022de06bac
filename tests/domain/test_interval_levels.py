"""Price levels per interval, and the footprint built from any levels of the same trades."""

from __future__ import annotations

from collections import defaultdict
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.api.test_footprint import flow_tapes
from tradetape.domain.aggregates import minute_levels
from tradetape.domain.bars import time_bars
from tradetape.domain.columns import TradeColumns
from tradetape.domain.footprint import footprint
from tradetape.domain.interval_levels import IntervalLevels, interval_levels, minute_levels_per_interval
from tradetape.domain.trade import TradeRow

INTERVALS = st.sampled_from([1000, 5000, 60_000, 3_600_000])


def reference_levels(rows: list[TradeRow], interval_ms: int) -> list[tuple[int, int, int, int, int]]:
    sums: dict[tuple[int, int], list[int]] = defaultdict(lambda: [0, 0, 0])
    for row in rows:
        level = sums[(row.time // interval_ms, row.price)]
        level[0] += row.qty
        level[1] += 0 if row.buyer_maker else row.qty
        level[2] += 1
    return [(k, p, sums[(k, p)][0], sums[(k, p)][1], sums[(k, p)][2]) for k, p in sorted(sums)]


def as_rows(levels: IntervalLevels) -> list[tuple[int, int, int, int, int]]:
    return list(zip(*(c.tolist() for c in (levels.index, levels.price, levels.volume, levels.buy_volume,
                                           levels.trade_count)), strict=True))


@settings(max_examples=100, deadline=None)
@given(flow_tapes(), INTERVALS)
def test_levels_are_the_per_interval_per_price_sums_ascending(rows: list[TradeRow], interval_ms: int) -> None:
    levels = interval_levels(TradeColumns.from_rows(rows), interval_ms)
    assert levels is not None and levels.interval_ms == interval_ms
    assert as_rows(levels) == reference_levels(rows, interval_ms)


@settings(max_examples=100, deadline=None)
@given(flow_tapes(), st.sampled_from([60_000, 300_000, 420_000, 3_600_000]))
def test_minute_levels_summed_per_interval_are_the_levels_of_the_trades(rows: list[TradeRow], interval_ms: int) -> None:
    """What a footprint of whole minutes reads from the aggregate layer: a (interval, price) once a minute."""
    minutes = minute_levels(TradeColumns.from_rows(rows))
    assert minutes is not None
    levels = minute_levels_per_interval(minutes, interval_ms)
    summed: dict[tuple[int, int], list[int]] = defaultdict(lambda: [0, 0, 0])
    for k, p, volume, buy, count in as_rows(levels):
        summed[(k, p)] = [a + b for a, b in zip(summed[(k, p)], (volume, buy, count), strict=True)]
    assert levels.interval_ms == interval_ms
    assert [(k, p, *summed[(k, p)]) for k, p in sorted(summed)] == reference_levels(rows, interval_ms)


def test_prices_too_spread_for_one_key_are_sorted_all_the_same() -> None:
    top = 2**62
    rows = [TradeRow(i, price, 5, i, i, 1_767_225_600_000 + i * 40_000, i % 3 == 0)
            for i, price in enumerate([top, 1, top, 7, 1, top - 1, 7, 1])]
    levels = interval_levels(TradeColumns.from_rows(rows), 60_000)
    assert levels is not None and as_rows(levels) == reference_levels(rows, 60_000)


def test_sums_that_could_leave_int64_are_refused_and_each_trade_stands_in() -> None:
    rows = [TradeRow(i, 10**8, 5 * 10**18, i, i, 1_767_225_600_000 + i, False) for i in range(2)]
    trades = TradeColumns.from_rows(rows)
    assert interval_levels(trades, 1000) is None
    each = IntervalLevels.each_trade(trades, 1000)
    assert each.volume.tolist() == [5 * 10**18] * 2 and each.trade_count.tolist() == [1, 1]
    [bar] = footprint(time_bars(trades, 1000), each, 10**8, ratio=Fraction(3), stacked=3, value_area=Fraction(7, 10))
    assert bar.rows[0].buy_volume == 10**19 == bar.volume


@pytest.mark.slow
@settings(max_examples=60, deadline=None)
@given(flow_tapes(), INTERVALS)
def test_the_footprint_is_the_same_from_any_levels_of_the_trades(rows: list[TradeRow], interval_ms: int) -> None:
    trades = TradeColumns.from_rows(rows)
    bars = time_bars(trades, interval_ms)
    summed = interval_levels(trades, interval_ms)
    assert summed is not None
    each = IntervalLevels.each_trade(trades, interval_ms)
    order = np.random.default_rng(len(rows)).permutation(len(each))
    shuffled = IntervalLevels(interval_ms, *(c[order] for c in (each.index, each.price, each.volume,
                                                                 each.buy_volume, each.trade_count)))
    answers = [
        footprint(bars, levels, 10**8, ratio=Fraction(3, 2), stacked=2, value_area=Fraction(7, 10))
        for levels in (summed, each, shuffled)
    ]
    assert answers[0] == answers[1] == answers[2]
