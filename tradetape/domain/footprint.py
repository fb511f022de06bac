"""Footprint: each bar's taker-buy and taker-sell volume per price row, imbalances, POC and value area.

Built from the bars (`tradetape.domain.bars.TimeBars`: open, high, low, close, volumes) and
price levels per interval (`tradetape.domain.interval_levels`), never from trades one at a
time, so an aggregate layer can feed it. Exact: sums are Python ints (`tradetape.domain.sums`),
ratios compared as fractions. The rules:

- row `k = floor(price / row_size)` covers `[k * row_size, (k + 1) * row_size)`; a bar's rows run
  from the row of its low to the row of its high, empty ones included, ascending;
- buy imbalance at row r: `buy(r) > 0` and `buy(r) >= ratio * sell(r - 1)`; sell imbalance at row
  r: `sell(r) > 0` and `sell(r) >= ratio * buy(r + 1)` (the diagonal: a taker buying at r lifts
  the offers one row above where takers sold). The bar's lowest row has no row below, so no buy
  imbalance; its highest no row above, so no sell imbalance. An empty row inside the bar counts
  as volume 0;
- a stacked imbalance is a maximal run of at least `stacked` consecutive rows that each have a
  buy imbalance (or each a sell imbalance);
- POC and value area of each bar by the volume profile rules (`tradetape.domain.value_area`) over
  its rows' volumes.

The work is linear in the levels plus one step a cell (bar × row): callers bound the cells
with `footprint_cells` before asking.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from fractions import Fraction
from itertools import pairwise
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from tradetape.domain.aggregates import TimeBars
from tradetape.domain.columns import BoolArray, Int64Array
from tradetape.domain.interval_levels import IntervalLevels
from tradetape.domain.profile import nice_row_sizes
from tradetape.domain.sums import exact_group_sums
from tradetape.domain.value_area import RowsWithValueArea, value_area_of

Side = Literal["buy", "sell"]
_INT64_MAX = 2**63 - 1


@dataclass(frozen=True, slots=True)
class FootprintRow:
    """One row `[price_low, price_high)` of a bar; prices and volumes in units of 1e-8."""

    price_low: int
    price_high: int
    buy_volume: int
    sell_volume: int
    trade_count: int
    buy_imbalance: bool
    sell_imbalance: bool

    @property
    def volume(self) -> int:
        return self.buy_volume + self.sell_volume


@dataclass(frozen=True, slots=True)
class StackedImbalance:
    """A run of `rows` consecutive rows with an imbalance on `side`, `[price_low, price_high)`."""

    side: Side
    price_low: int
    price_high: int
    rows: int


@dataclass(slots=True)
class FootprintBar(RowsWithValueArea):
    """One interval's bar and its rows' figures as columns, row r being `[bottom + r * row_size, bottom + (r + 1) *
    row_size)`, ascending by price; POC and value area as positions in the rows.

    Columns, not a `FootprintRow` each: a day's footprint holds thousands of rows, which a reply encodes straight
    from the columns (`rows` builds them for readers that want them). Not frozen (its columns are lists anyway):
    a frozen dataclass sets its 20 fields through `object.__setattr__`, ~2 µs a bar, 0.5 ms of a day's answer."""

    start: int
    open: int
    high: int
    low: int
    close: int
    volume: int
    buy_volume: int
    sell_volume: int
    trade_count: int
    bottom: int
    row_size: int
    buys: list[int]
    sells: list[int]
    counts: list[int]
    buy_flags: list[bool]
    sell_flags: list[bool]
    stacked: tuple[StackedImbalance, ...]
    poc_row: int
    value_area_low_row: int
    value_area_high_row: int

    @property
    def delta(self) -> int:
        return self.buy_volume - self.sell_volume

    @property
    def rows(self) -> tuple[FootprintRow, ...]:  # type: ignore[override]
        low, size = self.bottom, self.row_size
        return tuple(
            FootprintRow(low + r * size, low + (r + 1) * size, buy, sell, count, buy_flag, sell_flag)
            for r, (buy, sell, count, buy_flag, sell_flag) in enumerate(
                zip(self.buys, self.sells, self.counts, self.buy_flags, self.sell_flags, strict=True)
            )
        )

    @property
    def poc_low(self) -> int:
        return self.bottom + self.poc_row * self.row_size

    @property
    def poc_high(self) -> int:
        return self.poc_low + self.row_size

    @property
    def vah(self) -> int:
        return self.bottom + (self.value_area_high_row + 1) * self.row_size

    @property
    def val(self) -> int:
        return self.bottom + self.value_area_low_row * self.row_size


