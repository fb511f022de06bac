"""The worker's messages of a replay stream, as msgpack, and a chunk's trades as a polars DataFrame.

A message is a msgpack array whose first item says what it is:

- `[0, flow_subject, chunk, window, idle_ms]`: `ReplayStart`, the first message of a stream (`idle_ms`: the
  worker stops a stream whose window stays full this long without an ack);
- `[1, seq, count, agg_id, price, qty, first_id, last_id, time, buyer_maker]`: `ReplayChunk`, each
  column the raw little-endian bytes of its numpy array (int64, the last bool), prices and
  quantities in units of 1e-8;
- `[2, chunks, trades]`: `ReplayEnd`, how many chunks and trades were sent.

Why these bytes: measured in bench/replay.py against Arrow IPC over the same NATS server (encode,
send, receive, decode to the same DataFrame), msgpack of raw columns was faster in 6 runs of 7
(3.97-4.85M against 1.97-2.21M trades/s on a day of 2M trades in the last two), with 490 KB a
10,000-trade chunk against IPC's 803 KB (an exact decimal takes 16 bytes in Arrow).
Every message is hostile until checked: its size bounds what msgpack may allocate, every column's
length must be its count times its width, a bool byte must be 0 or 1, and the trades must run in
`(time, agg id)` order; anything else is `ReplayMessageError`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import msgpack
import numpy as np
import numpy.typing as npt
import polars as pl
import pyarrow as pa

from tradetape.api.frames import DECIMAL
from tradetape.domain.columns import TradeColumns
from tradetape.errors import FormatError

START, CHUNK, END = 0, 1, 2
COLUMNS = 7
TRADE_BYTES = 6 * 8 + 1
"""Bytes a trade takes in a chunk: six int64 columns and a bool."""
MESSAGE_OVERHEAD = 64
"""msgpack's framing of a chunk around its columns, rounded up."""
MAX_SUBJECT = 256


class ReplayMessageError(FormatError):
    """A replay message that is not one a worker writes."""


@dataclass(frozen=True, slots=True)
class ReplayStart:
    flow_subject: str
    chunk: int
    window: int
    idle_ms: int


@dataclass(frozen=True, slots=True)
class ReplayChunk:
    seq: int
    trades: TradeColumns


@dataclass(frozen=True, slots=True)
class ReplayEnd:
    chunks: int
    trades: int


def chunk_bytes(trades: int) -> int:
    """The size of a chunk of `trades` trades, at most."""
    return MESSAGE_OVERHEAD + trades * TRADE_BYTES


def encode_start(start: ReplayStart) -> bytes:
    return _packed([START, start.flow_subject, start.chunk, start.window, start.idle_ms])


def encode_chunk(seq: int, trades: TradeColumns) -> bytes:
    """Memoryviews, not `tobytes()`: measured, packing fresh bytes objects cost 25 times as much."""
    columns = [np.ascontiguousarray(column).data for column in trades.arrays()]
    return _packed([CHUNK, seq, len(trades), *columns])


def encode_end(end: ReplayEnd) -> bytes:
    return _packed([END, end.chunks, end.trades])


def _packed(items: list[object]) -> bytes:
    packed: bytes = msgpack.packb(items)
    return packed


def decode_message(data: bytes, max_trades: int) -> ReplayStart | ReplayChunk | ReplayEnd:
    """A worker's message, checked; `ReplayMessageError` for anything else."""
    if len(data) > chunk_bytes(max_trades):
        raise ReplayMessageError(f"a message of {len(data)} bytes, above a chunk of {max_trades} trades")
    try:
        items = msgpack.unpackb(
            data, max_bin_len=max_trades * 8, max_str_len=MAX_SUBJECT, max_array_len=3 + COLUMNS, max_map_len=0
        )
    except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
        raise ReplayMessageError(f"not a replay message: {exc}") from None
    if not isinstance(items, list) or not items or type(items[0]) is not int:
        raise ReplayMessageError("not a replay message: no kind")
    kind, rest = items[0], items[1:]
    if kind == START and len(rest) == 4 and isinstance(rest[0], str) and _ints(rest[1:]):
        return ReplayStart(rest[0], rest[1], rest[2], rest[3])
    if kind == END and len(rest) == 2 and _ints(rest):
        return ReplayEnd(rest[0], rest[1])
    if kind == CHUNK and len(rest) == 2 + COLUMNS and _ints(rest[:2]):
        return ReplayChunk(rest[0], _columns(rest[1], rest[2:], max_trades))
    raise ReplayMessageError(f"not a replay message: kind {kind} with {len(rest)} items")


