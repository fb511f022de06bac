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
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
from rocksdict import AccessType, Rdict

from tradetape.domain.columns import TradeColumns
from tradetape.domain.gaps import Coverage
from tradetape.runtime.scratch import owned_tempdir, sweep
from tradetape.store.budget import ReadBudget
from tradetape.store.codec import TRADE_BYTES, decode_window, decode_windows
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
from tradetape.store.rocks import StoreError, StoreNotFoundError, last_before, scan, scan_first, store_options
from tradetape.store.sealed import decoded, decoded_together
from tradetape.store.segment_cache import SegmentCache
from tradetape.store.segments import FORMAT_VERSION, SEGMENT_MS, PriceLevels, SegmentSummary, decode_stored_segment
from tradetape.store.voids import read_voids
from tradetape.store.writer import StoreLayoutError, read_layout

logger = logging.getLogger(__name__)

TimeRange = tuple[int, int] | None
T = TypeVar("T")
SECONDARY_DIR_PREFIX = "tradetape-secondary-"


class StoreClosedError(StoreError):
    """A read asked of a store view after `close`: it is never opened again."""


class SecondaryStore:
    """A read-only view of a shard's database that follows the writer.

    A secondary instance needs a directory of its own (its info log); it is a temporary
    one named by this process (`tradetape.runtime.scratch`), removed on `close`, and
    opening one first removes those left by processes that died without closing.
    Opening, catching up and closing are serialised; after `close` the view stays closed.
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        self._secondary_dir: Path | None = None
        self._db: Rdict | None = None
        self._caught_up_at = -math.inf
        self._lock = threading.Lock()
        self._closed = False

    def _open(self) -> Rdict:
        if self._closed:
            raise StoreClosedError(f"the view of {self._path} is closed")
        if self._db is None:
            if not (self._path / "CURRENT").exists():
                raise StoreNotFoundError(f"no tape database in {self._path} yet")
            sweep(SECONDARY_DIR_PREFIX)
            self._secondary_dir = owned_tempdir(SECONDARY_DIR_PREFIX)
            options = store_options()
            options.create_if_missing(False)
            options.set_max_open_files(-1)
            try:
                self._db = Rdict(str(self._path), options, access_type=AccessType.secondary(str(self._secondary_dir)))
            except BaseException:
                shutil.rmtree(self._secondary_dir, ignore_errors=True)
                self._secondary_dir = None
                raise
        return self._db

    def catch_up(self, *, unless_within_s: float = 0.0) -> Rdict:
        """The database, brought up to the writer's latest durable state.

        With `unless_within_s`, a catch-up that finished less than that long ago stands
        (each costs 1-2 ms reading the writer's manifest and log, however little changed).
        """
        with self._lock:
            db = self._open()
            if time.monotonic() - self._caught_up_at >= unless_within_s:
                db.try_catch_up_with_primary()
                self._caught_up_at = time.monotonic()
            return db

    def close(self) -> None:
        """Close the database and remove its directory (safe twice). Reads in flight must have ended."""
        with self._lock:
            self._closed = True
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
    windows: list[tuple[bytes, bytes]]
    """Keys and values."""


def _plan(db: Rdict, symbol: str, time_range: TimeRange) -> _Plan:
    span = segment_span(db)
    summaries = kind_prefix(SUMMARY, symbol)
    if time_range is None:
        whole = [decoded(*item, SegmentSummary.decode) for item in scan(db, summaries, prefix_end(summaries))]
        windows = kind_prefix(WINDOW, symbol)
        return _Plan(whole, [], scan(db, windows, prefix_end(windows)))
    start, end = time_range
    lower = timed_key(SUMMARY, symbol, start - start % span)
    inside: list[SegmentSummary] = []
    edges: list[SegmentSummary] = []
    for key, value in scan(db, lower, timed_key(SUMMARY, symbol, end)):
        summary = decoded(key, value, SegmentSummary.decode)
        if summary.last_time < start or summary.first_time >= end:
            continue
        (inside if start <= summary.first_time and summary.last_time < end else edges).append(summary)
    lower_key, upper_key = window_key_range(symbol, start, end)
    return _Plan(inside, edges, scan(db, lower_key, upper_key))


def segment_span(db: Rdict) -> int:
    """The database's segment span; `StoreLayoutError` for a database of an older format, not migrated yet."""
    layout = read_layout(db)
    if layout is None:
        return SEGMENT_MS
    version, span = layout
    if version != FORMAT_VERSION:
        raise StoreLayoutError(
            f"the store holds format {version}; its writer (persist, or an import) migrates it to format"
            f" {FORMAT_VERSION} when it opens it, and until then it is not read"
        )
    return span


def _bodies(
    db: Rdict, symbol: str, summaries: list[SegmentSummary], cache: SegmentCache | None = None
) -> list[TradeColumns]:
    if not summaries:
        return []
    if cache is not None:
        return cache.bodies(db, symbol, summaries)
    keys = [timed_key(SEGMENT, symbol, s.start) for s in summaries]
    values: list[bytes | None] = db.get(keys)  # type: ignore[arg-type, assignment]
    stored = [(key, value) for key, value in zip(keys, values, strict=True) if value is not None]
    return [decoded(key, value, decode_stored_segment) for key, value in stored]


def _edge_trades(
    db: Rdict, symbol: str, plan: _Plan, time_range: TimeRange, cache: SegmentCache | None = None
) -> TradeColumns:
    """The trades of the range that no whole-segment summary stands for, trimmed to the range."""
    return TradeColumns.concat(_trimmed_edges(db, symbol, plan, time_range, cache))


def _trimmed_edges(
    db: Rdict, symbol: str, plan: _Plan, time_range: TimeRange, cache: SegmentCache | None
) -> list[TradeColumns]:
    """Each edge part trimmed to the range on its own: parts stay disjoint in agg ids, so joining them needs no sort."""
    parts = _edge_parts(db, symbol, plan, cache)
    return parts if time_range is None else [part.between(*time_range) for part in parts]


def _edge_parts(db: Rdict, symbol: str, plan: _Plan, cache: SegmentCache | None) -> list[TradeColumns]:
    """The edge segments' trades and the young windows', untrimmed, each part on its own."""
    parts = _bodies(db, symbol, plan.edges, cache)
    if plan.windows:
        parts.append(decoded_together(plan.windows, decode_windows, decode_window))
    return parts


def _most_trades(plan: _Plan, *, inside: bool = True) -> int:
    """At least as many trades as reading `plan` decodes, known before decoding any."""
    count = sum(s.trade_count for s in plan.edges) + sum(len(value) // TRADE_BYTES for _, value in plan.windows)
    return count + (sum(s.trade_count for s in plan.inside) if inside else 0)


def read_trades(db: Rdict, symbol: str, start_ms: int, end_ms: int) -> TradeColumns:
    """All stored trades of `symbol` with ``start_ms <= T < end_ms``, ascending by agg id."""
    return _read(db, symbol, (start_ms, end_ms))


def read_all_trades(db: Rdict, symbol: str) -> TradeColumns:
    return _read(db, symbol, None)


def _read(
    db: Rdict,
    symbol: str,
    time_range: TimeRange,
    cache: SegmentCache | None = None,
    budget: ReadBudget | None = None,
) -> TradeColumns:
    plan = _plan(db, symbol, time_range)
    if budget is not None:
        budget.check(_most_trades(plan))
    return _joined(db, symbol, plan.inside, _trimmed_edges(db, symbol, plan, time_range, cache), cache)


def _joined(
    db: Rdict, symbol: str, inside: list[SegmentSummary], edges: list[TradeColumns], cache: SegmentCache | None
) -> TradeColumns:
    """The inside segments' trades and the edges' as one set of columns, allocated once.

    Each segment is decoded (or taken from the cache) and copied in on its own, so a long
    range holds its result and one segment, not every segment and then their join as well
    (measured over 3M trades: 171 bytes a trade at peak before, about 55 after). Pieces go
    in by first agg id; a piece out of order (never on a tape whose ids rise with time)
    makes the result sorted afterwards.
    """
    if not inside:
        return TradeColumns.concat(edges)
    pieces: list[tuple[int, SegmentSummary | TradeColumns]] = [(s.first_id, s) for s in inside]
    pieces += [(int(edge.agg_id[0]), edge) for edge in edges if len(edge)]
    pieces.sort(key=lambda piece: piece[0])
    if len(pieces) == 1:  # one whole segment: its (cached, read-only) arrays as they are, no copy
        piece = pieces[0][1]
        return piece if isinstance(piece, TradeColumns) else _body(db, symbol, piece, cache) or TradeColumns.empty()
    count = sum(s.trade_count for s in inside) + sum(len(edge) for edge in edges)
    template = TradeColumns.empty().arrays()
    columns = [np.empty(count, dtype=column.dtype) for column in template]
    filled, last_id, ordered = 0, -1, True
    overflow: list[TradeColumns] = []
    for _, piece in pieces:
        part = piece if isinstance(piece, TradeColumns) else _body(db, symbol, piece, cache)
        if part is None or len(part) == 0:
            continue  # the segment went (retention) since its summary was read
        if filled + len(part) > count:  # it grew since (a late trade merged in): joined at the end
            overflow.append(part)
            continue
        ordered = ordered and int(part.agg_id[0]) > last_id
        for column, values in zip(columns, part.arrays(), strict=True):
            column[filled : filled + len(part)] = values
        filled += len(part)
        last_id = int(part.agg_id[-1])
    joined = TradeColumns.of_arrays([column[:filled] for column in columns])
    if overflow:
        return TradeColumns.concat([joined, *overflow])
    return joined if ordered else joined.sorted_unique()


def _body(db: Rdict, symbol: str, summary: SegmentSummary, cache: SegmentCache | None) -> TradeColumns | None:
    found = _bodies(db, symbol, [summary], cache)
    return found[0] if found else None


def read_coverage(db: Rdict, symbol: str, time_range: TimeRange, cache: SegmentCache | None = None) -> Coverage:
    """Trades held over the range (None: the whole tape) and the agg-id gaps between its first and last.

    Voids are counted apart (`void_count`); their ids are held, so never a gap.

    The whole tape is answered from the index and two seeks; a range from the summaries of
    the segments inside it, decoding only its edges. Gaps are the index's, between the
    first and last id found (agg ids rise with trade time).
    """
    span = segment_span(db)
    runs = decoded(index_key(symbol), db.get(index_key(symbol)), IdRuns.decode)
    voids = read_voids(db, symbol, time_range, span)
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
        first_times.append(decoded(*first_summary, SegmentSummary.decode).first_time)
        last_times.append(decoded(*last_summary, SegmentSummary.decode).last_time)
    first_window = scan_first(db, windows, prefix_end(windows))
    last_window = last_before(db, windows, prefix_end(windows))
    if first_window is not None and last_window is not None:
        first_times.append(int(decoded(*first_window, decode_window).time.min()))
        last_times.append(int(decoded(*last_window, decode_window).time.max()))
    first_time = min(first_times) if first_times else None
    last_time = max(last_times) if last_times else None
    first_id, last_id = int(runs.low[0]), int(runs.high[-1])
    return Coverage(runs.count - len(voids), first_id, last_id, first_time, last_time, runs.gaps(), len(voids))


def read_price_levels(
    db: Rdict,
    symbol: str,
    time_range: TimeRange,
    cache: SegmentCache | None = None,
    budget: ReadBudget | None = None,
) -> PriceLevels | None:
    """The range's trades aggregated per distinct price; None if a sum could leave int64.

    Whole segments inside the range come from their stored histograms; only the edges
    are decoded. With a `budget`, the edges' trades are checked before anything is read
    and the histograms' levels once they are in hand, before the merge.
    """
    plan = _plan(db, symbol, time_range)
    if budget is not None:
        budget.check(_most_trades(plan, inside=False))
    parts: list[PriceLevels | None] = []
    if plan.inside:
        stored = _histograms(db, symbol, plan.inside, cache)
        missing = [s for s, levels in zip(plan.inside, stored, strict=True) if levels is None]
        if budget is not None:  # the histograms are in hand: their levels are counted exactly
            trades = _most_trades(plan, inside=False) + sum(s.trade_count for s in missing)
            budget.check(trades, sum(len(levels) for levels in stored if levels is not None))
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
    keys = [timed_key(HISTOGRAM, symbol, s.start) for s in summaries]
    values: list[bytes | None] = db.get(keys)  # type: ignore[arg-type, assignment]
    pairs = zip(keys, values, strict=True)
    return [None if value is None else decoded(key, value, PriceLevels.decode) for key, value in pairs]


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
        self._readers = threading.Condition()
        self._active = 0
        self._closed = False

    def _with_db(self, read: Callable[[Rdict], T], empty: T) -> T:
        """`read` on the database caught up with the writer; `empty` before the writer created it.

        Only the catch-up is serialised (in `SecondaryStore`): reads of a RocksDB secondary
        run concurrently, so a long read never holds up a short one. `close` waits for the
        reads in flight; a read asked after it raises `StoreClosedError`.
        """
        with self._readers:
            if self._closed:
                raise StoreClosedError("the shard reader is closed")
            self._active += 1
        try:
            try:
                db = self._store.catch_up(unless_within_s=self._catch_up_every_s)
            except StoreNotFoundError:
                return empty
            return read(db)
        finally:
            with self._readers:
                self._active -= 1
                self._readers.notify_all()

    def trades(self, symbol: str, time_range: TimeRange, budget: ReadBudget | None = None) -> TradeColumns:
        """`ReadTooLargeError` before decoding when the trades would cost more than `budget`."""
        return self._with_db(lambda db: _read(db, symbol, time_range, self._cache, budget), TradeColumns.empty())

    def coverage(self, symbol: str, time_range: TimeRange) -> Coverage:
        empty = Coverage(0, None, None, None, None)
        return self._with_db(lambda db: read_coverage(db, symbol, time_range, self._cache), empty)

    def price_levels(
        self, symbol: str, time_range: TimeRange, budget: ReadBudget | None = None
    ) -> PriceLevels | None:
        empty: PriceLevels | None = PriceLevels.empty()
        return self._with_db(lambda db: read_price_levels(db, symbol, time_range, self._cache, budget), empty)

    @property
    def _cache(self) -> SegmentCache | None:
        return self.cache if self.cache.max_bytes > 0 else None

    def close(self) -> None:
        with self._readers:
            self._closed = True
            self._readers.wait_for(lambda: self._active == 0)
            self._store.close()
