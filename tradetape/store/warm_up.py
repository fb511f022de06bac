"""A worker's cache filled with a symbol's newest segments before it serves.

Why: the first queries after a restart are mostly about recent data, and a fresh worker
paid for decoding every segment they touch (measured on a 24 h `bars` 1m answer over 16M
trades: 91-188 ms cold against 30-42 warm). Warming decodes, for the segments whose trades
reach into the newest `span_ms` of the stored tape (and one segment more, so a range ending a
little before the newest trade finds its oldest edge warm too), newest first: each one's 1-second bars
(and those rolled to minutes, as a footprint reads them), minute levels and histogram (what whole segments
of a range are read from) and its minute levels bucketed at the steps charts of the symbol ask for
(`warmed_level_steps`), then each one's trades (what a range's ragged edges are cut from). It stops at
the first value the cache cannot hold (`SegmentCache.warm`: warming never evicts and never exceeds the cache's
budget), and before reading a segment's trades whose columns (its summary's count) would not fit
in what the cache has left: a busy hour is never decoded only to be dropped. The young windows
are not cached by any read, so they are not warmed either. A corrupt value is left for the
query that meets it to report (`store_corrupt`), never a worker that does not start.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rocksdict import Rdict

from tradetape.store.codec import TRADE_BYTES
from tradetape.store.keys import (
    HISTOGRAM,
    MINUTE_LEVELS,
    SECOND_BARS,
    SEGMENT,
    SUMMARY,
    kind_prefix,
    prefix_end,
    timed_key,
)
from tradetape.store.layer import decode_minute_levels, decode_second_bars
from tradetape.store.layout import segment_span
from tradetape.store.reads import MINUTE_BARS, LayerVariant, bucketed_levels, cached_under
from tradetape.store.rocks import last_before, scan
from tradetape.store.sealed import StoreCorruptError, decoded
from tradetape.store.segment_cache import Decoded, SegmentCache
from tradetape.store.segments import SegmentSummary, decode_histogram, decode_stored_segment

_Warmable = tuple[tuple[str, Callable[[bytes], Decoded], LayerVariant[Any] | None], ...]
"""What is warmed: a kind of stored value, its decoding, and the variant of it cached (None: the value itself; a
variant is made from the value warmed before it, as a query makes it: `reads.LayerVariant`)."""
_AGGREGATES: _Warmable = (
    (SECOND_BARS, decode_second_bars, None),
    (SECOND_BARS, decode_second_bars, MINUTE_BARS),
    (MINUTE_LEVELS, decode_minute_levels, None),
    (HISTOGRAM, decode_histogram, None),
)
_TRADES: _Warmable = ((SEGMENT, decode_stored_segment, None),)

WARMED_ROW_FRACTIONS = (100_000, 100)
"""The span whose powers of ten a worker warms bucketed levels at: from a 100,000th to a 100th of the symbol's newest
price (BTCUSDT at 90,000: steps of 1, 10 and 100 USDT, every row size of whole USDT below 1,000; ETHUSDT at 3,500:
0.1, 1 and 10)."""


def warmed_level_steps(price: int) -> tuple[int, ...]:
    """The price steps (`level_step`: powers of ten, units of 1e-8) whose bucketed minute levels a worker warms for
    a symbol last traded at `price`: the powers of ten from `price / 100,000` to `price / 100`, without 1 (the
    plain levels). Why: the first footprint or profile with a row size otherwise buckets every minute level of its
    range (a day of BTCUSDT: ~900k levels, ~5 ms, more than the rest of the warm answer)."""
    finest, coarsest = (price // fraction for fraction in WARMED_ROW_FRACTIONS)
    steps = (10**power for power in range(1, 19))
    return tuple(step for step in steps if finest <= step <= coarsest)


@dataclass(frozen=True)
class Warmed:
    """What one symbol's warming did: segments in the span, corrupt values skipped, whether every value fitted."""

    segments: int
    complete: bool
    corrupt: int = 0


def newest_segments(db: Rdict, symbol: str, span_ms: int) -> list[SegmentSummary]:
    """The summaries of the segments holding trades of the newest `span_ms` (and a segment span more) of the stored
    segments, newest first."""
    summaries = kind_prefix(SUMMARY, symbol)
    last = last_before(db, summaries, prefix_end(summaries))
    if last is None or span_ms <= 0:
        return []
    span = segment_span(db)
    since = decoded(*last, SegmentSummary.decode).last_time - span_ms - span
    lower = timed_key(SUMMARY, symbol, max(since - since % span, 0))
    found = [decoded(key, value, SegmentSummary.decode) for key, value in scan(db, lower, prefix_end(summaries))]
    return [summary for summary in reversed(found) if summary.last_time >= since]


def warm_recent(db: Rdict, symbol: str, span_ms: int, cache: SegmentCache) -> Warmed:
    """Fill `cache` with the newest `span_ms` of `symbol`'s segments: their aggregates first, then their trades.

    A corrupt summary among the newest leaves the symbol unwarmed (its queries report it)."""
    try:
        segments = newest_segments(db, symbol, span_ms)
    except StoreCorruptError:
        return Warmed(0, complete=True, corrupt=1)
    corrupt = 0
    steps = warmed_level_steps(segments[0].max_price) if segments else ()
    aggregates = _AGGREGATES + tuple((MINUTE_LEVELS, decode_minute_levels, bucketed_levels(step)) for step in steps)
    for kinds in (aggregates, _TRADES):
        for summary in segments:
            if kinds is _TRADES and summary.trade_count * TRADE_BYTES > cache.max_bytes - cache.held_bytes:
                return Warmed(len(segments), complete=False, corrupt=corrupt)
            for kind, decode, variant in kinds:
                try:
                    made = decode if variant is None else variant.decoding(decode)
                    fitted = cache.warm(db, kind, symbol, [summary], made, *cached_under(variant))
                except StoreCorruptError:
                    corrupt += 1
                    continue
                if not fitted:
                    return Warmed(len(segments), complete=False, corrupt=corrupt)
    return Warmed(len(segments), complete=True, corrupt=corrupt)
