"""The bulk-import contract between an importing tool and the persist shard that owns a symbol.

RocksDB has one writer per shard, so while persist runs, history reaches the store
through it: a request on ``tape.persist.import.<SYMBOL>`` carries one batch of trades in
the segment encoding (`tradetape.store.segments`, ~4 bytes a trade, so a batch of
100,000 trades is far below NATS's 1 MiB max payload); persist writes it with
`ShardWriter.import_trades` in one atomic write and answers the counts, or an error.

A file goes as its first and last half-batches in one batch, then the batches between: an
import cut short at any point leaves a hole between ids the store holds, which the
completeness index lists as a gap, never a range that looks complete.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import msgpack
import orjson
from pydantic import BaseModel

from tradetape.domain.columns import TradeColumns
from tradetape.errors import InputError
from tradetape.store import SegmentFormatError, decode_segment, encode_segment

BATCH_FORMAT = 1
BATCH_TRADES = 100_000
"""The most trades one batch may hold: persist refuses a batch that claims more before decoding it."""
MAX_SOURCE_CHARS = 1000


class BatchFormatError(InputError):
    """A bulk-import request body that is not a batch of this format."""


class ImportReply(BaseModel):
    """Persist's answer to one batch: counts, or an error (`code`: conflict, invalid, store, busy)."""

    added: int = 0
    duplicates: int = 0
    error_code: str | None = None
    error: str | None = None
    agg_id: int | None = None
    """For a conflict: the agg id stored with different contents."""

    def encode(self) -> bytes:
        return orjson.dumps(self.model_dump(exclude_none=True))


def encode_batch(source: str, trades: TradeColumns) -> bytes:
    body: dict[str, Any] = {"v": BATCH_FORMAT, "source": source, "trades": encode_segment(trades)}
    return msgpack.packb(body, use_bin_type=True)  # type: ignore[no-any-return]


def decode_batch(data: bytes) -> tuple[str, TradeColumns]:
    """A request body back into its source and trades; `BatchFormatError` if it is not a batch.

    Nothing is believed before it is checked: msgpack allocates no more than the body holds,
    and the trades' header may claim at most `BATCH_TRADES` trades, which the bytes must
    then prove (`decode_segment`), so a batch never costs more than a full legal one.
    """
    try:
        body = msgpack.unpackb(data, raw=False)
        if not isinstance(body, dict) or body.get("v") != BATCH_FORMAT:
            raise BatchFormatError("not a bulk-import batch of format 1")
        source, trades = body["source"], body["trades"]
        if not isinstance(source, str) or len(source) > MAX_SOURCE_CHARS or not isinstance(trades, bytes):
            raise BatchFormatError(f"a batch holds a source name (at most {MAX_SOURCE_CHARS} characters) and bytes")
        return source, decode_segment(trades, max_trades=BATCH_TRADES)
    except (msgpack.ExtraData, msgpack.FormatError, msgpack.StackError, ValueError, KeyError, TypeError) as exc:
        if isinstance(exc, BatchFormatError):
            raise
        if isinstance(exc, SegmentFormatError):
            raise BatchFormatError(f"unreadable trades: {exc}") from None
        raise BatchFormatError(f"unreadable batch: {exc}") from None


def batches(trades: TradeColumns, size: int = BATCH_TRADES) -> Iterator[TradeColumns]:
    """`trades` (ascending by agg id) in batches of at most `size`: first and last halves together, then the rest."""
    n = len(trades)
    if n <= size:
        if n:
            yield trades
        return
    head = size // 2
    tail_start = n - (size - head)
    yield TradeColumns.concat([trades.take(slice(0, head)), trades.take(slice(tail_start, n))])
    for start in range(head, tail_start, size):
        yield trades.take(slice(start, min(start + size, tail_start)))
