"""Volume-weighted average price with standard-deviation bands, over a range or anchored.

`mean = Σ p·q / Σ q`, `std = sqrt(Σ q·(p − mean)² / Σ q)` (the volume-weighted deviation
traders draw as VWAP bands). Computed from 1-second bars (`tradetape.domain.aggregates`),
whether the store's layer or the trades made them: the mean is correctly rounded from the
exact quote and base volumes; the deviation from each second's exact moments about its
low, as floats moved to one reference price (the first second's low) so the digits are kept.
Floats: derived figures, never stored or used to decide a row boundary. Prices in units of 1e-8.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import accumulate

import numpy as np
import numpy.typing as npt

from tradetape.domain.aggregates import SecondBars
from tradetape.domain.columns import Int64Array

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Vwap:
    mean: float
    std: float
    volume: int
    """Exact base volume, units of 1e-8."""


@dataclass(frozen=True, slots=True)
class VwapSeries:
    """The running (anchored) VWAP and deviation at the close of each bar."""

    time: list[int]
    mean: list[float]
    std: list[float]
    volume: list[int]


def vwap(seconds: SecondBars) -> Vwap:
    """VWAP and its volume-weighted standard deviation over `seconds`; ValueError without volume."""
    whole = _running(seconds, np.zeros(len(seconds), dtype=np.int64))
    if not whole.volume or whole.volume[-1] <= 0:
        raise ValueError("no volume in the range")
    return Vwap(mean=whole.mean[-1], std=whole.std[-1], volume=whole.volume[-1])


def running_vwap(seconds: SecondBars, interval_ms: int) -> VwapSeries:
    """VWAP from the first second up to the end of each interval of `interval_ms` holding trades."""
    bucket = seconds.time // interval_ms
    running = _running(seconds, bucket)
    ends = (np.unique(bucket) + 1) * interval_ms
    return VwapSeries(ends.tolist(), running.mean, running.std, running.volume)


def _running(seconds: SecondBars, bucket: Int64Array) -> VwapSeries:
    """Cumulative VWAP and deviation at the end of each run of `bucket` (ascending) over `seconds`."""
    if len(seconds) == 0:
        return VwapSeries([], [], [], [])
    starts = np.flatnonzero(np.r_[True, bucket[1:] != bucket[:-1]])
    volume = list(accumulate(seconds.volume.summed_runs(starts).ints()))
    quote = list(accumulate(seconds.quote.summed_runs(starts).ints()))
    groups = np.repeat(np.arange(len(starts), dtype=np.int64), np.diff(np.r_[starts, len(seconds)]))
    shift = (seconds.low - seconds.low[0]).astype(np.float64)
    base, above = seconds.volume.floats(), seconds.above_low.floats()
    centred = above + shift * base
    square = seconds.above_low_square.floats() + 2.0 * shift * above + shift * shift * base
    totals = np.array(volume, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_centred = _cumulative(groups, centred, len(starts)) / totals
        variance = np.maximum(_cumulative(groups, square, len(starts)) / totals - mean_centred * mean_centred, 0.0)
    return VwapSeries(
        time=[],
        mean=[q / v if v else math.nan for q, v in zip(quote, volume, strict=True)],
        std=np.sqrt(variance).tolist(),
        volume=volume,
    )


def _cumulative(groups: Int64Array, values: FloatArray, n: int) -> FloatArray:
    """Per-group sums in input order (`np.bincount`: a plain loop), then running totals."""
    return np.cumsum(np.bincount(groups, weights=values, minlength=n).astype(np.float64, copy=False))
