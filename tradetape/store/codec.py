"""The value codec of a stored window: a msgpack map of raw little-endian column bytes.

Reading a range is one `np.frombuffer` per column instead of a Python object per trade.
Keys are spelled in `tradetape.store.keys`; this module is the only one that knows how
a value is laid out, and its format version. The value is sealed (`tradetape.store.sealed`):
its checksum is checked before its body is read. USD-M's normal quantity is one more column,
``nq``, in the values of a window that holds any (other windows, spot's and COIN-M's, have no
such key and pay nothing; readers without it ignore it).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgpack
import numpy as np

from tradetape.domain.columns import BASE_COLUMNS, Int64Array, TradeColumns
from tradetape.domain.trade import NO_NORMAL_QTY
from tradetape.errors import FormatError
from tradetape.store.sealed import seal, unseal

FORMAT_VERSION = 1
TRADE_BYTES = 49
"""Bytes a trade takes in a window value (six int64 columns and a flag): a value of `n` trades is longer than 49 n."""


class WindowFormatError(FormatError):
    """A stored window value that this version cannot read."""


_NAMES = ("a", "p", "q", "f", "l", "T", "m", "nq")


def encode_window(columns: TradeColumns) -> bytes:
    body: dict[str, object] = {"v": FORMAT_VERSION, "n": len(columns)}
    for name, column in zip(_NAMES, columns.arrays(), strict=False):
        body[name] = column.astype(column.dtype.newbyteorder("<"), copy=False).tobytes()
    return seal(msgpack.packb(body, use_bin_type=True))


def decode_window(value: bytes) -> TradeColumns:
    return decode_windows([value])


def decode_windows(values: Sequence[bytes]) -> TradeColumns:
    """Many stored windows as one column set: each column's bytes joined, one `frombuffer` each."""
    try:
        bodies = [msgpack.unpackb(unseal(value), raw=False) for value in values]
        for body in bodies:
            if body.get("v") != FORMAT_VERSION:
                raise WindowFormatError(f"unknown window format version {body.get('v')!r}")
        raw = [b"".join(body[name] for body in bodies) for name in _NAMES[:BASE_COLUMNS]]
        ints = [_ints(column) for column in raw[:-1]]
        flags = np.frombuffer(raw[-1], dtype=np.bool_)
        normal = _normal(bodies) if any("nq" in body for body in bodies) else []
        if any(len(column) != len(flags) for column in (*ints, *normal)):
            raise WindowFormatError("window columns of different lengths")
    except (KeyError, ValueError, TypeError, AttributeError, msgpack.ExtraData) as exc:
        if isinstance(exc, WindowFormatError):
            raise
        raise WindowFormatError(f"unreadable window value: {exc}") from exc
    return TradeColumns.of_arrays([*ints, flags, *normal]).sorted_unique()


def _ints(raw: bytes) -> Int64Array:
    return np.frombuffer(raw, dtype="<i8").astype(np.int64, copy=False)


def _normal(bodies: list[Any]) -> list[Int64Array]:
    """The `nq` column of windows decoded together: `NO_NORMAL_QTY` for the trades of a window without one."""
    parts = [
        _ints(body["nq"]) if "nq" in body else np.full(len(body["m"]), NO_NORMAL_QTY, dtype=np.int64)
        for body in bodies
    ]
    return [np.concatenate(parts)]


def merge_windows(stored: TradeColumns | None, incoming: TradeColumns) -> TradeColumns:
    """The stored window plus the incoming trades, each agg id once (the stored copy wins)."""
    if stored is None or len(stored) == 0:
        return incoming.sorted_unique()
    return TradeColumns.concat([stored, incoming])
