"""Trades as columns: one numpy array per field, ascending by agg id, each agg id once.

Every computation over the tape works on these arrays, never on a Python object per
trade; keeping each agg id once is what makes redelivery, late trades and backfill
idempotent.

USD-M's normal quantity (`nq`, without RPI orders) is an optional eighth column: None when
no trade of the set carries one (spot, COIN-M: they pay nothing for it), else one value a
trade, `NO_NORMAL_QTY` where a trade came without (a USD-M trade from a dump). `normal()`
is the same trades with their normal quantities as `qty`, which is how every volume-based
answer is computed over `quantity: "normal"`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from tradetape.domain.trade import NO_NORMAL_QTY, TradeRow, is_void
from tradetape.errors import RequestError

Int64Array = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
Quantity = Literal["all", "normal"]
"""What a volume-based answer sums: each trade's quantity `q`, or its normal quantity `nq` (USD-M)."""
BASE_COLUMNS = 7
"""The columns every set has (`arrays()` adds the normal quantity after them when a set has one)."""


class NormalQuantityUnknown(RequestError):
    """Quantity "normal" asked over trades of which some carry no `nq`: there is no exact answer to give."""

    def __init__(self, missing: int | None = None, total: int | None = None) -> None:
        which = "trades" if missing is None else f"{missing} of {total} trades"
        super().__init__(
            f'quantity "normal" needs every trade\'s nq (quantity without RPI orders), and {which} in the range'
            " have none (USD-M trades imported from Binance's dumps, which carry no nq, or sent before nq existed):"
            ' ask quantity "all", or a range without them'
        )


@dataclass(frozen=True, slots=True)
class TradeColumns:
    """Trades of one symbol, ascending by agg id, prices and quantities in units of 1e-8."""

    agg_id: Int64Array
    price: Int64Array
    qty: Int64Array
    first_id: Int64Array
    last_id: Int64Array
    time: Int64Array
    buyer_maker: BoolArray
    normal_qty: Int64Array | None = None
    """USD-M's `nq` per trade (`NO_NORMAL_QTY` where a trade has none); None when no trade has one."""

    def __len__(self) -> int:
        return len(self.agg_id)

    @classmethod
    def empty(cls) -> TradeColumns:
        return cls.from_rows(())

    @classmethod
    def from_rows(cls, rows: Sequence[TradeRow] | Iterable[TradeRow]) -> TradeColumns:
        rows = list(rows)
        if not rows:
            empty = np.empty(0, dtype=np.int64)
            return cls(empty, empty, empty, empty, empty, empty, np.empty(0, dtype=np.bool_))
        agg_id, price, qty, first_id, last_id, time, maker, normal = zip(*rows, strict=True)
        normal_qty = np.array(normal, dtype=np.int64)
        return cls(
            np.array(agg_id, dtype=np.int64),
            np.array(price, dtype=np.int64),
            np.array(qty, dtype=np.int64),
            np.array(first_id, dtype=np.int64),
            np.array(last_id, dtype=np.int64),
            np.array(time, dtype=np.int64),
            np.array(maker, dtype=np.bool_),
            normal_qty if bool((normal_qty != NO_NORMAL_QTY).any()) else None,
        ).sorted_unique()

    @classmethod
    def of_arrays(cls, columns: Sequence[npt.NDArray[Any]]) -> TradeColumns:
        """Seven columns (`arrays()`' order), or eight with the normal quantity."""
        agg_id, price, qty, first_id, last_id, time, maker, *normal = columns
        return cls(agg_id, price, qty, first_id, last_id, time, maker, normal[0] if normal else None)

    def take(self, index: npt.NDArray[np.intp] | npt.NDArray[np.bool_] | slice) -> TradeColumns:
        return TradeColumns.of_arrays([column[index] for column in self.arrays()])

    def sorted_unique(self) -> TradeColumns:
        """Ascending by agg id, each agg id once (the first occurrence wins)."""
        if len(self) == 0:
            return self
        diffs = np.diff(self.agg_id)
        if bool((diffs > 0).all()):
            return self
        _, first = np.unique(self.agg_id, return_index=True)
        return self.take(first)

    def voids(self) -> BoolArray:
        """Which rows are void rows (`tradetape.domain.trade.is_void`): the store keeps them apart."""
        return is_void(self.price, self.qty, self.first_id, self.last_id)

    def within(self, start_ms: int, end_ms: int) -> BoolArray:
        """Which trades have ``start_ms <= time < end_ms``."""
        return (self.time >= start_ms) & (self.time < end_ms)

    def between(self, start_ms: int, end_ms: int) -> TradeColumns:
        """Trades with ``start_ms <= time < end_ms``."""
        mask = self.within(start_ms, end_ms)
        return self if bool(mask.all()) else self.take(mask)

    def arrays(self) -> tuple[npt.NDArray[np.generic], ...]:
        """The seven columns, and the normal quantity after them when the set has one."""
        base = (self.agg_id, self.price, self.qty, self.first_id, self.last_id, self.time, self.buyer_maker)
        return base if self.normal_qty is None else (*base, self.normal_qty)

    def with_normal(self) -> TradeColumns:
        """The same set with a normal-quantity column (`NO_NORMAL_QTY` throughout if it had none)."""
        if self.normal_qty is not None:
            return self
        return TradeColumns.of_arrays([*self.arrays(), np.full(len(self), NO_NORMAL_QTY, dtype=np.int64)])

    def normal_missing(self) -> int:
        """How many trades carry no normal quantity."""
        return len(self) if self.normal_qty is None else int((self.normal_qty == NO_NORMAL_QTY).sum())

    def normal(self) -> TradeColumns:
        """The same trades with `qty` their normal quantity (prices, sides, ids and counts unchanged);
        `NormalQuantityUnknown` if a trade has none."""
        missing = self.normal_missing()
        if missing:
            raise NormalQuantityUnknown(missing, len(self))
        if self.normal_qty is None:  # no trades at all
            return self
        return TradeColumns(self.agg_id, self.price, self.normal_qty, self.first_id, self.last_id, self.time,
                            self.buyer_maker, self.normal_qty)  # fmt: skip

    @staticmethod
    def concat(parts: Sequence[TradeColumns]) -> TradeColumns:
        """Join parts and restore the agg-id order and uniqueness.

        Parts are joined in the order of their first agg id, so disjoint sorted parts (a
        range's segments and windows) come out sorted and skip the sort: measured, the
        sort was half of a 24 h read of 2M trades.
        """
        parts = [part for part in parts if len(part)]
        if not parts:
            return TradeColumns.empty()
        if len(parts) == 1:
            return parts[0]
        parts.sort(key=lambda part: int(part.agg_id[0]))
        if any(part.normal_qty is not None for part in parts):
            parts = [part.with_normal() for part in parts]
        columns = zip(*(part.arrays() for part in parts), strict=True)
        joined = TradeColumns.of_arrays([np.concatenate(column) for column in columns])
        return joined.sorted_unique()
