"""Point of control and value area: the volume profile's rules (docs/design.md) over any column of row figures.

The volume profile grows its value area over row volumes, the footprint over each bar's (and
each session's) row volumes, the market profile over TPO counts: one rule, written once here.

- POC: the row with the largest figure; on a tie, the tied row nearest to the middle of the
  column ``(lowest position + highest position) / 2``, then the lower one;
- value area: start from the POC row; while its sum is below ``share * total``, add the larger
  of the next row above and the next row below (one row at a time; on a tie, the upper); when
  one side is exhausted, take the other. Compared exactly (``share`` a fraction).

`RowsWithValueArea` gives any profile-like answer (rows ascending by price, the POC and value
area as positions in them) its prices: POC edges and middle, VAH and VAL.
"""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction
from typing import NamedTuple, Protocol

__all__ = ["PricedRow", "RowsWithValueArea", "ValueArea", "half_units_text", "value_area_of"]


class ValueArea(NamedTuple):
    """Positions in a column of rows: the POC, and the value area's lowest and highest rows (inclusive)."""

    poc: int
    low: int
    high: int


def value_area_of(figures: list[int], share: Fraction) -> ValueArea:
    """The POC and the value area holding ``share`` of ``figures``' sum, by the rules above.

    Raises ``ValueError`` for an empty column.
    """
    if not figures:
        raise ValueError("no rows")
    poc = _poc_position(figures)
    low, high = _value_area_span(figures, poc, sum(figures), share)
    return ValueArea(poc, low, high)


def _poc_position(figures: list[int]) -> int:
    top = max(figures)
    if figures.count(top) == 1:  # the usual case, in C: a footprint asks once a bar, hundreds of times an answer
        return figures.index(top)
    last = len(figures) - 1
    # |2i - (lowest + highest)| with positions 0..last: distance to the middle, doubled.
    return min((i for i, v in enumerate(figures) if v == top), key=lambda i: (abs(2 * i - last), i))


def _value_area_span(figures: list[int], poc: int, total: int, share: Fraction) -> tuple[int, int]:
    num, den = share.numerator, share.denominator
    goal = num * total  # compare sum * den < num * total, exactly
    low = high = poc
    held = figures[poc]
    last = len(figures) - 1
    while held * den < goal:
        can_up = high < last
        can_down = low > 0
        if can_up and (not can_down or figures[high + 1] >= figures[low - 1]):
            high += 1
            held += figures[high]
        elif can_down:
            low -= 1
            held += figures[low]
        else:  # every row taken; only reachable with a share above 1, kept as a guard
            break
    return low, high


def half_units_text(twice_units: int) -> str:
    """``twice_units / 2`` units of 1e-8 as an exact price, positional, trailing zeros dropped (a row's middle, as
    replies spell it; a Decimal built and formatted back cost a footprint answer ~0.3 ms a day of 5-minute bars)."""
    sign = "-" if twice_units < 0 else ""
    whole, frac = divmod(abs(twice_units) * 5, 10**9)  # units of 1e-9
    if frac == 0:
        return f"{sign}{whole}"
    return f"{sign}{whole}.{frac:09d}".rstrip("0")


class PricedRow(Protocol):
    """A row ``[price_low, price_high)`` in units of 1e-8."""

    @property
    def price_low(self) -> int: ...

    @property
    def price_high(self) -> int: ...


class RowsWithValueArea:
    """The POC's and value area's prices of an answer holding ``rows`` and the positions of `value_area_of`."""

    __slots__ = ()
    rows: tuple[PricedRow, ...]
    """Ascending by price."""
    poc_row: int
    value_area_low_row: int
    value_area_high_row: int

    @property
    def poc_low(self) -> int:
        """Bottom edge of the POC row, units."""
        return self.rows[self.poc_row].price_low

    @property
    def poc_high(self) -> int:
        """Top edge of the POC row (exclusive), units."""
        return self.rows[self.poc_row].price_high

    @property
    def poc(self) -> Decimal:
        """Middle of the POC row as an exact price (not units), e.g. ``Decimal("87650.05")``.

        Has a 9th decimal place when the row size is an odd number of units. Built from a plain
        digit string, so ``str()`` gives positional notation for usual prices, but values below
        1e-6 print in exponent form: for JSON, `poc_text` (or ``format(poc, "f")``).
        """
        return Decimal(self.poc_text)

    @property
    def poc_text(self) -> str:
        """`poc` as replies spell it (positional, no trailing zeros), without building the Decimal."""
        return half_units_text(self.poc_low + self.poc_high)

    @property
    def vah(self) -> int:
        """Value-area high: top edge of the highest value-area row, units."""
        return self.rows[self.value_area_high_row].price_high

    @property
    def val(self) -> int:
        """Value-area low: bottom edge of the lowest value-area row, units."""
        return self.rows[self.value_area_low_row].price_low
