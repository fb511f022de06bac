"""Finding a trade by agg id: where in time a gap of the completeness index lies.

The store is keyed by time, but a gap is a range of agg ids. Agg ids rise with trade
time, so the segment summaries (a few dozen bytes each, one per hour) say which segment
holds an id; only that segment is decoded. Works on the writer's database or a secondary.
"""

from __future__ import annotations

from rocksdict import Rdict

from tradetape.store.codec import decode_windows
from tradetape.store.keys import SEGMENT, SUMMARY, WINDOW, kind_prefix, prefix_end, timed_key
from tradetape.store.rocks import scan
from tradetape.store.segments import SEGMENT_MS, SegmentSummary, decode_segment
from tradetape.store.voids import read_voids


def time_of_id(db: Rdict, symbol: str, agg_id: int) -> int | None:
    """The trade time of `agg_id` if the store holds it (as a trade or a void), else None."""
    summaries = kind_prefix(SUMMARY, symbol)
    for _, value in scan(db, summaries, prefix_end(summaries)):
        summary = SegmentSummary.decode(value)
        if summary.first_id <= agg_id <= summary.last_id:
            stored = db.get(timed_key(SEGMENT, symbol, summary.start))
            if stored is not None:
                trades = decode_segment(stored)
                hit = trades.agg_id == agg_id
                if bool(hit.any()):
                    return int(trades.time[hit][0])
    windows = kind_prefix(WINDOW, symbol)
    values = [value for _, value in scan(db, windows, prefix_end(windows))]
    if values:
        trades = decode_windows(values)
        hit = trades.agg_id == agg_id
        if bool(hit.any()):
            return int(trades.time[hit][0])
    voids = read_voids(db, symbol, None, SEGMENT_MS)
    hit = voids.agg_id == agg_id
    return int(voids.time[hit][0]) if bool(hit.any()) else None


def gap_times(db: Rdict, symbol: str, from_id: int, to_id: int) -> tuple[int, int] | None:
    """The times of the stored trades just before and just after the gap ``[from_id, to_id]`` (None: unknown)."""
    before, after = time_of_id(db, symbol, from_id - 1), time_of_id(db, symbol, to_id + 1)
    if before is None or after is None:
        return None
    return before, after
