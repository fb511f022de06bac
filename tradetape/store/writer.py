"""The shard's writer: windows in, segments at rest, the completeness index, retention.

Every change is one atomic RocksDB write batch, synced to the WAL before `write` returns
(the consumer acks after it, never before), and each carries the index update of the
trades it adds, so a crash at any point leaves windows, segments and index agreeing. A live
write may be left unsynced (`write_new(..., sync=False)`): it is in the log, so readers and a
restarted process see it at once, and `sync_log` makes it and every write before it durable
against a machine crash (persist acks only after that).
An incoming trade whose agg id the index holds is dropped: redelivery, late trades and
backfill never duplicate a trade, across windows and segments alike. Void rows
(`tradetape.domain.trade.is_void`) are taken out of every write into their own records
(`tradetape.store.voids`), their ids indexed like any other. The layout is described in
`tradetape.store.segments`.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rocksdict import Rdict, WriteBatch, WriteOptions

from tradetape.domain.columns import TradeColumns
from tradetape.domain.id_runs import IdRuns
from tradetape.domain.price_levels import PriceLevels
from tradetape.store.codec import decode_window, decode_windows
from tradetape.store.conflicts import check_same
from tradetape.store.index import decode_runs, encode_runs
from tradetape.store.keys import (
    HISTOGRAM,
    LAYOUT_KEY,
    MINUTE_LEVELS,
    SECOND_BARS,
    SEGMENT,
    SUMMARY,
    VOID,
    WINDOW,
    index_key,
    kind_prefix,
    prefix_end,
    retained_key,
    rolled_key,
    timed_key,
    window_key,
    window_start,
)
from tradetape.store.layer import layer_keys, put_grown_layer, put_layer
from tradetape.store.layout import StoreLayoutError, read_layout
from tradetape.store.meta import decode_mark, encode_layout, encode_mark
from tradetape.store.migration import build_layers, seal_values, summarize_windows
from tradetape.store.rocks import StoreError, open_primary, rocksdb_errors, scan, scan_first
from tradetape.store.sealed import decoded, decoded_together
from tradetape.store.segment_join import SegmentJoin
from tradetape.store.segments import (
    FORMAT_VERSION,
    LAYERED_SINCE,
    SEALED_SINCE,
    SEGMENT_MS,
    WINDOW_SUMMARIES_SINCE,
    SegmentSummary,
    decode_histogram,
    decode_stored_segment,
    encode_histogram,
    encode_stored_segment,
    grown_segment,
    segment_in_blocks,
)
from tradetape.store.shards import ShardLock
from tradetape.store.tape import StoredTape
from tradetape.store.voids import merge_voids, trim_voids
from tradetape.store.window_reads import whole_window
from tradetape.store.window_writes import WINDOW_KINDS, WindowWrites, delete_windows_before
from tradetape.store.windows import WindowId, split_by

logger = logging.getLogger(__name__)

SEGMENT_KINDS = (SEGMENT, SUMMARY, HISTOGRAM, SECOND_BARS, MINUTE_LEVELS)
"""What the writer keeps per segment, written and deleted together."""


@dataclass(frozen=True, slots=True)
class Written:
    """What one write added: per symbol the trades (what live updates announce) and how many voids.

    Live updates are built from it, never by reading the write back: `voided` holds the void
    rows themselves and `seconds`, by window start, every trade stored (before and by this
    write) in each 1-second window the write's trades touched, as the write merged them.
    """

    trades: dict[str, TradeColumns]
    voids: dict[str, int]
    voided: dict[str, TradeColumns] = field(default_factory=dict)
    seconds: dict[str, dict[int, TradeColumns]] = field(default_factory=dict)

    @property
    def count(self) -> int:
        """Agg ids newly stored, trades and voids."""
        return sum(len(trades) for trades in self.trades.values()) + sum(self.voids.values())


@dataclass(frozen=True, slots=True)
class ImportCounts:
    """What one bulk import added, and how many of its trades the store held already."""

    added: int
    duplicates: int


class ShardWriter:
    """The one writer of a shard's database (RocksDB allows one writing process)."""

    def __init__(self, path: Path, *, segment_ms: int = SEGMENT_MS) -> None:
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        self._lock = ShardLock(path)
        self._closed = False
        self._lock.acquire()
        try:
            with rocksdb_errors(path):
                self._db: Rdict | None = open_primary(path)
            self._sync = WriteOptions()
            self._sync.sync = True
            self._unsynced = WriteOptions()
            self._unsynced.sync = False
            self._index: dict[str, IdRuns] = {}
            self._rolled: dict[str, int] = {}
            self._unjoined: set[tuple[str, int]] = set()
            self._windows = WindowWrites()
            with rocksdb_errors(path):
                self.segment_ms = self._check_layout(segment_ms)
        except BaseException:
            self.close()
            raise

    @property
    def db(self) -> Rdict:
        if self._db is None:
            if self._closed:
                raise RuntimeError(f"store {self.path} is closed")
            with rocksdb_errors(self.path):  # a reopen that failed (the disk still full): try again now
                self._db = open_primary(self.path)
        return self._db

    def reopen(self) -> None:
        """A fresh handle after RocksDB refused a write; `StoreError` if it cannot open yet.

        Once a write fails (a full disk), RocksDB refuses every later one on the same handle,
        even after space is back ("Writer has previous error"), and even its close fails; a
        new handle recovers what was acknowledged from the log (measured on a full tmpfs).
        """
        db, self._db = self._db, None
        if db is not None:
            with contextlib.suppress(Exception):  # the failed handle's close refuses too; dropping it is enough
                db.close()
            del db
        self._index.clear()
        self._rolled.clear()
        self._windows.forget()
        with rocksdb_errors(self.path):
            self._db = open_primary(self.path)
        logger.warning("store reopened after a refused write", extra={"path": str(self.path)})

    def _check_layout(self, segment_ms: int) -> int:
        """The database's segment span; an older format is migrated first (`tradetape.store.migration`)."""
        db = self.db
        layout = read_layout(db)
        version, span = layout if layout is not None else (1, segment_ms)  # none: new, or format 1 (windows only)
        if not 1 <= version <= FORMAT_VERSION:
            raise StoreLayoutError(f"{self.path} holds format {version}; this version reads {FORMAT_VERSION}")
        if version < FORMAT_VERSION:
            if version < SEALED_SINCE:
                seal_values(db, self.path, self._sync, version)
            if layout is None:
                self._rebuild_indexes()
            if version < LAYERED_SINCE:
                build_layers(db, self.path, self._sync)
            if version < WINDOW_SUMMARIES_SINCE:
                summarize_windows(db, self.path, self._sync)
            db.put(LAYOUT_KEY, encode_layout(span), self._sync)
        return span

    def _rebuild_indexes(self) -> None:
        """A format-1 database (windows only): index what its windows hold, once."""
        windows = scan(self.db, f"{WINDOW}:".encode(), prefix_end(f"{WINDOW}:".encode()))
        by_symbol: dict[str, list[tuple[bytes, bytes]]] = {}
        for key, value in windows:
            by_symbol.setdefault(key.split(b":")[1].decode(), []).append((key, value))
        batch = WriteBatch(raw_mode=True)
        for symbol, items in by_symbol.items():
            ids = decoded_together(items, decode_windows, decode_window).agg_id
            batch.put(index_key(symbol), encode_runs(IdRuns.of_ids(ids)))
        if not batch.is_empty():
            self.db.write(batch, self._sync)
            logger.info("index rebuilt", extra={"symbols": ",".join(by_symbol), "windows": len(windows)})

    def index(self, symbol: str) -> IdRuns:
        """The agg ids stored for `symbol` (cached: this process is the only writer)."""
        runs = self._index.get(symbol)
        if runs is None:
            key = index_key(symbol)
            with rocksdb_errors(self.path):
                runs = self._index[symbol] = decoded(key, self.db.get(key), decode_runs)
        return runs

    def newest(self, symbol: str) -> int | None:
        """The highest agg id stored for `symbol`, None before its first trade."""
        runs = self.index(symbol)
        return int(runs.high[-1]) if len(runs) else None

    def differences(self, symbol: str, trades: TradeColumns) -> list[tuple[int, str]]:
        """Of `trades` (agg ids the store holds), which differ from the stored ones (`StoredTape.differences`)."""
        return self.tape.differences(symbol, trades)

    @property
    def tape(self) -> StoredTape:
        """What the database holds, read through this writer's handle (a tool that holds the shard reads so)."""
        return StoredTape(self.db, self.path, self.segment_ms)

    def rolled_until(self, symbol: str) -> int:
        """Every window of `symbol` that starts before this is in a segment."""
        mark = self._rolled.get(symbol)
        if mark is None:
            key = rolled_key(symbol)
            value = self.db.get(key)
            mark = self._rolled[symbol] = decoded(key, value, decode_mark) if value is not None else 0
        return mark

    def write(self, windows: dict[WindowId, TradeColumns]) -> int:
        """Add the trades (and voids) of `windows` the store does not hold yet, durably; returns how many were new.

        Raises `StoreError` if RocksDB refuses (nothing is then written; the caller retries).
        """
        return self.write_new(windows).count

    def write_new(self, windows: dict[WindowId, TradeColumns], *, sync: bool = True) -> Written:
        """`write`, returning per symbol the trades it added (what live updates announce) and the voids.

        With `sync=False` the write is in the log (readers see it) but durable only after `sync_log`.
        """
        with rocksdb_errors(self.path):
            return self._write(windows, self._sync if sync else self._unsynced)

    def sync_log(self) -> None:
        """Make every write so far durable (the log fsynced). Safe beside a write on another thread (RocksDB's own
        locking; the GIL is released while it waits on the disk), never beside `reopen` or `close`.

        Raises `StoreError` if RocksDB refuses: the caller then wants `reopen` (what the log kept is recovered).
        """
        db = self._db
        if db is None:
            raise StoreError(f"RocksDB at {self.path}: no open handle to sync")
        with rocksdb_errors(self.path):
            db.flush_wal(True)

    def _write(self, windows: dict[WindowId, TradeColumns], options: WriteOptions) -> Written:
        by_symbol: dict[str, list[TradeColumns]] = {}
        for (symbol, _), columns in windows.items():
            by_symbol.setdefault(symbol, []).append(columns)
        batch = WriteBatch(raw_mode=True)
        indexes: dict[str, IdRuns] = {}
        written = Written({}, {})
        self._windows.begin()
        try:
            for symbol, parts in by_symbol.items():
                incoming = TradeColumns.concat(parts)
                runs = self.index(symbol)
                fresh = incoming.take(~runs.contains(incoming.agg_id)) if len(runs) else incoming
                if len(fresh) == 0:
                    continue
                indexes[symbol] = self._add(batch, symbol, fresh, written)
            if not batch.is_empty():
                self.db.write(batch, options)
                self._index.update(indexes)
                self._windows.taken()
        except BaseException:
            self._windows.forget()  # the batch may or may not be in the log
            raise
        return written

    def _add(self, batch: WriteBatch, symbol: str, fresh: TradeColumns, written: Written | None) -> IdRuns:
        """Put new rows where they belong, noting in `written` (a live write's) what they add; the new index.

        A void goes into its span's void record; a trade into a segment before the roll-up
        mark, a window after it.
        """
        void = fresh.voids()
        trades = fresh
        if bool(void.any()):
            merge_voids(self.db, batch, symbol, fresh.take(void), self.segment_ms)
            trades = fresh.take(~void)
            if written is not None:
                written.voids[symbol] = len(fresh) - len(trades)
                written.voided[symbol] = fresh.take(void)
        late = trades.time < self.rolled_until(symbol)
        segments: list[TradeColumns] = []
        windows: list[tuple[int, TradeColumns]] = []
        if len(trades) == 0:
            pass
        elif bool(late.all()):  # a bulk import of history: no copy of the columns
            segments = self._merge_into_segments(batch, symbol, trades)
        elif bool(late.any()):
            segments = self._merge_into_segments(batch, symbol, trades.take(late))
            windows = self._windows.merge(self.db, batch, symbol, trades.take(~late))
        else:
            windows = self._windows.merge(self.db, batch, symbol, trades)
        if written is not None and len(trades):
            written.trades[symbol] = trades
            written.seconds[symbol] = dict(windows) if not segments else _seconds_touched(segments, windows, trades)
        runs = self.index(symbol).add(np.sort(fresh.agg_id))
        batch.put(index_key(symbol), encode_runs(runs))
        return runs

    def import_trades(self, symbol: str, trades: TradeColumns, *, roll_up_before_ms: int) -> ImportCounts:
        """Bulk history (dumps, repairs) in one atomic, synced write, straight into hour segments.

        Windows before `roll_up_before_ms` are rolled up first (its own atomic write), so
        imported trades older than that land in segments, never in 1-second windows (voids
        in their records). A trade whose agg id is stored already is a duplicate and skipped,
        but only if it is the same trade (a void the same void): different contents raise
        `ImportConflictError` and nothing is written.
        `trades` must be ascending by agg id, each once. `StoreError` if RocksDB refuses.
        """
        with rocksdb_errors(self.path):
            self._roll_up(symbol, roll_up_before_ms)
            runs = self.index(symbol)
            held = runs.contains(trades.agg_id) if len(runs) else np.zeros(len(trades), dtype=np.bool_)
            if bool(held.any()):
                check_same(self.db, symbol, trades.take(held), self.segment_ms)
            fresh = trades.take(~held) if bool(held.any()) else trades
            if len(fresh) == 0:
                return ImportCounts(0, len(trades))
            batch = WriteBatch(raw_mode=True)
            index = self._add(batch, symbol, fresh, None)
            self.db.write(batch, self._sync)
            self._index[symbol] = index
            return ImportCounts(len(fresh), len(trades) - len(fresh))

    def _merge_into_segments(
        self, batch: WriteBatch, symbol: str, trades: TradeColumns, *, as_written: bool = True
    ) -> list[TradeColumns]:
        """Late trades (and rolled-up windows) into the segments of their trade time; the segments as written, or,
        without `as_written`, none: a segment that can take the trades as a block of its own then does
        (`_grow_segment`), without being decoded."""
        starts = trades.time - trades.time % self.segment_ms
        segments: list[TradeColumns] = []
        for start, part in split_by(trades, starts):
            if not as_written and self._grow_segment(batch, symbol, start, part):
                continue
            key = timed_key(SEGMENT, symbol, start)
            stored = self.db.get(key)
            held = decoded(key, stored, decode_stored_segment) if stored is not None else None
            merged = part if held is None else TradeColumns.concat([held, part])
            self._put_segment(batch, symbol, start, merged, None if held is None else part)
            segments.append(merged)
        return segments

    def _grow_segment(self, batch: WriteBatch, symbol: str, start: int, part: TradeColumns) -> bool:
        """`part` (trades the segment does not hold) into the stored segment starting at `start` as a block of its own
        (`grown_segment`), its summary, histogram and layer grown from the stored ones; False, putting nothing, where
        it cannot be (no segment yet, no histogram or layer kept, a second of the layer touched again).

        Why: a live roll-up merged 10 s of windows into the whole hour, decoded and encoded again, on the thread that
        stores live trades: at 2,000 trades/s, 7.8 s a roll-up near the hour's end (`bench/rollup.py`)."""
        keys = [timed_key(kind, symbol, start) for kind in SEGMENT_KINDS]
        segment, summary, histogram, *layer = self.db.get(keys)  # type: ignore[arg-type, misc]
        if segment is None or summary is None or histogram is None:
            return False
        added = PriceLevels.of_trades(part)
        levels = None if added is None else PriceLevels.merge([decoded(keys[2], histogram, decode_histogram), added])
        if levels is None or not put_grown_layer(batch, symbol, start, part, layer):
            return False
        batch.put(keys[0], decoded(keys[0], segment, lambda value: grown_segment(value, part)))
        held = decoded(keys[1], summary, SegmentSummary.decode)
        batch.put(keys[1], held.joined(SegmentSummary.of(start, part)).encode())
        batch.put(keys[2], encode_histogram(levels))
        return True

    def _put_segment(
        self, batch: WriteBatch, symbol: str, start: int, trades: TradeColumns, grown_by: TradeColumns | None = None
    ) -> None:
        """The segment starting at `start` as `trades`; `grown_by`: the trades just merged into what it held (its
        layer is then grown from the one stored: `put_grown_layer`)."""
        keys = [timed_key(kind, symbol, start) for kind in SEGMENT_KINDS]
        if len(trades) == 0:
            for key in keys:
                batch.delete(key)
            return
        levels = PriceLevels.of_trades(trades)
        batch.put(keys[0], encode_stored_segment(trades))
        batch.put(keys[1], SegmentSummary.of(start, trades).encode())
        if levels is None:
            batch.delete(keys[2])  # sums beyond int64: readers decode this segment instead
        else:
            batch.put(keys[2], encode_histogram(levels))
        if grown_by is not None:
            stored: list[bytes | None] = self.db.get(list(layer_keys(symbol, start)))  # type: ignore[assignment]
            if put_grown_layer(batch, symbol, start, grown_by, stored, trades):
                return
        put_layer(batch, symbol, start, trades)

    def roll_up(self, symbol: str, before_ms: int, *, join: bool = True) -> int:
        """Move every window of `symbol` that starts before `before_ms` into its segment, atomically.

        A segment the roll-up mark passes the end of is joined into one body here, or, without `join`, left in
        blocks and listed by `take_unjoined` (joined off this thread: `SegmentJoin`). Returns the number of
        windows rolled up; `StoreError` if RocksDB refuses.
        """
        with rocksdb_errors(self.path):
            return self._roll_up(symbol, before_ms, join=join)

    def _roll_up(self, symbol: str, before_ms: int, *, join: bool = True) -> int:
        self._windows.forget()  # what the last write left may be rolled up (and an import, which starts here, writes)
        before, previous = window_start(before_ms), self.rolled_until(symbol)
        if before <= previous:
            return 0
        prefix = kind_prefix(WINDOW, symbol)
        windows = scan(self.db, prefix, window_key(symbol, before))
        batch = WriteBatch(raw_mode=True)
        touched = {previous - previous % self.segment_ms} if previous else set()
        if windows:
            rolled = decoded_together(windows, decode_windows, decode_window)
            self._merge_into_segments(batch, symbol, rolled, as_written=False)
            delete_windows_before(batch, symbol, before)
            touched |= {int(start) for start in np.unique(rolled.time - rolled.time % self.segment_ms)}
        batch.put(rolled_key(symbol), encode_mark(before))
        self.db.write(batch, self._sync)
        self._rolled[symbol] = before
        closed = [(symbol, start) for start in touched if start + self.segment_ms <= before]
        if not join:
            self._unjoined.update(closed)
            return len(windows)
        for segment in closed:
            if (found := self._segment_join(*segment)) is not None:
                self._put_join(found, found.joined())
        return len(windows)

    def last_closed(self, symbol: str) -> int | None:
        """The start of the last segment of `symbol` the roll-up mark passed the end of (one a roll-up without `join`
        may have left in blocks, and a stop come before its join); None before its first roll-up."""
        with rocksdb_errors(self.path):
            mark = self.rolled_until(symbol)
        return mark - mark % self.segment_ms - self.segment_ms if mark else None

    def take_unjoined(self) -> list[tuple[str, int]]:
        """The (symbol, start) of the segments roll-ups without `join` left in blocks, forgotten here once taken."""
        taken, self._unjoined = sorted(self._unjoined), set()
        return taken

    def segment_join(self, symbol: str, start: int) -> SegmentJoin | None:
        """The segment of `symbol` starting at `start` as stored, to be joined (`SegmentJoin.joined`, on any thread)
        and put back (`put_join`); None if it is stored as one body or not at all. `StoreError` if RocksDB refuses.
        """
        with rocksdb_errors(self.path):
            return self._segment_join(symbol, start)

    def _segment_join(self, symbol: str, start: int) -> SegmentJoin | None:
        key = timed_key(SEGMENT, symbol, start)
        stored = self.db.get(key)
        if stored is None or not segment_in_blocks(stored):
            return None
        levels_key = timed_key(MINUTE_LEVELS, symbol, start)
        return SegmentJoin(key, stored, levels_key, self.db.get(levels_key))

    def put_join(self, found: SegmentJoin, joined: tuple[bytes, bytes | None]) -> bool:
        """`joined` (`found.joined()`) stored in place of the segment and its minute levels if they still hold what
        `found` read; False, putting nothing, if a change came between (a late trade merged into the segment stores
        it as one body anyway)."""
        with rocksdb_errors(self.path):
            return self._put_join(found, joined)

    def _put_join(self, found: SegmentJoin, joined: tuple[bytes, bytes | None]) -> bool:
        if self.db.get(found.key) != found.stored or self.db.get(found.levels_key) != found.levels:
            return False
        body, levels = joined
        batch = WriteBatch(raw_mode=True)
        batch.put(found.key, body)
        if levels is not None:
            batch.put(found.levels_key, levels)
        self.db.write(batch, self._sync)
        return True

    def delete_before(self, symbol: str, cutoff_ms: int) -> int:
        """Retention: drop every trade and void of `symbol` older than `cutoff_ms`, as key ranges; returns how many.

        Whole segments before the cutoff and all windows before it go as range deletes; the
        segment that straddles the cutoff is rewritten with its newer trades only. The index
        follows, in the same write; the deleted ranges are then compacted away.
        """
        with rocksdb_errors(self.path):
            return self._delete_before(symbol, cutoff_ms)

    def _delete_before(self, symbol: str, cutoff_ms: int) -> int:
        self._windows.forget()
        straddling = cutoff_ms - cutoff_ms % self.segment_ms
        batch = WriteBatch(raw_mode=True)
        removed = 0
        for kind in SEGMENT_KINDS:
            batch.delete_range(kind_prefix(kind, symbol), timed_key(kind, symbol, straddling))
        for key, value in scan(self.db, kind_prefix(SUMMARY, symbol), timed_key(SUMMARY, symbol, straddling)):
            removed += decoded(key, value, SegmentSummary.decode).trade_count
        first_ids: list[int] = []
        segment_key = timed_key(SEGMENT, symbol, straddling)
        stored = self.db.get(segment_key)
        if stored is not None:
            segment = decoded(segment_key, stored, decode_stored_segment)
            kept = segment.take(segment.time >= cutoff_ms)
            if len(kept) < len(segment):
                removed += len(segment) - len(kept)
                self._put_segment(batch, symbol, straddling, kept)
            if len(kept):
                first_ids.append(int(kept.agg_id[0]))
        windows_end = window_key(symbol, window_start(cutoff_ms))
        old_windows = scan(self.db, kind_prefix(WINDOW, symbol), windows_end)
        if old_windows:
            removed += len(decoded_together(old_windows, decode_windows, decode_window))
            delete_windows_before(batch, symbol, window_start(cutoff_ms))
        voids_removed, first_void = trim_voids(self.db, batch, symbol, cutoff_ms, self.segment_ms)
        if removed + voids_removed == 0:
            return 0
        first_ids += self._first_ids_after(symbol, straddling, cutoff_ms)
        first_ids += [] if first_void is None else [first_void]
        runs = self.index(symbol).clip(min(first_ids), None) if first_ids else IdRuns.empty()
        batch.put(index_key(symbol), encode_runs(runs))
        self.db.write(batch, self._sync)
        self._index[symbol] = runs
        for kind in (*SEGMENT_KINDS, VOID):
            self.db.compact_range(kind_prefix(kind, symbol), timed_key(kind, symbol, straddling))
        for kind in WINDOW_KINDS:
            self.db.compact_range(kind_prefix(kind, symbol), timed_key(kind, symbol, window_start(cutoff_ms)))
        # Compaction flushes the memtable; a secondary keeps serving what it had replayed from
        # the flushed WAL until the primary writes again (measured), so write at once.
        self.db.put(retained_key(symbol), encode_mark(cutoff_ms), self._sync)
        extra = {"symbol": symbol, "cutoff_ms": cutoff_ms, "removed": removed, "voids_removed": voids_removed}
        logger.info("retention", extra=extra)
        return removed + voids_removed

    def _first_ids_after(self, symbol: str, straddling: int, cutoff_ms: int) -> list[int]:
        """The lowest agg ids of the segments after `straddling` and of the windows from `cutoff_ms` on."""
        found: list[int] = []
        summaries = kind_prefix(SUMMARY, symbol)
        after = scan_first(self.db, timed_key(SUMMARY, symbol, straddling + 1), prefix_end(summaries))
        if after is not None:
            found.append(decoded(*after, SegmentSummary.decode).first_id)
        windows = kind_prefix(WINDOW, symbol)
        window = scan_first(self.db, window_key(symbol, window_start(cutoff_ms)), prefix_end(windows))
        if window is not None:
            found.append(int(whole_window(self.db, window[0]).agg_id.min()))
        return found

    def segment_count(self, symbol: str) -> int:
        """How many segments `symbol` has (their summaries are small: one a symbol and hour)."""
        prefix = kind_prefix(SUMMARY, symbol)
        with rocksdb_errors(self.path):
            return len(scan(self.db, prefix, prefix_end(prefix)))

    def symbols(self) -> list[str]:
        """Every symbol the database holds an index for."""
        prefix = b"index:"
        return [key[len(prefix) :].decode() for key, _ in scan(self.db, prefix, prefix_end(prefix))]

    def compact(self) -> None:
        """Compact the whole database (benches measure bytes at rest after it)."""
        self.db.compact_range(None, None)

    def close(self) -> None:
        """Flush memtables, close and release the shard; safe to call twice.

        A handle RocksDB already refused (a full disk) cannot flush; what it acknowledged is
        in the synced log, so that is logged, not raised: the next open recovers it.
        """
        db, self._db, self._closed = self._db, None, True
        try:
            if db is not None:
                try:
                    with rocksdb_errors(self.path):
                        db.flush()
                        db.close()
                except StoreError as exc:
                    logger.error("store close failed; the next open recovers from the log", extra={"error": str(exc)})
                else:
                    logger.info("store closed", extra={"path": str(self.path)})
        finally:
            self._lock.release()


def _seconds_touched(
    segments: list[TradeColumns], windows: list[tuple[int, TradeColumns]], trades: TradeColumns
) -> dict[int, TradeColumns]:
    """Every stored trade of each second `trades` touched, cut out of the segments and windows as written (a
    write without late trades has them already: its windows)."""
    stored = TradeColumns.concat([*segments, *(window for _, window in windows)])
    seconds = window_start(stored.time)
    kept = np.isin(seconds, np.unique(window_start(trades.time)))
    return dict(split_by(stored.take(kept), seconds[kept]))
