"""Voids: agg ids that belong to the sequence but carry no trade, kept apart from the trades.

Binance's invalidated duplicates (`tradetape.domain.trade.is_void`: price and quantity 0,
trade ids -1) complete the id sequence. The writer takes them out of every write and
keeps them under ``void:{SYMBOL}:{segment_start_ms:013d}``: the voids of one segment span
in the window value encoding (`tradetape.store.codec`, raw columns, a few dozen bytes a
void; a span holds none or a handful). Their ids go into the completeness index in the
same atomic write, so coverage counts them as held, never as a gap, and retention trims
them with the segments. Segments, windows, summaries and histograms never hold one, so
no analytic can see a void; coverage counts them, exports and imports carry them.
"""

from __future__ import annotations

from rocksdict import Rdict, WriteBatch

from tradetape.domain.columns import TradeColumns
from tradetape.store.codec import decode_window, decode_windows, encode_window, merge_windows
from tradetape.store.keys import VOID, kind_prefix, prefix_end, timed_key
from tradetape.store.rocks import scan
from tradetape.store.sealed import decoded, decoded_together
from tradetape.store.windows import split_by

TimeRange = tuple[int, int] | None


def void_key(symbol: str, segment_start_ms: int) -> bytes:
    return timed_key(VOID, symbol, segment_start_ms)


def merge_voids(db: Rdict, batch: WriteBatch, symbol: str, voids: TradeColumns, span_ms: int) -> None:
    """Add `voids` (ids the store does not hold) to the records of their segment spans, in `batch`."""
    for start, part in split_by(voids, voids.time - voids.time % span_ms):
        key = void_key(symbol, start)
        stored = db.get(key)
        held = decoded(key, stored, decode_window) if stored is not None else None
        batch.put(key, encode_window(merge_windows(held, part)))


def read_voids(db: Rdict, symbol: str, time_range: TimeRange, span_ms: int) -> TradeColumns:
    """The voids with ``start <= T < end`` (None: all), as Binance writes them, ascending by agg id."""
    prefix = kind_prefix(VOID, symbol)
    if time_range is None:
        lower, upper = prefix, prefix_end(prefix)
    else:
        start, end = time_range
        lower, upper = void_key(symbol, start - start % span_ms), void_key(symbol, end)
    items = scan(db, lower, upper)
    if not items:
        return TradeColumns.empty()
    voids = decoded_together(items, decode_windows, decode_window)
    return voids if time_range is None else voids.between(*time_range)


def trim_voids(db: Rdict, batch: WriteBatch, symbol: str, cutoff_ms: int, span_ms: int) -> tuple[int, int | None]:
    """Retention, in `batch`: drop the voids older than `cutoff_ms`; how many, and the lowest agg id kept."""
    prefix = kind_prefix(VOID, symbol)
    straddling = cutoff_ms - cutoff_ms % span_ms
    old = scan(db, prefix, void_key(symbol, straddling))
    removed = len(decoded_together(old, decode_windows, decode_window)) if old else 0
    if old:
        batch.delete_range(prefix, void_key(symbol, straddling))
    key = void_key(symbol, straddling)
    stored = db.get(key)
    if stored is not None:
        voids = decoded(key, stored, decode_window)
        kept = voids.take(voids.time >= cutoff_ms)
        if len(kept) < len(voids):
            removed += len(voids) - len(kept)
            if len(kept):
                batch.put(key, encode_window(kept))
            else:
                batch.delete(key)
    later = scan(db, key, prefix_end(prefix))
    remaining = decoded_together(later, decode_windows, decode_window) if later else TradeColumns.empty()
    remaining = remaining.take(remaining.time >= cutoff_ms)
    return removed, int(remaining.agg_id[0]) if len(remaining) else None
