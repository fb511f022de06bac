"""Trades as columns, and the msgpack layout of one stored window.

A window value is a msgpack map of raw little-endian column bytes, so reading a range
is `np.frombuffer` per column instead of a Python object per trade. Merging windows
keeps each agg id once, which is what makes redelivery, late trades and backfill
idempotent.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import msgpack
import numpy as np
import numpy.typing as npt

from services.tape.trade import TradeRow

FORMAT_VERSION = 1

Int64Array = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


class WindowFormatError(ValueError):
    """A stored window value that this version cannot read."""


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
        agg_id, price, qty, first_id, last_id, time, maker = zip(*rows, strict=True)
        return cls(
            np.array(agg_id, dtype=np.int64),
            np.array(price, dtype=np.int64),
            np.array(qty, dtype=np.int64),
            np.array(first_id, dtype=np.int64),
            np.array(last_id, dtype=np.int64),
            np.array(time, dtype=np.int64),
            np.array(maker, dtype=np.bool_),
        ).sorted_unique()

    @classmethod
    def _of(cls, columns: Sequence[npt.NDArray[Any]]) -> TradeColumns:
        agg_id, price, qty, first_id, last_id, time, maker = columns
        return cls(agg_id, price, qty, first_id, last_id, time, maker)

    def take(self, index: npt.NDArray[np.intp] | npt.NDArray[np.bool_] | slice) -> TradeColumns:
        return TradeColumns._of([column[index] for column in self._columns()])

    def sorted_unique(self) -> TradeColumns:
        """Ascending by agg id, each agg id once (the first occurrence wins)."""
        if len(self) == 0:
            return self
        diffs = np.diff(self.agg_id)
        if bool((diffs > 0).all()):
            return self
        _, first = np.unique(self.agg_id, return_index=True)
        return self.take(first)

    def between(self, start_ms: int, end_ms: int) -> TradeColumns:
        """Trades with ``start_ms <= time < end_ms``."""
        mask = (self.time >= start_ms) & (self.time < end_ms)
        return self if bool(mask.all()) else self.take(mask)

    def _columns(self) -> tuple[npt.NDArray[np.generic], ...]:
        return (self.agg_id, self.price, self.qty, self.first_id, self.last_id, self.time, self.buyer_maker)

    @staticmethod
    def concat(parts: Sequence[TradeColumns]) -> TradeColumns:
        """Join parts and restore the agg-id order and uniqueness."""
        if not parts:
            return TradeColumns.empty()
        if len(parts) == 1:
            return parts[0]
        joined = TradeColumns(*(np.concatenate(cols) for cols in zip(*(p._columns() for p in parts), strict=False)))
        return joined.sorted_unique()


_NAMES = ("a", "p", "q", "f", "l", "T", "m")


def encode_window(columns: TradeColumns) -> bytes:
    body: dict[str, object] = {"v": FORMAT_VERSION, "n": len(columns)}
    for name, column in zip(_NAMES, columns._columns(), strict=True):
        body[name] = column.astype(column.dtype.newbyteorder("<"), copy=False).tobytes()
    return msgpack.packb(body, use_bin_type=True)  # type: ignore[no-any-return]


def decode_window(value: bytes) -> TradeColumns:
    return decode_windows([value])


def decode_windows(values: Sequence[bytes]) -> TradeColumns:
    """Many stored windows as one column set: each column's bytes joined, one `frombuffer` each."""
    try:
        bodies = [msgpack.unpackb(value, raw=False) for value in values]
        for body in bodies:
            if body.get("v") != FORMAT_VERSION:
                raise WindowFormatError(f"unknown window format version {body.get('v')!r}")
        raw = [b"".join(body[name] for body in bodies) for name in _NAMES]
        ints = [np.frombuffer(column, dtype="<i8").astype(np.int64, copy=False) for column in raw[:-1]]
        flags = np.frombuffer(raw[-1], dtype=np.bool_)
    except (KeyError, ValueError, TypeError, AttributeError, msgpack.ExtraData) as exc:
        raise WindowFormatError(f"unreadable window value: {exc}") from exc
    return TradeColumns._of([*ints, flags]).sorted_unique()


def merge_windows(stored: TradeColumns | None, incoming: TradeColumns) -> TradeColumns:
    """The stored window plus the incoming trades, each agg id once (the stored copy wins)."""
    if stored is None or len(stored) == 0:
        return incoming.sorted_unique()
    return TradeColumns.concat([stored, incoming])
