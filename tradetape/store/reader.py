"""Reading the tape back: trades, coverage and price levels over any range.

One process per shard writes (the primary); every other process reads the same
directory as a RocksDB secondary instance, which sees the writer's new data after
`catch_up()`. A range read touches the summaries of the segments it spans, uses them
whole where a segment lies inside the range, and decodes trades only where it must: the
two edge segments and the young windows not yet rolled up (layout:
`tradetape.store.segments`). Coverage of the whole tape reads only the completeness
index and the first and last entries.
"""

from __future__ import annotations

import logging
import math
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from rocksdict import AccessType, Rdict

from tradetape.domain.columns import TradeColumns
from tradetape.domain.gaps import Coverage
from tradetape.store.codec import decode_windows
from tradetape.store.index import IdRuns
from tradetape.store.keys import (
    HISTOGRAM,
    SEGMENT,
    SUMMARY,
    WINDOW,
    index_key,
    kind_prefix,
    prefix_end,
    timed_key,
    window_key_range,
)
from tradetape.store.rocks import StoreNotFoundError, last_before, scan, scan_first, store_options
from tradetape.store.segment_cache import SegmentCache
from tradetape.store.segments import SEGMENT_MS, PriceLevels, SegmentSummary, decode_segment
from tradetape.store.voids import read_voids
from tradetape.store.writer import read_layout

logger = logging.getLogger(__name__)

TimeRange = tuple[int, int] | None
T = TypeVar("T")


