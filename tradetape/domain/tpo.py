"""Market profile (TPO): how many time periods traded at each price row, lettered by period.

Built from per-period bars (`tradetape.domain.bars.TimeBars`: only each period's high and low
count), never from trades, so an aggregate layer can feed it. Exact integers throughout. The rules:

- periods are the bars' epoch-aligned intervals; one with trades covers every row from the row of
  its low to the row of its high (row `k = floor(price / row_size)`, as the volume profile);
- a period's letter is its position counted from the range's first period (whether or not that
  one traded): `A`–`Z`, then `a`–`z`, then `A` again (position mod 52); `periods[]` gives each
  letter's start, so a repeated letter is never ambiguous;
- rows run from the lowest to the highest covered row, empty ones included; a row's TPO count is
  the number of periods covering it, its letters theirs in time order;
- POC and value area by the volume profile rules (`tradetape.domain.value_area`) over TPO counts;
- initial balance: high and low of the range's first two periods (those of them that traded);
- single prints: maximal runs of rows with exactly one TPO strictly inside the profile (a run
  reaching the top or bottom row is that end's tail, its excess, not a single print);
- poor high (low): the top (bottom) row has two TPOs or more, so the extreme has no tail.

The work is one step a (period, row) cell: callers bound `tpo_cells` before asking.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from fractions import Fraction
from itertools import groupby

import numpy as np

from tradetape.domain.aggregates import TimeBars
from tradetape.domain.value_area import RowsWithValueArea, value_area_of

LETTERS = string.ascii_uppercase + string.ascii_lowercase


def tpo_letter(position: int) -> str:
    """The letter of the period `position` periods after the range's first one."""
    return LETTERS[position % len(LETTERS)]


@dataclass(frozen=True, slots=True)
class TpoRow:
    """One row `[price_low, price_high)` in units of 1e-8, with the letters of the periods covering it."""

    price_low: int
    price_high: int
    tpo_count: int
    letters: str


@dataclass(frozen=True, slots=True)
class TpoPeriod:
    letter: str
    start: int
    high: int
    low: int


@dataclass(frozen=True, slots=True)
class SinglePrint:
    """A run of `rows` rows with one TPO each, `[price_low, price_high)`."""

    price_low: int
    price_high: int
    rows: int


@dataclass(frozen=True)
class TpoProfile(RowsWithValueArea):
    """A market profile: rows ascending by price; POC and value area as positions in `rows`."""

    row_size: int
    rows: tuple[TpoRow, ...]
    periods: tuple[TpoPeriod, ...]
    """The periods that traded, in time order."""
    poc_row: int
    value_area_low_row: int
    value_area_high_row: int
    initial_balance: tuple[int, int] | None
    """`(high, low)` of the first two periods; None when neither traded."""
    single_prints: tuple[SinglePrint, ...]
    poor_high: bool
    poor_low: bool


def tpo_cells(bars: TimeBars, row_size: int) -> int:
    """Periods × rows of the profile of `bars` at `row_size`: what building it costs."""
    if row_size <= 0:
        raise ValueError(f"row_size must be positive, got {row_size}")
    if len(bars) == 0:
        return 0
    return len(bars) * (int(bars.high.max()) // row_size - int(bars.low.min()) // row_size + 1)


def market_profile(bars: TimeBars, first_start: int, row_size: int, value_area: Fraction) -> TpoProfile:
    """The TPO profile of `bars` (one a period that traded), letters counted from the period at `first_start`.

    Raises `ValueError` without bars, for a bar before `first_start`, a non-positive `row_size`
    or a `value_area` outside `(0, 1]`.
    """
    if len(bars) == 0:
        raise ValueError("no periods")
    if row_size <= 0 or not 0 < value_area <= 1:
        raise ValueError(f"bad profile rule: row_size {row_size}, value_area {value_area}")
    positions = (bars.start - first_start) // bars.interval_ms
    if int(positions.min()) < 0:
        raise ValueError(f"a period starts before the first one at {first_start}")
    letters = [tpo_letter(p) for p in positions.tolist()]
    size = np.int64(row_size)
    low_rows, high_rows = bars.low // size, bars.high // size
    bottom = int(low_rows.min())
    row_index = np.arange(bottom, int(high_rows.max()) + 1, dtype=np.int64)
    covers = (row_index[:, None] >= low_rows[None, :]) & (row_index[:, None] <= high_rows[None, :])  # row × period
    counts = covers.sum(axis=1).tolist()
    codes = np.frombuffer("".join(letters).encode("ascii"), dtype=np.uint8)
    text = np.broadcast_to(codes, covers.shape)[covers].tobytes().decode("ascii")  # row by row, periods in order
    ends = np.cumsum(counts).tolist()
    rows = tuple(
        TpoRow((bottom + r) * row_size, (bottom + r + 1) * row_size, counts[r], text[ends[r] - counts[r] : ends[r]])
        for r in range(len(counts))
    )
    area = value_area_of(counts, value_area)
    opening = positions < 2
    return TpoProfile(
        row_size=row_size,
        rows=rows,
        periods=tuple(
            TpoPeriod(letter, int(start), int(high), int(low))
            for letter, start, high, low in zip(letters, bars.start, bars.high, bars.low, strict=True)
        ),
        poc_row=area.poc,
        value_area_low_row=area.low,
        value_area_high_row=area.high,
        initial_balance=(int(bars.high[opening].max()), int(bars.low[opening].min())) if opening.any() else None,
        single_prints=_single_prints(rows),
        poor_high=counts[-1] >= 2,
        poor_low=counts[0] >= 2,
    )


def _single_prints(rows: tuple[TpoRow, ...]) -> tuple[SinglePrint, ...]:
    found = []
    position = 0
    for single, run in groupby(row.tpo_count == 1 for row in rows):
        length = len(list(run))
        if single and position > 0 and position + length < len(rows):
            found.append(SinglePrint(rows[position].price_low, rows[position + length - 1].price_high, length))
        position += length
    return tuple(found)