def _ints(values: Sequence[object]) -> bool:
    return all(type(value) is int and value >= 0 for value in values)


def _columns(count: int, raw: Sequence[object], max_trades: int) -> TradeColumns:
    if not 0 < count <= max_trades:
        raise ReplayMessageError(f"a chunk of {count} trades (1..{max_trades})")
    widths = (8,) * (COLUMNS - 1) + (1,)
    if not all(isinstance(r, bytes) and len(r) == count * w for r, w in zip(raw, widths, strict=True)):
        raise ReplayMessageError(f"a chunk of {count} trades whose columns are not {count} values each")
    # Copies: a column over the message's bytes would be read-only, which polars copies value by value.
    ints = [np.frombuffer(r, dtype="<i8").astype(np.int64) for r in raw[:-1]]  # type: ignore[call-overload]
    flags: npt.NDArray[np.uint8] = np.frombuffer(raw[-1], dtype=np.uint8)  # type: ignore[call-overload]
    if bool((flags > 1).any()):
        raise ReplayMessageError("a buyer_maker byte that is neither 0 nor 1")
    trades = TradeColumns.of_arrays([*ints, flags.astype(np.bool_)])
    if not in_replay_order(trades):
        raise ReplayMessageError("a chunk whose trades are not in (time, agg id) order")
    return trades


def in_replay_order(trades: TradeColumns) -> bool:
    """Whether `trades` run strictly ascending by `(time, agg id)`: the order a stream sends."""
    if len(trades) < 2:
        return True
    dt = np.diff(trades.time)
    return bool(((dt > 0) | ((dt == 0) & (np.diff(trades.agg_id) > 0))).all())


def replay_order(trades: TradeColumns) -> TradeColumns:
    """`trades` (ascending by agg id) in `(time, agg id)` order: the same unless a later id has an earlier time."""
    if len(trades) < 2 or bool((np.diff(trades.time) >= 0).all()):
        return trades
    return trades.take(np.lexsort((trades.agg_id, trades.time)))


def trade_frame(
    trades: TradeColumns, symbols: Sequence[str], which: npt.NDArray[np.intp] | None = None
) -> pl.DataFrame:
    """`trades` as a DataFrame: symbol, agg_id, price and qty (exact `Decimal(38, 8)`, as every `to_polars()`),
    first_id, last_id, time (UTC, in µs as `pl.from_epoch` gives it), buyer_maker.

    `which` picks each row's symbol from `symbols`; None: the first.
    """
    count = len(trades)
    names = pl.Series("symbol", list(symbols), dtype=pl.String)
    symbol = names.new_from_index(0, count) if which is None else names.gather(which)
    return pl.DataFrame(
        [
            symbol,
            pl.Series("agg_id", trades.agg_id),
            _decimal("price", trades.price),
            _decimal("qty", trades.qty),
            pl.Series("first_id", trades.first_id),
            pl.Series("last_id", trades.last_id),
            pl.Series("time", trades.time * 1000).cast(pl.Datetime("us", "UTC")),
            pl.Series("buyer_maker", trades.buyer_maker),
        ]
    )


def _decimal(name: str, units: npt.NDArray[np.int64]) -> pl.Series:
    """Units of 1e-8 as an exact decimal column: the int64s widened to Arrow's 128-bit decimal, no arithmetic."""
    wide = np.empty((len(units), 2), dtype=np.int64)
    wide[:, 0] = units
    wide[:, 1] = units >> 63
    kind = pa.decimal128(DECIMAL.precision or 38, DECIMAL.scale)
    return pl.Series(name, pa.Array.from_buffers(kind, len(units), [None, pa.py_buffer(wide)]))
