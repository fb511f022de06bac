"""Finding a trade by agg id: where in time a gap of the completeness index lies.

The store is keyed by time, but a gap is a range of agg ids. Agg ids rise with trade
time, so the segment summaries (a few dozen bytes each, one per hour) say which segment
holds an id; only that segment is decoded. Works on the writer's database or a secondary.
"""

from __future__ import annotations

from rocksdict import Rdict

from tradetape.store.codec import decode_window, decode_windows
from tradetape.store.keys import SEGMENT, SUMMARY, WINDOW, kind_prefix, prefix_end, timed_key
from tradetape.store.layout import segment_span
from tradetape.store.rocks import scan
from tradetape.store.sealed import decoded, decoded_together
from tradetape.store.segments import SegmentSummary, decode_stored_segment
from tradetape.store.voids import read_voids


def time_of_id(db: Rdict, symbol: str, agg_id: int) -> int | None:
    """The trade time of `agg_id` if the store holds it (as a trade or a void), else None."""
    span = segment_span(db)
    summaries = kind_prefix(SUMMARY, symbol)
    for key, value in scan(db, summaries, prefix_end(summaries)):
        summary = decoded(key, value, SegmentSummary.decode)
        if summary.first_id <= agg_id <= summary.last_id:
            segment_key = timed_key(SEGMENT, symbol, summary.start)
            stored = db.get(segment_key)
            if stored is not None:
                trades = decoded(segment_key, stored, decode_stored_segment)
                hit = trades.agg_id == agg_id
                if bool(hit.any()):
                    return int(trades.time[hit][0])
    windows = kind_prefix(WINDOW, symbol)
    items = scan(db, windows, prefix_end(windows))
    if items:
        trades = decoded_together(items, decode_windows, decode_window)
        hit = trades.agg_id == agg_id
        if bool(hit.any()):
            return int(trades.time[hit][0])
    voids = read_voids(db, symbol, None, span)
    hit = voids.agg_id == agg_id
    return int(voids.time[hit][0]) if bool(hit.any()) else None


def gap_times(db: Rdict, symbol: str, from_id: int, to_id: int) -> tuple[int, int] | None:
    """The times of the stored trades just before and just after the gap ``[from_id, to_id]`` (None: unknown)."""
    before, after = time_of_id(db, symbol, from_id - 1), time_of_id(db, symbol, to_id + 1)
    if before is None or after is None:
        return None
    return before, after
