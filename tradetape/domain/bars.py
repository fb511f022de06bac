"""Time bars: per-interval OHLC, volumes, trade counts and VWAP of one symbol's trades.

Intervals are aligned to the epoch (UTC), `[k * interval, (k + 1) * interval)` by trade
time; only intervals holding trades appear. Open and close are the first and last trade
by agg id. Volumes and quote volumes are exact integers; VWAP a float correctly rounded
from them. Bars of trades are the roll-up of their 1-second bars
(`tradetape.domain.aggregates`), the same roll-up the store's aggregate layer is read
through, so both paths answer alike.
"""

from __future__ import annotations

from tradetape.domain.aggregates import SECOND_MS, TimeBars, second_bars
from tradetape.domain.columns import TradeColumns

DAY_MS = 86_400_000


def check_interval(interval_ms: int) -> None:
    """Intervals from 1 s to 1 d, whole seconds (Binance's kline range)."""
    if not SECOND_MS <= interval_ms <= DAY_MS or interval_ms % SECOND_MS:
        raise ValueError(f"interval must be whole seconds from 1s to 1d, got {interval_ms} ms")


def time_bars(trades: TradeColumns, interval_ms: int) -> TimeBars:
    """The bars of `trades` (ascending by agg id) at `interval_ms`."""
    check_interval(interval_ms)
    return second_bars(trades).rolled(interval_ms)
