"""Reading a shard while its writer runs: secondary views, the analytics' reader, the tools' view.

One process per shard writes (the primary); every other process reads the same
directory as a RocksDB secondary instance, which sees the writer's new data after
`catch_up()`. `ShardReader` answers the analytics' queries (trades, coverage, price
levels over any range: `tradetape.store.reads`); `ShardView` gives a tool (an import, an
export) the stored tape of a shard for one command (`tradetape.store.tape`).
"""

from __future__ import annotations

import contextlib
import logging
import math
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Self, TypeVar

from rocksdict import AccessType, Rdict

from tradetape.domain.aggregates import MinuteLevels, OhlcRows, SecondBars
from tradetape.domain.columns import Quantity, TradeColumns
from tradetape.domain.gaps import Coverage
from tradetape.domain.price_levels import PriceLevels
from tradetape.ground.scratch import owned_tempdir, sweep
from tradetape.store.budget import ReadBudget
from tradetape.store.reads import (
    TimeRange,
    read_coverage,
    read_minute_bars,
    read_minute_levels,
    read_price_levels,
    read_range,
    read_second_bars,
)
from tradetape.store.rocks import StoreError, StoreNotFoundError, store_options
from tradetape.store.segment_cache import SegmentCache
from tradetape.store.tape import StoredTape
from tradetape.store.warm_up import Warmed, warm_recent

logger = logging.getLogger(__name__)

T = TypeVar("T")
SECONDARY_DIR_PREFIX = "tradetape-secondary-"


class StoreClosedError(StoreError):
    """A read asked of a store view after `close`: it is never opened again."""


class SecondaryStore:
    """A read-only view of a shard's database that follows the writer.

    A secondary instance needs a directory of its own (its info log); it is a temporary
    one named by this process (`tradetape.ground.scratch`), removed on `close`, and
    opening one first removes those left by processes that died without closing.
    Opening, catching up and closing are serialised; after `close` the view stays closed.
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        self._secondary_dir: Path | None = None
        self._db: Rdict | None = None
        self._caught_up_at = -math.inf
        self.catch_ups = 0
        """How often this view followed the writer."""
        self.generation = 0
        """Odd while a catch-up runs, one higher after it: a read that saw the same even value before and after
        read one state of the writer's."""
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
            # A secondary's catch-up installs a version, whose table handles RocksDB loads on up to 16 threads it
            # starts and joins each time: 0.6 ms of CPU a catch-up (4 ms wall at p95) holding the GIL, hundreds a
            # second on a busy shard; on the calling thread alone, 0.05 ms (the writer keeps RocksDB's default).
            options.set_max_file_opening_threads(1)
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
                self.generation += 1
                try:
                    db.try_catch_up_with_primary()
                finally:
                    self.generation += 1
                self._caught_up_at = time.monotonic()
                self.catch_ups += 1
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


