"""Price levels: trades aggregated per distinct price, the figures a volume profile is built from.

The store keeps a segment's levels as its histogram (`tradetape.store.segments` encodes them),
the analytics merge them with the levels of a range's edges, and live updates carry them per
second; all exact int64 sums, so a profile over stored histograms equals one over the trades.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tradetape.domain.columns import BoolArray, Int64Array, TradeColumns

_INT64_MAX = 2**63 - 1
_FLOAT_EXACT = 2**53


def common_divisor(values: Int64Array) -> int:
    """The greatest common divisor of `values` (the step they move in), at least 1."""
    divisor = int(np.gcd.reduce(np.abs(values))) if len(values) else 0
    return divisor or 1


@dataclass(frozen=True, slots=True)
class PriceLevels:
    """Trades aggregated per distinct price, ascending by price (units of 1e-8).

    Volume is base quantity; buy volume is taker-buy (``m`` false). Sums are exact int64.
    """

    price: Int64Array
    volume: Int64Array
    buy_volume: Int64Array
    trade_count: Int64Array

    def __len__(self) -> int:
        return len(self.price)

    @classmethod
    def empty(cls) -> PriceLevels:
        empty = np.zeros(0, dtype=np.int64)
        return cls(empty, empty, empty, empty)

    @classmethod
    def of_trades(cls, columns: TradeColumns, where: BoolArray | None = None) -> PriceLevels | None:
        """The levels of `columns` (those `where` is true); None if a sum could leave int64 (then read the trades).

        `where` spares a range's edge the copy of all seven columns that `between` makes.
        """
        price, qty, maker = columns.price, columns.qty, columns.buyer_maker
        if where is not None:
            price, qty, maker = price[where], qty[where], maker[where]
        if len(price) == 0:
            return cls.empty()
        if int(qty.max()) * len(qty) > _INT64_MAX:
            return None
        return cls._grouped(price, qty, np.where(maker, 0, qty), np.ones(len(qty), dtype=np.int64))

    @classmethod
    def of_levels(
        cls, price: Int64Array, volume: Int64Array, buy: Int64Array, count: Int64Array
    ) -> PriceLevels | None:
        """Levels given per (something, price), e.g. per minute, summed per price; None if a sum could leave int64."""
        if len(price) == 0:
            return cls.empty()
        if int(volume.max()) * len(volume) > _INT64_MAX:
            return None
        return cls._grouped(price, volume, buy, count)

    @classmethod
    def merge(cls, parts: list[PriceLevels]) -> PriceLevels | None:
        """Levels of several parts as one; None if a sum could leave int64."""
        parts = [part for part in parts if len(part)]
        if not parts:
            return cls.empty()
        if len(parts) == 1:
            return parts[0]
        if sum(int(part.volume.max()) for part in parts) > _INT64_MAX:
            return None
        joined = [np.concatenate(cols) for cols in zip(*(p.arrays() for p in parts), strict=True)]
        return cls._grouped(*joined)

    @classmethod
    def _grouped(cls, price: Int64Array, volume: Int64Array, buy: Int64Array, count: Int64Array) -> PriceLevels:
        low, high = int(price.min()), int(price.max())
        tick = common_divisor(price - low)
        span = (high - low) // tick + 1
        if span <= 4 * len(price) + 1024:
            # Dense slots on the traded tick grid: no sort, one scatter-add per column.
            slot = (price - low) // tick
            if int(volume.sum()) < _FLOAT_EXACT:
                # float64 sums of integers below 2^53 are exact, and bincount is the fastest scatter-add.
                sums = [np.bincount(slot, weights=c, minlength=span).astype(np.int64) for c in (volume, buy, count)]
            else:
                sums = [np.zeros(span, dtype=np.int64) for _ in range(3)]
                for total, column in zip(sums, (volume, buy, count), strict=True):
                    np.add.at(total, slot, column)
            held = np.flatnonzero(sums[2])
            return cls(low + held.astype(np.int64) * tick, *(total[held] for total in sums))
        order = np.argsort(price, kind="stable")
        sorted_price = price[order]
        starts = np.flatnonzero(np.r_[True, np.diff(sorted_price) != 0])
        grouped = [np.add.reduceat(column[order], starts) for column in (volume, buy, count)]
        return cls(sorted_price[starts], *grouped)

    def arrays(self) -> tuple[Int64Array, Int64Array, Int64Array, Int64Array]:
        return (self.price, self.volume, self.buy_volume, self.trade_count)
