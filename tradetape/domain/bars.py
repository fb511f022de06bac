"""Time bars: per-interval OHLC, volumes, trade counts and VWAP of one symbol's trades.

Intervals are aligned to the epoch (UTC), `[k * interval, (k + 1) * interval)` by trade
time; only intervals holding trades appear. Open and close are the first and last trade
by agg id. Volumes are exact integers in units of 1e-8 (`tradetape.domain.sums`); VWAP is
a float, a derived figure. Pure numpy over columns; `flow` and the bars method share it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from tradetape.domain.columns import BoolArray, TradeColumns
from tradetape.domain.sums import exact_group_sums

SECOND_MS = 1000
DAY_MS = 86_400_000

Int64Array = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class TimeBars:
    """One entry per interval that holds trades, ascending by time; prices in units of 1e-8."""

    interval_ms: int
    start: Int64Array
    open: Int64Array
    high: Int64Array
    low: Int64Array
    close: Int64Array
    volume: list[int]
    buy_volume: list[int]
    sell_volume: list[int]
    trade_count: Int64Array
    notional: FloatArray
    """Sum of price × quantity per bar (in units of 1e-16), for VWAP."""

    def __len__(self) -> int:
        return len(self.start)

    @classmethod
    def empty(cls, interval_ms: int) -> TimeBars:
        none = np.empty(0, dtype=np.int64)
        return cls(interval_ms, none, none, none, none, none, [], [], [], none, np.empty(0))

    @property
    def vwap_units(self) -> FloatArray:
        """VWAP per bar in units of 1e-8 (NaN where a bar's volume is 0)."""
        volume = np.asarray(self.volume, dtype=np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.notional / volume


def check_interval(interval_ms: int) -> None:
    """Intervals from 1 s to 1 d, whole seconds (Binance's kline range)."""
    if not SECOND_MS <= interval_ms <= DAY_MS or interval_ms % SECOND_MS:
        raise ValueError(f"interval must be whole seconds from 1s to 1d, got {interval_ms} ms")


def time_bars(trades: TradeColumns, interval_ms: int) -> TimeBars:
    """The bars of `trades` (ascending by agg id) at `interval_ms`."""
    check_interval(interval_ms)
    return _bucketed(trades, trades.time // interval_ms, interval_ms, lambda buckets: buckets * interval_ms)


def calendar_bars(trades: TradeColumns, edges: Int64Array, interval_ms: int) -> TimeBars:
    """The bars of `trades` between consecutive `edges` (ascending epoch ms, e.g. local midnights), each bar's
    `start` its left edge; `interval_ms` is the nominal length reported (a local day may last 23 or 25 hours).

    Every trade must lie in `[edges[0], edges[-1])`.
    """
    bucket = np.searchsorted(edges, trades.time, side="right").astype(np.int64) - 1
    return _bucketed(trades, bucket, interval_ms, lambda buckets: edges[buckets])


def _bucketed(
    trades: TradeColumns, bucket: Int64Array, interval_ms: int, starts_of: Callable[[Int64Array], Int64Array]
) -> TimeBars:
    """One bar per bucket holding trades, ascending by bucket, agg-id order kept inside each."""
    if bool((bucket[1:] >= bucket[:-1]).all()):  # the usual case: times ascend with agg ids
        price, qty, sells = trades.price, trades.qty, trades.buyer_maker
    else:
        order = np.argsort(bucket, kind="stable")  # keeps agg-id order inside an interval
        bucket = bucket[order]
        price = trades.price[order]
        qty = trades.qty[order]
        sells = trades.buyer_maker[order]
    n = len(bucket)
    if n == 0:
        return TimeBars.empty(interval_ms)
    firsts = np.flatnonzero(np.r_[True, bucket[1:] != bucket[:-1]])
    starts = starts_of(bucket[firsts])
    del bucket  # one int64 column less held at the peak (the query's memory budget is per trade)
    return grouped_bars(price, qty, sells, firsts, starts, interval_ms)


def grouped_bars(
    price: Int64Array, qty: Int64Array, sells: BoolArray, firsts: Int64Array, starts: Int64Array, interval_ms: int
) -> TimeBars:
    """Bars over consecutive runs of trades: run i is `firsts[i]` up to the next first (the last to the end)."""
    n = len(price)
    lasts = np.r_[firsts[1:] - 1, n - 1]
    n_bars = len(firsts)
    groups = np.repeat(np.arange(n_bars, dtype=np.int64), np.diff(np.r_[firsts, n]))
    buy = exact_group_sums(groups[~sells], qty[~sells], n_bars)
    sell = exact_group_sums(groups[sells], qty[sells], n_bars)
    return TimeBars(
        interval_ms=interval_ms,
        start=starts,
        open=price[firsts],
        high=np.maximum.reduceat(price, firsts),
        low=np.minimum.reduceat(price, firsts),
        close=price[lasts],
        volume=[b + s for b, s in zip(buy, sell, strict=True)],
        buy_volume=buy,
        sell_volume=sell,
        trade_count=np.diff(np.r_[firsts, n]).astype(np.int64),
        notional=np.add.reduceat(_times(price, qty), firsts),
    )


def _times(price: Int64Array, qty: Int64Array) -> FloatArray:
    """price × qty as floats, made in one column (not three)."""
    product = price.astype(np.float64)
    product *= qty
    return product