class ShardReader:
    """The shard's tape as of the writer's latest durable write: the analytics' `TradeSource`.

    - `trades(symbol, time_range)`: every trade in ``[start, end)`` (None: the whole tape).
    - `coverage(symbol, time_range)`: count, first/last id and time, id gaps, without
      decoding trades except at the range's edges (the whole tape: index only).
    - `price_levels(symbol, time_range)`: volume, buy volume and trade count per distinct
      price, from segment histograms plus the decoded edges; None when a per-price sum
      could exceed int64 (then compute from `trades`).
    - `second_bars(symbol, time_range)`, `minute_levels(symbol, time_range)`: the aggregate
      layer (`tradetape.store.layer`) over the range, trades decoded only at its ragged edges.

    The aggregates take `quantity`: "normal" sums USD-M's `nq` instead of `q`.
    """

    def __init__(self, path: Path, *, cache_bytes: int = 0, catch_up_every_s: float = 0.0) -> None:
        self._store = SecondaryStore(path)
        self._catch_up_every_s = catch_up_every_s
        """0: catch up before every read; more: at most that stale unless `catch_up` is called (the analytics
        service catches up on each write's notice, and a query itself only after a second without one)."""
        self.cache = SegmentCache(cache_bytes)
        """Decoded segments and histograms between queries (`tradetape.store.segment_cache`); 0: none."""
        self.read_through_cache = self.cache.read_through()
        """The cache as `trades(..., fill_cache=False)` reads it (replays): hits used, misses never kept."""
        self._readers = threading.Condition()
        self._active = 0
        self._closed = False

    def _with_db(self, read: Callable[[Rdict], T], empty: T) -> T:
        """`read` on the database caught up with the writer; `empty` before the writer created it.

        Only the catch-up is serialised (in `SecondaryStore`): reads of a RocksDB secondary
        run concurrently, so a long read never holds up a short one. `close` waits for the
        reads in flight; a read asked after it raises `StoreClosedError`.
        """
        with self._active_use():
            try:
                db = self._store.catch_up(unless_within_s=self._catch_up_every_s)
            except StoreNotFoundError:
                return empty
            return read(db)

    def catch_up(self) -> bool:
        """Follow the writer now (told of a write); False before the writer created the database.

        Reads in flight go on beside it; a read after it sees every write durable before it began.
        """
        with self._active_use():
            try:
                self._store.catch_up()
            except StoreNotFoundError:
                return False
            return True

    @contextlib.contextmanager
    def _active_use(self) -> Iterator[None]:
        """One use of the view, counted so that `close` waits for it; `StoreClosedError` after `close`."""
        with self._readers:
            if self._closed:
                raise StoreClosedError("the shard reader is closed")
            self._active += 1
        try:
            yield
        finally:
            with self._readers:
                self._active -= 1
                self._readers.notify_all()

    def open(self) -> None:
        """Open the database and catch up now, if the writer has made it: a worker does this before it serves,
        so its first query does not pay for it (measured on a day's store: ~6 ms of this thread's CPU, 25-70 ms
        of wall time, RocksDB opening every table file)."""
        self._with_db(lambda db: None, None)

    def warm(self, symbol: str, span_ms: int) -> Warmed:
        """Decode the newest `span_ms` of `symbol`'s segments into the cache, within its budget
        (`tradetape.store.warm_up`): a worker does this before it serves."""
        if self.cache.max_bytes <= 0:
            return Warmed(0, complete=False)
        return self._with_db(lambda db: warm_recent(db, symbol, span_ms, self.cache), Warmed(0, complete=True))

    def trades(
        self, symbol: str, time_range: TimeRange, budget: ReadBudget | None = None, *, fill_cache: bool = True
    ) -> TradeColumns:
        """`ReadTooLargeError` before decoding when the trades would cost more than `budget`; `fill_cache=False`
        reads through the cache (a replay's hours, read once, must not evict what queries use)."""
        cache = self._cache if fill_cache or self._cache is None else self.read_through_cache
        return self._with_db(lambda db: read_range(db, symbol, time_range, cache, budget), TradeColumns.empty())

    def coverage(self, symbol: str, time_range: TimeRange) -> Coverage:
        empty = Coverage(0, None, None, None, None)
        return self._with_db(lambda db: read_coverage(db, symbol, time_range, self._cache), empty)

    def price_levels(
        self, symbol: str, time_range: TimeRange, budget: ReadBudget | None = None, quantity: Quantity = "all"
    ) -> PriceLevels | None:
        empty: PriceLevels | None = PriceLevels.empty()
        return self._with_db(
            lambda db: read_price_levels(db, symbol, time_range, self._cache, budget, quantity), empty
        )

    def second_bars(
        self, symbol: str, time_range: TimeRange, budget: ReadBudget | None = None, quantity: Quantity = "all"
    ) -> SecondBars:
        empty = SecondBars.empty()
        return self._with_db(
            lambda db: read_second_bars(db, symbol, time_range, self._cache, budget, quantity), empty
        )

    def minute_bars(
        self, symbol: str, time_range: TimeRange, budget: ReadBudget | None = None, quantity: Quantity = "all"
    ) -> OhlcRows:
        empty = SecondBars.empty().ohlc()
        return self._with_db(lambda db: read_minute_bars(db, symbol, time_range, self._cache, budget, quantity), empty)

    def minute_levels(
        self,
        symbol: str,
        time_range: TimeRange,
        price_step: int = 1,
        *,
        budget: ReadBudget | None = None,
        quantity: Quantity = "all",
    ) -> MinuteLevels | None:
        """`read_minute_levels`; called as `MinuteLevelSource.minute_levels` is (a step third), so a reader
        handed to a method as its source reads what a worker's source does."""
        empty: MinuteLevels | None = MinuteLevels.empty()
        return self._with_db(
            lambda db: read_minute_levels(db, symbol, time_range, self._cache, budget, quantity, price_step), empty
        )

    @property
    def generation(self) -> int:
        """The state reads see (`SecondaryStore.generation`): equal and even before and after a read, it read one."""
        return self._store.generation

    @property
    def catch_ups(self) -> int:
        """How often the reader followed the writer (on notice, or before a read)."""
        return self._store.catch_ups

    @property
    def _cache(self) -> SegmentCache | None:
        return self.cache if self.cache.max_bytes > 0 else None

    def close(self) -> None:
        with self._readers:
            self._closed = True
            self._readers.wait_for(lambda: self._active == 0)
            self._store.close()


class ShardView:
    """A tool's look at a shard directory, fine while persist writes it: `with ShardView(path) as view`.

    `tape()` catches up with the writer and returns what its database holds (`StoredTape`),
    None before the writer created it; the view's secondary directory goes on `close`.
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        self._store = SecondaryStore(path)

    def tape(self) -> StoredTape | None:
        try:
            db = self._store.catch_up()
        except StoreNotFoundError:
            return None
        return StoredTape(db, self._path)

    def close(self) -> None:
        """Close the view (safe twice); a `StoredTape` it handed out is not read after."""
        self._store.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
