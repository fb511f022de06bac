"""Price levels per time interval: trades summed per (interval, price), what a footprint is built from.

An aggregate layer keeps such levels per minute beside the stored trades
(`minute_levels_per_interval` sums them to any whole number of minutes); `interval_levels`
makes them from trades. The footprint (`tradetape.domain.footprint`) adds levels up by row
whatever their order, and a price may appear more than once in an interval (its figures add),
so `each_trade` (one level a trade) is a valid input too: the exact fallback when a level's sum
could leave int64 (quantities of huge-supply coins).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tradetape.domain.aggregates import MINUTE_MS, MinuteLevels
from tradetape.domain.bars import check_interval
from tradetape.domain.columns import Int64Array, TradeColumns

_INT64_MAX = 2**63 - 1


@dataclass(frozen=True, slots=True)
class IntervalLevels:
    """Volume, taker-buy volume and trade count per (interval, price); prices and volumes in units of 1e-8.

    Interval `index[i]` is `[index[i] * interval_ms, (index[i] + 1) * interval_ms)` by trade time.
    """

    interval_ms: int
    index: Int64Array
    price: Int64Array
    volume: Int64Array
    buy_volume: Int64Array
    """Volume of trades whose taker bought (Binance `m` false)."""
    trade_count: Int64Array

    def __len__(self) -> int:
        return len(self.index)

    @classmethod
    def empty(cls, interval_ms: int) -> IntervalLevels:
        empty = np.zeros(0, dtype=np.int64)
        return cls(interval_ms, empty, empty, empty, empty, empty)

    @classmethod
    def each_trade(cls, trades: TradeColumns, interval_ms: int) -> IntervalLevels:
        """Every trade as its own level, in the trades' order: nothing summed, so nothing can overflow."""
        check_interval(interval_ms)
        qty = trades.qty
        return cls(
            interval_ms,
            trades.time // interval_ms,
            trades.price,
            qty,
            np.where(trades.buyer_maker, 0, qty),
            np.ones(len(qty), dtype=np.int64),
        )


def interval_levels(trades: TradeColumns, interval_ms: int) -> IntervalLevels | None:
    """The levels of `trades` per epoch-aligned interval, ascending by interval then price, each pair once.

    None when a level's volume could leave int64 (then take `IntervalLevels.each_trade`).
    """
    check_interval(interval_ms)
    n = len(trades)
    if n == 0:
        return IntervalLevels.empty(interval_ms)
    qty = trades.qty
    if int(qty.max()) * n > _INT64_MAX:
        return None
    index = trades.time // interval_ms
    first_index = int(index.min())
    low = int(trades.price.min())
    slots = int(trades.price.max()) - low + 1
    if (int(index.max()) - first_index + 1) * slots <= _INT64_MAX:
        key = (index - first_index) * slots + (trades.price - low)
        order = np.argsort(key, kind="stable")  # trades come by time: a stable sort finds runs already there
        key = key[order]
        starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    else:  # prices spread beyond what one int64 key can hold beside the interval
        order = np.lexsort((trades.price, index))
        sorted_index, sorted_price = index[order], trades.price[order]
        changed = (sorted_index[1:] != sorted_index[:-1]) | (sorted_price[1:] != sorted_price[:-1])
        starts = np.flatnonzero(np.r_[True, changed])
    picked = order[starts]
    qty_sorted = qty[order]
    buy_sorted = np.where(trades.buyer_maker[order], 0, qty_sorted)
    return IntervalLevels(
        interval_ms=interval_ms,
        index=index[picked],
        price=trades.price[picked],
        volume=np.add.reduceat(qty_sorted, starts),
        buy_volume=np.add.reduceat(buy_sorted, starts),
        trade_count=np.diff(np.r_[starts, n]).astype(np.int64),
    )


def minute_levels_per_interval(levels: MinuteLevels, interval_ms: int) -> IntervalLevels:
    """Per-minute levels as levels of the epoch-aligned interval of `interval_ms` (a whole number of minutes) each
    minute lies in: a price traded in several of an interval's minutes appears once a minute (its figures add).

    Not summed per (interval, price): the footprint adds levels up by row whatever their order, and summing
    first (a sort of every level) took most of a day's 5-minute footprint.
    """
    check_interval(interval_ms)
    if interval_ms % MINUTE_MS:
        raise ValueError(f"an interval of whole minutes, got {interval_ms} ms")
    return IntervalLevels(
        interval_ms, levels.time // interval_ms, levels.price, levels.volume, levels.buy_volume, levels.trade_count
    )
