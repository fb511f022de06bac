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

from dataclasses import dataclass
from fractions import Fraction
from itertools import groupby
from typing import Literal

import numpy as np

from tradetape.domain.aggregates import TimeBars
from tradetape.domain.interval_levels import IntervalLevels
from tradetape.domain.profile import nice_row_sizes
from tradetape.domain.sums import exact_group_sums
from tradetape.domain.value_area import RowsWithValueArea, value_area_of

Side = Literal["buy", "sell"]


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


@dataclass(frozen=True, slots=True)
class FootprintBar(RowsWithValueArea):
    """One interval's bar and its rows, ascending by price; POC and value area as positions in `rows`."""

    start: int
    open: int
    high: int
    low: int
    close: int
    volume: int
    buy_volume: int
    sell_volume: int
    trade_count: int
    rows: tuple[FootprintRow, ...]
    stacked: tuple[StackedImbalance, ...]
    poc_row: int
    value_area_low_row: int
    value_area_high_row: int

    @property
    def delta(self) -> int:
        return self.buy_volume - self.sell_volume


def footprint_cells(bars: TimeBars, row_size: int) -> int:
    """How many rows the footprint of `bars` at `row_size` holds, all bars together."""
    if row_size <= 0:
        raise ValueError(f"row_size must be positive, got {row_size}")
    size = np.int64(row_size)
    return int((bars.high // size - bars.low // size + 1).sum())


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
    bar_index = bars.start // bars.interval_ms
    position = np.searchsorted(bar_index, levels.index)
    if len(levels) and (int(position.max()) >= len(bars) or bool((bar_index[position] != levels.index).any())):
        raise ValueError("the levels hold an interval no bar has")
    offset_in_bar = levels.price // size - low_row[position]
    if len(levels) and (int(offset_in_bar.min()) < 0 or bool((offset_in_bar >= row_counts[position]).any())):
        raise ValueError("a level's price lies outside its bar's low and high")
    cell = offsets[position] + offset_in_bar
    buy = exact_group_sums(cell, levels.buy_volume, n_cells)
    sell = exact_group_sums(cell, levels.volume - levels.buy_volume, n_cells)
    counts = np.bincount(cell, weights=levels.trade_count.astype(np.float64), minlength=n_cells)  # < 2**53 each
    trade_counts = counts.astype(np.int64).tolist()
    result = []
    for b in range(len(bars)):
        first, end = int(offsets[b]), int(offsets[b + 1])
        result.append(
            _bar(bars, b, int(low_row[b]) * row_size, row_size, buy[first:end], sell[first:end],
                 trade_counts[first:end], ratio, stacked, value_area)
        )
    return result


def _bar(
    bars: TimeBars,
    b: int,
    bottom: int,
    row_size: int,
    buy: list[int],
    sell: list[int],
    counts: list[int],
    ratio: Fraction,
    stacked: int,
    value_area: Fraction,
) -> FootprintBar:
    num, den = ratio.numerator, ratio.denominator
    last = len(buy) - 1
    rows = tuple(
        FootprintRow(
            price_low=bottom + r * row_size,
            price_high=bottom + (r + 1) * row_size,
            buy_volume=buy[r],
            sell_volume=sell[r],
            trade_count=counts[r],
            buy_imbalance=r > 0 and buy[r] > 0 and buy[r] * den >= num * sell[r - 1],
            sell_imbalance=r < last and sell[r] > 0 and sell[r] * den >= num * buy[r + 1],
        )
        for r in range(last + 1)
    )
    volumes = [b_ + s for b_, s in zip(buy, sell, strict=True)]
    area = value_area_of(volumes, value_area)
    return FootprintBar(
        start=int(bars.start[b]),
        open=int(bars.open[b]),
        high=int(bars.high[b]),
        low=int(bars.low[b]),
        close=int(bars.close[b]),
        volume=bars.volume[b],
        buy_volume=bars.buy_volume[b],
        sell_volume=bars.sell_volume[b],
        trade_count=int(bars.trade_count[b]),
        rows=rows,
        stacked=_stacked(rows, stacked),
        poc_row=area.poc,
        value_area_low_row=area.low,
        value_area_high_row=area.high,
    )


def _stacked(rows: tuple[FootprintRow, ...], at_least: int) -> tuple[StackedImbalance, ...]:
    """Runs of at least `at_least` rows imbalanced on one side, by price (buy before sell at the same price)."""
    runs: list[StackedImbalance] = []
    sides: tuple[Side, Side] = ("buy", "sell")
    for side in sides:
        flags = [row.buy_imbalance if side == "buy" else row.sell_imbalance for row in rows]
        position = 0
        for flagged, run in groupby(flags):
            length = len(list(run))
            if flagged and length >= at_least:
                runs.append(
                    StackedImbalance(side, rows[position].price_low, rows[position + length - 1].price_high, length)
                )
            position += length
    runs.sort(key=lambda run: (run.price_low, run.side != "buy"))
    return tuple(runs)

