"""Time bars: per-interval OHLC, volumes, trade counts and VWAP of one symbol's trades.

Intervals are aligned to the epoch (UTC), `[k * interval, (k + 1) * interval)` by trade
time, or to given edges (local midnights: `calendar_bars`); only intervals holding trades
appear. Open and close are the first and last trade by agg id. Volumes and quote volumes
are exact integers; VWAP a float correctly rounded from them. Bars of trades are the
roll-up of their 1-second bars (`tradetape.domain.aggregates`), the same roll-up the
store's aggregate layer is read through, so both paths answer alike. Bars over runs of
consecutive trades (`grouped_bars`: volume, tick and dollar bars) sum the same way.
"""

from __future__ import annotations

import numpy as np

from tradetape.domain.aggregates import SECOND_MS, TimeBars, second_bars
from tradetape.domain.columns import BoolArray, Int64Array, TradeColumns
from tradetape.domain.sums import product_digits, run_sums, value_digits

DAY_MS = 86_400_000


def check_interval(interval_ms: int) -> None:
    """Intervals from 1 s to 1 d, whole seconds (Binance's kline range)."""
    if not SECOND_MS <= interval_ms <= DAY_MS or interval_ms % SECOND_MS:
        raise ValueError(f"interval must be whole seconds from 1s to 1d, got {interval_ms} ms")


def time_bars(trades: TradeColumns, interval_ms: int) -> TimeBars:
    """The bars of `trades` (ascending by agg id) at `interval_ms`."""
    check_interval(interval_ms)
    return second_bars(trades).rolled(interval_ms)


def calendar_bars(trades: TradeColumns, edges: Int64Array, interval_ms: int) -> TimeBars:
    """The bars of `trades` between consecutive `edges` (ascending epoch ms of whole seconds, e.g. local
    midnights), each bar's `start` its left edge; `interval_ms` is the nominal length reported (a local day
    may last 23 or 25 hours).

    Every trade must lie in `[edges[0], edges[-1])`.
    """
    seconds = second_bars(trades)
    bucket = np.searchsorted(edges, seconds.time, side="right").astype(np.int64) - 1
    return seconds.grouped(bucket, edges[bucket], interval_ms)


def grouped_bars(
    price: Int64Array, qty: Int64Array, sells: BoolArray, firsts: Int64Array, starts: Int64Array, interval_ms: int
) -> TimeBars:
    """Bars over consecutive runs of trades: run i is `firsts[i]` up to the next first (the last to the end)."""
    n = len(price)
    if n == 0:
        return TimeBars.empty(interval_ms)
    runs = firsts.astype(np.intp)
    lasts = np.r_[firsts[1:] - 1, n - 1]
    volume = run_sums(value_digits(qty), runs).ints()
    buy = run_sums(value_digits(np.where(sells, 0, qty)), runs).ints()
    return TimeBars(
        interval_ms=interval_ms,
        start=starts,
        open=price[firsts],
        high=np.maximum.reduceat(price, firsts),
        low=np.minimum.reduceat(price, firsts),
        close=price[lasts],
        volume=volume,
        buy_volume=buy,
        sell_volume=[v - b for v, b in zip(volume, buy, strict=True)],
        trade_count=np.diff(np.r_[firsts, n]).astype(np.int64),
        quote=run_sums(product_digits(price, qty), runs).ints(),
    )