class SecondaryStore:
    """A read-only view of a shard's database that follows the writer."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._secondary_dir: str | None = None
        self._db: Rdict | None = None
        self._caught_up_at = -math.inf

    def _open(self) -> Rdict:
        if self._db is None:
            if not (self._path / "CURRENT").exists():
                raise StoreNotFoundError(f"no tape database in {self._path} yet")
            self._secondary_dir = tempfile.mkdtemp(prefix="tradetape-secondary-")
            options = store_options()
            options.create_if_missing(False)
            options.set_max_open_files(-1)
            self._db = Rdict(str(self._path), options, access_type=AccessType.secondary(self._secondary_dir))
        return self._db

    def catch_up(self, *, unless_within_s: float = 0.0) -> Rdict:
        """The database, brought up to the writer's latest durable state.

        With `unless_within_s`, a catch-up that finished less than that long ago stands
        (each costs 1-2 ms reading the writer's manifest and log, however little changed).
        """
        db = self._open()
        if time.monotonic() - self._caught_up_at >= unless_within_s:
            db.try_catch_up_with_primary()
            self._caught_up_at = time.monotonic()
        return db

    def close(self) -> None:
        db, self._db = self._db, None
        if db is not None:
            db.close()
        if self._secondary_dir is not None:
            shutil.rmtree(self._secondary_dir, ignore_errors=True)
            self._secondary_dir = None


@dataclass(frozen=True)
class _Plan:
    """The keys a range read touches: segments inside the range, segments at its edges, windows."""

    inside: list[SegmentSummary]
    edges: list[SegmentSummary]
    windows: list[bytes]


def _plan(db: Rdict, symbol: str, time_range: TimeRange) -> _Plan:
    span = _segment_ms(db)
    summaries = kind_prefix(SUMMARY, symbol)
    if time_range is None:
        found = scan(db, summaries, prefix_end(summaries))
        windows = kind_prefix(WINDOW, symbol)
        values = [value for _, value in scan(db, windows, prefix_end(windows))]
        return _Plan([SegmentSummary.decode(value) for _, value in found], [], values)
    start, end = time_range
    lower = timed_key(SUMMARY, symbol, start - start % span)
    inside: list[SegmentSummary] = []
    edges: list[SegmentSummary] = []
    for _, value in scan(db, lower, timed_key(SUMMARY, symbol, end)):
        summary = SegmentSummary.decode(value)
        if summary.last_time < start or summary.first_time >= end:
            continue
        (inside if start <= summary.first_time and summary.last_time < end else edges).append(summary)
    lower_key, upper_key = window_key_range(symbol, start, end)
    return _Plan(inside, edges, [value for _, value in scan(db, lower_key, upper_key)])


def _segment_ms(db: Rdict) -> int:
    layout = read_layout(db)
    return layout[1] if layout is not None else SEGMENT_MS


def _bodies(
    db: Rdict, symbol: str, summaries: list[SegmentSummary], cache: SegmentCache | None = None
) -> list[TradeColumns]:
    if not summaries:
        return []
    if cache is not None:
        return cache.bodies(db, symbol, summaries)
    values: list[bytes | None] = db.get([timed_key(SEGMENT, symbol, s.start) for s in summaries])  # type: ignore[assignment]
    return [decode_segment(value) for value in values if value is not None]


def _edge_trades(
    db: Rdict, symbol: str, plan: _Plan, time_range: TimeRange, cache: SegmentCache | None = None
) -> TradeColumns:
    """The trades of the range that no whole-segment summary stands for, trimmed to the range."""
    edges = TradeColumns.concat(_edge_parts(db, symbol, plan, cache))
    return edges if time_range is None else edges.between(*time_range)


def _edge_parts(db: Rdict, symbol: str, plan: _Plan, cache: SegmentCache | None) -> list[TradeColumns]:
    """The edge segments' trades and the young windows', untrimmed, each part on its own."""
    parts = _bodies(db, symbol, plan.edges, cache)
    if plan.windows:
        parts.append(decode_windows(plan.windows))
    return parts


def read_trades(db: Rdict, symbol: str, start_ms: int, end_ms: int) -> TradeColumns:
    """All stored trades of `symbol` with ``start_ms <= T < end_ms``, ascending by agg id."""
    return _read(db, symbol, (start_ms, end_ms))


def read_all_trades(db: Rdict, symbol: str) -> TradeColumns:
    return _read(db, symbol, None)


def _read(db: Rdict, symbol: str, time_range: TimeRange, cache: SegmentCache | None = None) -> TradeColumns:
    plan = _plan(db, symbol, time_range)
    inside = _bodies(db, symbol, plan.inside, cache)
    return TradeColumns.concat([*inside, _edge_trades(db, symbol, plan, time_range, cache)])


def read_coverage(db: Rdict, symbol: str, time_range: TimeRange, cache: SegmentCache | None = None) -> Coverage:
    """Trades held over the range (None: the whole tape) and the agg-id gaps between its first and last.

    Voids are counted apart (`void_count`); their ids are held, so never a gap.

    The whole tape is answered from the index and two seeks; a range from the summaries of
    the segments inside it, decoding only its edges. Gaps are the index's, between the
    first and last id found (agg ids rise with trade time).
    """
    runs = IdRuns.decode(db.get(index_key(symbol)))
    voids = read_voids(db, symbol, time_range, _segment_ms(db))
    if time_range is None:
        return _whole_tape_coverage(db, symbol, runs, voids)
    plan = _plan(db, symbol, time_range)
    edges = _edge_trades(db, symbol, plan, time_range, cache)
    count = sum(s.trade_count for s in plan.inside) + len(edges)
    if count + len(voids) == 0:
        return Coverage(0, None, None, None, None, [])
    first_ids = [s.first_id for s in plan.inside]
    last_ids = [s.last_id for s in plan.inside]
    first_times = [s.first_time for s in plan.inside]
    last_times = [s.last_time for s in plan.inside]
    for rows in (edges, voids):
        if len(rows):
            first_ids.append(int(rows.agg_id[0]))
            last_ids.append(int(rows.agg_id[-1]))
            first_times.append(int(rows.time.min()))
            last_times.append(int(rows.time.max()))
    first_id, last_id = min(first_ids), max(last_ids)
    gaps = runs.clip(first_id, last_id).gaps()
    return Coverage(count, first_id, last_id, min(first_times), max(last_times), gaps, len(voids))


def _whole_tape_coverage(db: Rdict, symbol: str, runs: IdRuns, voids: TradeColumns) -> Coverage:
    if len(runs) == 0:
        return Coverage(0, None, None, None, None, [])
    summaries, windows = kind_prefix(SUMMARY, symbol), kind_prefix(WINDOW, symbol)
    first_times: list[int] = [int(voids.time.min())] if len(voids) else []
    last_times: list[int] = [int(voids.time.max())] if len(voids) else []
    first_summary = scan_first(db, summaries, prefix_end(summaries))
    last_summary = last_before(db, summaries, prefix_end(summaries))
    if first_summary is not None and last_summary is not None:
        first_times.append(SegmentSummary.decode(first_summary).first_time)
        last_times.append(SegmentSummary.decode(last_summary[1]).last_time)
    first_window = scan_first(db, windows, prefix_end(windows))
    last_window = last_before(db, windows, prefix_end(windows))
    if first_window is not None and last_window is not None:
        first_times.append(int(decode_windows([first_window]).time.min()))
        last_times.append(int(decode_windows([last_window[1]]).time.max()))
    first_time = min(first_times) if first_times else None
    last_time = max(last_times) if last_times else None
    first_id, last_id = int(runs.low[0]), int(runs.high[-1])
    return Coverage(runs.count - len(voids), first_id, last_id, first_time, last_time, runs.gaps(), len(voids))


def read_price_levels(
    db: Rdict, symbol: str, time_range: TimeRange, cache: SegmentCache | None = None
) -> PriceLevels | None:
    """The range's trades aggregated per distinct price; None if a sum could leave int64.

    Whole segments inside the range come from their stored histograms; only the edges
    are decoded.
    """
    plan = _plan(db, symbol, time_range)
    parts: list[PriceLevels | None] = []
    if plan.inside:
        stored = _histograms(db, symbol, plan.inside, cache)
        missing = [s for s, levels in zip(plan.inside, stored, strict=True) if levels is None]
        parts += [levels for levels in stored if levels is not None]
        parts += [PriceLevels.of_trades(body) for body in _bodies(db, symbol, missing, cache)]
    # Each edge trimmed and summed alone: no concatenation of whole segments (an id is in one place only).
    parts += [
        PriceLevels.of_trades(edge, None if time_range is None else edge.within(*time_range))
        for edge in _edge_parts(db, symbol, plan, cache)
    ]
    if any(part is None for part in parts):
        return None
    return PriceLevels.merge([part for part in parts if part is not None])


def _histograms(
    db: Rdict, symbol: str, summaries: list[SegmentSummary], cache: SegmentCache | None
) -> list[PriceLevels | None]:
    if cache is not None:
        return cache.histograms(db, symbol, summaries)
    values: list[bytes | None] = db.get([timed_key(HISTOGRAM, symbol, s.start) for s in summaries])  # type: ignore[assignment]
    return [None if value is None else PriceLevels.decode(value) for value in values]


class ShardReader:
    """The shard's tape as of the writer's latest durable write: the analytics' `TradeSource`.

    - `trades(symbol, time_range)`: every trade in ``[start, end)`` (None: the whole tape).
    - `coverage(symbol, time_range)`: count, first/last id and time, id gaps, without
      decoding trades except at the range's edges (the whole tape: index only).
    - `price_levels(symbol, time_range)`: volume, buy volume and trade count per distinct
      price, from segment histograms plus the decoded edges; None when a per-price sum
      could exceed int64 (then compute from `trades`).
    """

    def __init__(self, path: Path, *, cache_bytes: int = 0, catch_up_every_s: float = 0.0) -> None:
        self._store = SecondaryStore(path)
        self._catch_up_every_s = catch_up_every_s
        """0: catch up before every read; more: at most that stale (the analytics service: 20 ms)."""
        self.cache = SegmentCache(cache_bytes)
        """Decoded segments and histograms between queries (`tradetape.store.segment_cache`); 0: none."""
        self._catching_up = threading.Lock()
        self._readers = threading.Condition()
        self._active = 0

    def _with_db(self, read: Callable[[Rdict], T], empty: T) -> T:
        """`read` on the database caught up with the writer; `empty` before the writer created it.

        Only the catch-up is serialised: reads of a RocksDB secondary run concurrently, so a
        long read never holds up a short one. `close` waits for the reads in flight.
        """
        with self._readers:
            self._active += 1
        try:
            with self._catching_up:
                try:
                    db = self._store.catch_up(unless_within_s=self._catch_up_every_s)
                except StoreNotFoundError:
                    return empty
            return read(db)
        finally:
            with self._readers:
                self._active -= 1
                self._readers.notify_all()

    def trades(self, symbol: str, time_range: TimeRange) -> TradeColumns:
        return self._with_db(lambda db: _read(db, symbol, time_range, self._cache), TradeColumns.empty())

    def coverage(self, symbol: str, time_range: TimeRange) -> Coverage:
        empty = Coverage(0, None, None, None, None)
        return self._with_db(lambda db: read_coverage(db, symbol, time_range, self._cache), empty)

    def price_levels(self, symbol: str, time_range: TimeRange) -> PriceLevels | None:
        empty: PriceLevels | None = PriceLevels.empty()
        return self._with_db(lambda db: read_price_levels(db, symbol, time_range, self._cache), empty)

    @property
    def _cache(self) -> SegmentCache | None:
        return self.cache if self.cache.max_bytes > 0 else None

    def close(self) -> None:
        with self._readers:
            self._readers.wait_for(lambda: self._active == 0)
            with self._catching_up:
                self._store.close()
