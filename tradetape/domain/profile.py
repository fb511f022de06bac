"""Volume profile and liquidity vacuums: the rules of docs/design.md ("Query API"), computed exactly.

Pure functions over one symbol's trades given as numpy columns. Prices and quantities are
integers in units of 1e-8 (:mod:`tradetape.domain.decimals`); every row boundary, every sum and
every comparison against a fraction (value-area target, vacuum threshold) is exact integer
or rational arithmetic. Floats appear only in :attr:`LiquidityVacuum.share`, a derived figure.

Rules (the contract, restated):

- row ``k = floor(price / row_size)`` covers ``[k * row_size, (k + 1) * row_size)``; every row
  from the lowest to the highest traded row is present, empty ones included;
- POC: the row with the most volume; on a tie, the tied row nearest to the middle of the
  profile ``(lowest index + highest index) / 2``, then the lower one;
- value area: start from the POC row; while its volume is below ``value_area * total``,
  add the larger of the next row above and the next row below (one row at a time; on a
  tie, the upper); when one side is exhausted, take the other;
- liquidity vacuum: a maximal run of at least ``min_rows`` consecutive rows strictly
  between the lowest and the highest traded rows, each with volume below
  ``threshold * mean row volume`` (mean over all rows, empty ones included).

How the per-row sums stay exact: each quantity is split into chunks of ``b`` bits, with
``b`` chosen so that a whole column of chunks summed in float64 stays below 2**53 (every
partial sum is then an integer float64 represents exactly, whatever the summation order);
the chunk sums per (row, side) come from ``np.bincount`` and are recombined as Python ints.
Nothing is summed in int64, so sums past 9.2e18 units (big-supply coins) do not overflow.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Any

import numpy as np
import numpy.typing as npt

from tradetape.domain.sums import exact_group_sums
from tradetape.domain.value_area import RowsWithValueArea, value_area_of

__all__ = [
    "MAX_PROFILE_ROWS",
    "LiquidityVacuum",
    "ProfileRow",
    "VolumeProfile",
    "choose_row_size",
    "default_row_size",
    "exact_fraction",
    "infer_tick",
    "nice_row_sizes",
    "volume_nodes",
    "liquidity_vacuums",
    "volume_profile",
]

MAX_PROFILE_ROWS = 10_000
"""Refuse profiles with more rows than this (a tiny ``row_size`` over a wide range would
otherwise allocate arrays of billions of rows and take the worker down)."""

_INT64_MAX = np.iinfo(np.int64).max


@dataclass(frozen=True, slots=True)
class ProfileRow:
    """One price row ``[price_low, price_high)``; prices and volumes in units of 1e-8."""

    index: int
    """Row index ``k = floor(price / row_size)``."""
    price_low: int
    price_high: int
    volume: int
    buy_volume: int
    """Volume of trades whose taker bought (Binance ``m`` is false)."""
    sell_volume: int
    """Volume of trades whose taker sold (Binance ``m`` is true: the buyer was the maker)."""
    trade_count: int


@dataclass(frozen=True)
class VolumeProfile(RowsWithValueArea):
    """A volume profile: rows ascending by price, POC and value area as positions in ``rows``."""

    row_size: int
    """Row height in units of 1e-8."""
    rows: tuple[ProfileRow, ...]
    """Every row from the lowest to the highest traded row, ascending, empty ones included."""
    trade_count: int
    total_volume: int
    buy_volume: int
    sell_volume: int
    poc_row: int
    """Position of the POC row in ``rows`` (not the row index ``k``)."""
    value_area_low_row: int
    """Position in ``rows`` of the lowest row of the value area."""
    value_area_high_row: int
    """Position in ``rows`` of the highest row of the value area."""

    @property
    def value_area_volume(self) -> int:
        """Volume of the rows in the value area, units."""
        return sum(row.volume for row in self.rows[self.value_area_low_row : self.value_area_high_row + 1])


@dataclass(frozen=True)
class LiquidityVacuum:
    """A run of thin rows inside a profile; prices and volume in units of 1e-8."""

    price_low: int
    """Bottom edge of the lowest row of the run."""
    price_high: int
    """Top edge (exclusive) of the highest row of the run."""
    rows: int
    volume: int
    share: float
    """``volume / total_volume`` of the profile (0.0 when the profile has no volume)."""


def volume_profile(
    price: npt.ArrayLike,
    qty: npt.ArrayLike,
    buyer_maker: npt.ArrayLike,
    row_size: int,
    value_area: Decimal | Fraction | float = Decimal("0.7"),
    *,
    max_rows: int | None = MAX_PROFILE_ROWS,
    trade_counts: npt.ArrayLike | None = None,
) -> VolumeProfile:
    """Build the volume profile of one symbol's trades by the rules of docs/design.md.

    ``price`` and ``qty`` are integer columns in units of 1e-8, ``buyer_maker`` Binance's
    ``m`` (true: the taker sold, the trade is sell volume). ``value_area`` is a fraction in
    ``(0, 1]``, compared exactly (a ``Decimal``, ``Fraction`` or int as it is; a float as
    the decimal its shortest repr spells, so ``0.7`` means 7/10).
    ``max_rows`` caps the number of rows (``None``: no cap). ``trade_counts`` gives how many
    trades each entry stands for (default one each), so pre-aggregated price levels can be
    profiled exactly like the trades they sum.

    Raises ``ValueError`` for empty input, columns of different lengths, negative
    quantities, ``row_size <= 0``, ``value_area`` outside ``(0, 1]`` and profiles with more
    than ``max_rows`` rows; ``TypeError`` for non-integer price or quantity columns.
    """
    prices = _int64_column(price, "price")
    qtys = _int64_column(qty, "qty")
    sells = np.asarray(buyer_maker, dtype=np.bool_)
    if prices.ndim != 1 or prices.shape != qtys.shape or prices.shape != sells.shape:
        raise ValueError(
            "price, qty and buyer_maker must be 1-D columns of the same length, got "
            f"{prices.shape}, {qtys.shape} and {sells.shape}"
        )
    n = int(prices.shape[0])
    if n == 0:
        raise ValueError("no trades")
    if isinstance(row_size, bool) or not isinstance(row_size, (int, np.integer)):
        raise TypeError(f"row_size must be an int (units of 1e-8), got {row_size!r}")
    row_size = int(row_size)
    if row_size <= 0:
        raise ValueError(f"row_size must be positive, got {row_size}")
    target = exact_fraction(value_area, "value_area")
    if not 0 < target <= 1:
        raise ValueError(f"value_area must be in (0, 1], got {value_area}")
    max_qty = int(qtys.max())
    if int(qtys.min()) < 0:
        raise ValueError("negative quantity")

    # Row index per trade, exact floor division in int64.
    if row_size > _INT64_MAX:
        k = np.where(prices >= 0, 0, -1).astype(np.int64)
    else:
        k = np.floor_divide(prices, np.int64(row_size))
    k_low = int(k.min())
    k_high = int(k.max())
    n_rows = k_high - k_low + 1
    if max_rows is not None and n_rows > max_rows:
        raise ValueError(f"row_size {row_size} gives {n_rows} rows, more than the limit of {max_rows}")

    # Bin per (row, side): 2 * offset + (1 if the taker sold else 0).
    bins = (k - k_low) * 2 + sells
    n_bins = 2 * n_rows
    if trade_counts is None:
        counts = np.bincount(bins, minlength=n_bins).tolist()
    else:
        weights = _int64_column(trade_counts, "trade_counts").astype(np.float64)  # counts stay far below 2^53
        counts = np.bincount(bins, weights=weights, minlength=n_bins).astype(np.int64).tolist()
    sums = exact_group_sums(bins, qtys, n_bins, max_value=max_qty)

    rows: list[ProfileRow] = []
    for i in range(n_rows):
        buy_volume = sums[2 * i]
        sell_volume = sums[2 * i + 1]
        index = k_low + i
        rows.append(
            ProfileRow(
                index=index,
                price_low=index * row_size,
                price_high=(index + 1) * row_size,
                volume=buy_volume + sell_volume,
                buy_volume=buy_volume,
                sell_volume=sell_volume,
                trade_count=counts[2 * i] + counts[2 * i + 1],
            )
        )

    volumes = [row.volume for row in rows]
    total_volume = sum(volumes)
    buy_total = sum(row.buy_volume for row in rows)
    area = value_area_of(volumes, target)
    return VolumeProfile(
        row_size=row_size,
        rows=tuple(rows),
        trade_count=n if trade_counts is None else sum(counts),
        total_volume=total_volume,
        buy_volume=buy_total,
        sell_volume=total_volume - buy_total,
        poc_row=area.poc,
        value_area_low_row=area.low,
        value_area_high_row=area.high,
    )


def choose_row_size(low: int, high: int, rows: int, tick: int = 1) -> int:
    """Pick a "nice" row size (units of 1e-8) for a profile from ``low`` to ``high``.

    The candidates are ``tick * m`` for the nice integers ``m`` = 1, 2, 5, 10, 20, 25, 50,
    100, 200, 250, 500, ... (1, 2, 2.5, 5 x 10^j, kept only where integer). For the
    power-of-ten ticks Binance uses, these are exactly the nice sizes 1, 2, 2.5, 5 x 10^k
    units that are at least ``tick`` and a whole multiple of it; 2.5 ticks is left out on
    purpose, because a row 2.5 ticks high holds 2 and 3 price levels in turn and draws a
    saw-tooth into the profile. The result is the smallest candidate for which the profile
    has at most ``rows`` rows, counted as ``high // size - low // size + 1`` (the same row
    rule as :func:`volume_profile`, so alignment to row edges is included) -- hence as
    close to ``rows`` from below as the nice sizes allow.

    Raises ``ValueError`` when ``high < low``, ``rows < 1`` or ``tick < 1``.
    """
    if high < low:
        raise ValueError(f"high {high} is below low {low}")
    if rows < 1:
        raise ValueError(f"rows must be at least 1, got {rows}")
    if tick < 1:
        raise ValueError(f"tick must be at least 1 unit, got {tick}")
    return next(size for size in nice_row_sizes(tick) if high // size - low // size + 1 <= rows)


def nice_row_sizes(tick: int) -> Iterator[int]:
    """The candidate row sizes of :func:`choose_row_size`, ascending, without end: ``tick * m`` for
    ``m`` = 1, 2, 5, 10, 20, 25, 50, 100, ... (2.5 x 10^j only where it is an integer)."""
    yield from (tick, 2 * tick, 5 * tick)
    decade = 10
    while True:
        yield from (tick * decade, tick * 2 * decade, tick * (5 * decade // 2), tick * 5 * decade)
        decade *= 10


DEFAULT_ROWS = 100
MIN_TICKS_PER_ROW = 10


def infer_tick(prices: npt.NDArray[np.int64]) -> int:
    """The price step the trades show: the gcd of their prices (units of 1e-8), at least 1."""
    return max(1, int(np.gcd.reduce(prices))) if len(prices) else 1


def default_row_size(low: int, high: int, tick: int) -> int:
    """max(10 ticks, range / 100) rounded up to a nice multiple of the tick, as the original provider chose."""
    return max(MIN_TICKS_PER_ROW * tick, choose_row_size(low, high, DEFAULT_ROWS, tick))


def volume_nodes(profile: VolumeProfile, count: int = 5, reach: int = 2) -> tuple[list[ProfileRow], list[ProfileRow]]:
    """High- and low-volume nodes: rows strictly above (below) their `reach` neighbours each side.

    HVNs are such peaks above the mean row volume, largest first; LVNs such troughs below it,
    strictly inside the traded range, smallest first; at most `count` of each.
    """
    rows = profile.rows
    n = len(rows)
    mean = profile.total_volume / n
    high, low = [], []
    for i, row in enumerate(rows):
        around = [rows[j].volume for j in range(max(0, i - reach), min(n, i + reach + 1)) if j != i]
        if not around:
            continue
        if row.volume > mean and row.volume > max(around):
            high.append(row)
        if 0 < i < n - 1 and row.volume < mean and row.volume < min(around):
            low.append(row)
    high.sort(key=lambda r: (-r.volume, r.index))
    low.sort(key=lambda r: (r.volume, r.index))
    return high[:count], low[:count]


def liquidity_vacuums(profile: VolumeProfile, min_rows: int = 3, threshold: float = 0.2) -> list[LiquidityVacuum]:
    """Find the liquidity vacuums of a profile, widest first.

    A vacuum is a maximal run of at least ``min_rows`` consecutive rows, strictly between
    the lowest and the highest traded rows (the first and last rows of the profile), each
    with volume below ``threshold`` times the mean row volume, the mean taken over all rows
    of the profile, empty ones included. The comparison is exact
    (``volume * row_count < threshold * total_volume`` with ``threshold`` as a fraction; a
    float is read as the decimal its shortest repr spells, so ``0.2`` means 1/5).
    Order: more rows first; runs of equal width by price, lowest first.

    Raises ``ValueError`` when ``min_rows < 1`` or ``threshold`` is negative or not finite.
    """
    if min_rows < 1:
        raise ValueError(f"min_rows must be at least 1, got {min_rows}")
    limit = exact_fraction(threshold, "threshold")
    if limit < 0:
        raise ValueError(f"threshold must not be negative, got {threshold}")
    rows = profile.rows
    n = len(rows)
    total = profile.total_volume
    # volume < limit * total / n  <=>  volume * n * den < num * total
    num, den = limit.numerator, limit.denominator
    bound = num * total

    runs: list[tuple[int, int]] = []  # inclusive positions
    start: int | None = None
    for i in range(1, n - 1):
        thin = rows[i].volume * n * den < bound
        if thin and start is None:
            start = i
        elif not thin and start is not None:
            runs.append((start, i - 1))
            start = None
    if start is not None:
        runs.append((start, n - 2))

    vacuums = []
    for first, last in runs:
        width = last - first + 1
        if width < min_rows:
            continue
        volume = sum(row.volume for row in rows[first : last + 1])
        vacuums.append(
            LiquidityVacuum(
                price_low=rows[first].price_low,
                price_high=rows[last].price_high,
                rows=width,
                volume=volume,
                share=volume / total if total else 0.0,
            )
        )
    vacuums.sort(key=lambda v: (-v.rows, v.price_low))
    return vacuums


# --- helpers ---


def _int64_column(values: npt.ArrayLike, name: str) -> npt.NDArray[np.int64]:
    array = np.asarray(values)
    if array.size == 0 and array.dtype == np.float64:
        array = array.astype(np.int64)  # np.asarray([]) is float64
    if not np.issubdtype(array.dtype, np.integer):
        raise TypeError(f"{name} must be an integer column (units of 1e-8), got {array.dtype}")
    if array.dtype == np.uint64 and array.size and int(array.max()) > _INT64_MAX:
        raise ValueError(f"{name} exceeds the int64 range")
    return array.astype(np.int64, copy=False)


def exact_fraction(value: Any, name: str) -> Fraction:
    """``value`` as an exact fraction; a float is read as its shortest repr (0.2 -> 1/5)."""
    if isinstance(value, float):
        value = repr(value)
    try:
        return Fraction(value)
    except (TypeError, ValueError, OverflowError) as exc:
        raise ValueError(f"{name} must be a finite number, got {value!r}") from exc