def footprint_cells(bars: TimeBars, row_size: int) -> int:
    """How many rows the footprint of `bars` at `row_size` holds, all bars together."""
    if row_size <= 0:
        raise ValueError(f"row_size must be positive, got {row_size}")
    size = np.int64(row_size)
    return int((bars.high // size - bars.low // size + 1).sum())


def level_step(row_size: int) -> int:
    """The largest power of ten dividing `row_size`: levels with prices taken down to its multiples fall in the
    same rows as their trades, so a footprint can read them bucketed (`MinuteLevels.bucketed`); rows of 1, 2 and 5
    USDT share one bucketing, 10, 20 and 50 another."""
    if row_size <= 0:
        raise ValueError(f"row_size must be positive, got {row_size}")
    step = 1
    while row_size % (step * 10) == 0:
        step *= 10
    return step


def footprint_row_size(bars: TimeBars, rows: int, tick: int) -> int:
    """The smallest nice row size (`tradetape.domain.profile.nice_row_sizes`) giving no bar more than `rows` rows."""
    if rows < 1:
        raise ValueError(f"rows must be at least 1, got {rows}")
    if len(bars) == 0:
        return tick
    for size in nice_row_sizes(tick):
        step = np.int64(min(size, 2**63 - 1))
        if int((bars.high // step - bars.low // step).max()) + 1 <= rows:
            return size
    raise AssertionError("unreachable: nice_row_sizes has no end")


def footprint(
    bars: TimeBars,
    levels: IntervalLevels,
    row_size: int,
    *,
    ratio: Fraction,
    stacked: int,
    value_area: Fraction,
) -> list[FootprintBar]:
    """The footprint of `bars` from `levels` of the same interval, by the rules above.

    Raises `ValueError` when the levels hold an interval no bar has, or a price outside its
    bar's low–high, or for a non-positive `row_size`, `ratio` or `stacked`.
    """
    if row_size <= 0 or ratio <= 0 or stacked < 1 or not 0 < value_area <= 1:
        raise ValueError(f"bad footprint rule: row_size {row_size}, ratio {ratio}, stacked {stacked}, {value_area}")
    if levels.interval_ms != bars.interval_ms:
        raise ValueError(f"levels of {levels.interval_ms} ms for bars of {bars.interval_ms} ms")
    size = np.int64(row_size)
    low_row = bars.low // size
    row_counts = bars.high // size - low_row + 1
    offsets = np.r_[np.int64(0), np.cumsum(row_counts)]
    n_cells = int(offsets[-1])
    index, row, buy_levels, sell_levels, count_levels = _row_runs(levels, size)
    bar_index = bars.start // bars.interval_ms
    position = np.searchsorted(bar_index, index)
    if len(index) and (int(position.max()) >= len(bars) or bool((bar_index[position] != index).any())):
        raise ValueError("the levels hold an interval no bar has")
    offset_in_bar = row - low_row[position]
    if len(index) and (int(offset_in_bar.min()) < 0 or bool((offset_in_bar >= row_counts[position]).any())):
        raise ValueError("a level's price lies outside its bar's low and high")
    cell = offsets[position] + offset_in_bar
    buy = exact_group_sums(cell, buy_levels, n_cells)
    sell = exact_group_sums(cell, sell_levels, n_cells)
    counts = np.bincount(cell, weights=count_levels.astype(np.float64), minlength=n_cells)  # < 2**53 each
    trade_counts = counts.astype(np.int64).tolist()
    flagged = _imbalances(buy, sell, offsets, ratio)
    buy_flags, sell_flags = (flags.tolist() for flags in flagged)
    volumes = [b + s for b, s in zip(buy, sell, strict=True)]
    bounds, bottoms, counted = offsets.tolist(), (low_row * size).tolist(), bars.trade_count.tolist()
    runs = _stacked(*flagged, bounds, bottoms, row_size, stacked)
    starts, opens, highs, lows, closes = (c.tolist() for c in (bars.start, bars.open, bars.high, bars.low, bars.close))
    result = []
    for b, (first, end) in enumerate(pairwise(bounds)):  # plain lists, sliced: a day holds ~300 bars
        area = value_area_of(volumes[first:end], value_area)
        result.append(
            FootprintBar(
                start=starts[b], open=opens[b], high=highs[b], low=lows[b], close=closes[b], volume=bars.volume[b],
                buy_volume=bars.buy_volume[b], sell_volume=bars.sell_volume[b], trade_count=counted[b],
                bottom=bottoms[b], row_size=row_size, buys=buy[first:end], sells=sell[first:end],
                counts=trade_counts[first:end], buy_flags=buy_flags[first:end], sell_flags=sell_flags[first:end],
                stacked=runs.get(b, ()), poc_row=area.poc, value_area_low_row=area.low, value_area_high_row=area.high,
            )
        )  # fmt: skip
    return result


def _row_runs(levels: IntervalLevels, size: np.int64) -> tuple[Int64Array, ...]:
    """Interval, row, buy volume, sell volume and trade count of each run of levels in one interval and row, summed.

    Levels come ascending by price within each minute, so a run holds a minute's prices of one row: at a cent
    tick and rows of a few dollars, hundreds of levels become one, and everything after works on those. Each
    level stays its own run when a run's int64 sum could overflow (sums per cell are exact either way).
    """
    row = levels.price // size
    n = len(levels)
    if n == 0 or max(int(levels.volume.max()), int(levels.trade_count.max())) * n > _INT64_MAX:
        return levels.index, row, levels.buy_volume, levels.volume - levels.buy_volume, levels.trade_count
    heads = np.flatnonzero(np.r_[True, (levels.index[1:] != levels.index[:-1]) | (row[1:] != row[:-1])])
    volume = np.add.reduceat(levels.volume, heads)
    buy = np.add.reduceat(levels.buy_volume, heads)
    return levels.index[heads], row[heads], buy, volume - buy, np.add.reduceat(levels.trade_count, heads)


def _imbalances(buy: list[int], sell: list[int], offsets: Int64Array, ratio: Fraction) -> tuple[BoolArray, BoolArray]:
    """Buy and sell imbalance flags of every cell (bars' rows one after another; bar b's rows start at
    `offsets[b]`), compared as `buy * den >= num * sell` in int64 where every product fits, else in Python ints."""
    num, den = ratio.numerator, ratio.denominator
    n = len(buy)
    if n == 0:
        return np.zeros(0, dtype=bool), np.zeros(0, dtype=bool)
    fits = max(max(buy), max(sell)) * max(num, den) <= _INT64_MAX
    dtype: type = np.int64 if fits else object
    buys: npt.NDArray[Any] = np.array(buy, dtype=dtype)
    sells: npt.NDArray[Any] = np.array(sell, dtype=dtype)
    first = np.zeros(n, dtype=bool)
    first[offsets[:-1]] = True  # a bar's lowest row: no row below it
    last = np.zeros(n, dtype=bool)
    last[offsets[1:] - 1] = True  # its highest: no row above
    below = np.r_[np.zeros(1, dtype=dtype), sells[:-1]]
    above = np.r_[buys[1:], np.zeros(1, dtype=dtype)]
    buy_flags = ~first & (buys > 0) & (buys * den >= below * num)
    sell_flags = ~last & (sells > 0) & (sells * den >= above * num)
    return buy_flags.astype(bool), sell_flags.astype(bool)


def _stacked(
    buy_flags: BoolArray, sell_flags: BoolArray, bounds: list[int], bottoms: list[int], row_size: int, at_least: int
) -> dict[int, tuple[StackedImbalance, ...]]:
    """Each bar's runs of at least `at_least` rows imbalanced on one side, by price (buy before sell at the same
    price), keyed by the bar's position; bar b's rows are cells `bounds[b]` to `bounds[b + 1]`.

    Found over all cells at once (one call a bar cost ~1 µs a bar with no run): no run crosses two bars, as a bar's
    lowest row has no buy imbalance and its highest no sell imbalance.
    """
    runs: defaultdict[int, list[StackedImbalance]] = defaultdict(list)
    sides: tuple[tuple[Side, BoolArray], ...] = (("buy", buy_flags), ("sell", sell_flags))
    for side, flags in sides:
        steps = np.diff(np.r_[False, flags, False].astype(np.int8))
        firsts, ends = np.flatnonzero(steps == 1), np.flatnonzero(steps == -1)
        long = ends - firsts >= at_least
        firsts, lengths = firsts[long], (ends - firsts)[long]
        owners = np.searchsorted(bounds, firsts, side="right") - 1
        for b, first, length in zip(owners.tolist(), firsts.tolist(), lengths.tolist(), strict=True):
            low = bottoms[b] + (first - bounds[b]) * row_size
            runs[b].append(StackedImbalance(side, low, low + length * row_size, length))
    return {
        b: tuple(sorted(bar_runs, key=lambda run: (run.price_low, run.side != "buy"))) for b, bar_runs in runs.items()
    }
