"""Volume-weighted average price with standard-deviation bands, over a range or anchored.

`mean = Σ p·q / Σ q`, `std = sqrt(Σ q·(p − mean)² / Σ q)` (the volume-weighted deviation
traders draw as VWAP bands). Floats: these are derived figures, never stored or used to
decide a row boundary. Prices in units of 1e-8.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from tradetape.domain.bars import TimeBars
from tradetape.domain.columns import TradeColumns


@dataclass(frozen=True, slots=True)
class Vwap:
    mean: float
    std: float
    volume: float


def vwap(trades: TradeColumns) -> Vwap:
    """VWAP and its volume-weighted standard deviation over `trades` (units of 1e-8).

    Prices centred on the first one and reduced with dot products, in place: two float
    columns at a time, not five (the query's memory budget is per trade).
    """
    qty = trades.qty.astype(np.float64)
    volume = float(qty.sum())
    if volume <= 0:
        raise ValueError("no volume in the range")
    shift = float(trades.price[0])
    centred = trades.price.astype(np.float64)
    centred -= shift
    mean = float(np.dot(qty, centred) / volume)
    centred -= mean
    np.square(centred, out=centred)
    variance = float(np.dot(qty, centred) / volume)
    return Vwap(mean=mean + shift, std=math.sqrt(max(variance, 0.0)), volume=volume)


@dataclass(frozen=True, slots=True)
class VwapSeries:
    """The running (anchored) VWAP and deviation at the close of each bar."""

    time: list[int]
    mean: list[float]
    std: list[float]


def running_vwap(trades: TradeColumns, bars: TimeBars) -> VwapSeries:
    """VWAP from the first trade up to the end of each bar of `bars` (built from `trades`)."""
    bucket = trades.time // bars.interval_ms
    if bool((bucket[1:] >= bucket[:-1]).all()):  # the usual case: times ascend with agg ids
        price, qty = trades.price.astype(np.float64), trades.qty.astype(np.float64)
    else:
        order = np.argsort(bucket, kind="stable")
        price, qty = trades.price[order].astype(np.float64), trades.qty[order].astype(np.float64)
        del order
    del bucket
    shift = float(trades.price[0]) if len(trades) else 0.0  # centred, so E[p²] - E[p]² keeps its digits
    price -= shift
    firsts = np.r_[0, np.cumsum(bars.trade_count)[:-1]]
    volume = np.cumsum(np.add.reduceat(qty, firsts)) if len(firsts) else np.empty(0)
    qty *= price  # from here on price × quantity, in place: the budget is per trade
    notional = np.cumsum(np.add.reduceat(qty, firsts)) if len(firsts) else np.empty(0)
    qty *= price
    square = np.cumsum(np.add.reduceat(qty, firsts)) if len(firsts) else np.empty(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        centred = notional / volume
        variance = np.maximum(square / volume - centred * centred, 0.0)
    return VwapSeries(
        time=(bars.start + bars.interval_ms).tolist(),
        mean=(centred + shift).tolist(),
        std=np.sqrt(variance).tolist(),
    )
