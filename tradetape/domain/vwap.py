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
    """VWAP and its volume-weighted standard deviation over `trades` (units of 1e-8)."""
    price = trades.price.astype(np.float64)
    qty = trades.qty.astype(np.float64)
    volume = float(qty.sum())
    if volume <= 0:
        raise ValueError("no volume in the range")
    mean = float((price * qty).sum() / volume)
    variance = float((qty * (price - mean) ** 2).sum() / volume)
    return Vwap(mean=mean, std=math.sqrt(max(variance, 0.0)), volume=volume)


@dataclass(frozen=True, slots=True)
class VwapSeries:
    """The running (anchored) VWAP and deviation at the close of each bar."""

    time: list[int]
    mean: list[float]
    std: list[float]


def running_vwap(trades: TradeColumns, bars: TimeBars) -> VwapSeries:
    """VWAP from the first trade up to the end of each bar of `bars` (built from `trades`)."""
    bucket = trades.time // bars.interval_ms
    order = np.argsort(bucket, kind="stable")
    shift = float(trades.price[0]) if len(trades) else 0.0  # centred, so E[p²] - E[p]² keeps its digits
    price = trades.price[order].astype(np.float64) - shift
    qty = trades.qty[order].astype(np.float64)
    firsts = np.r_[0, np.cumsum(bars.trade_count)[:-1]]
    volume = np.cumsum(np.add.reduceat(qty, firsts)) if len(firsts) else np.empty(0)
    notional = np.cumsum(np.add.reduceat(price * qty, firsts)) if len(firsts) else np.empty(0)
    square = np.cumsum(np.add.reduceat(price * price * qty, firsts)) if len(firsts) else np.empty(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        centred = notional / volume
        variance = np.maximum(square / volume - centred * centred, 0.0)
    return VwapSeries(
        time=(bars.start + bars.interval_ms).tolist(),
        mean=(centred + shift).tolist(),
        std=np.sqrt(variance).tolist(),
    )
