"""The stored tape as one handle of a shard's database holds it: what tools read without the handle.

Imports, exports and repairs need a shard's trades, voids, coverage and completeness index,
and the import checks (`tradetape.store.conflicts`), from whichever handle they have: the
writer's own (`ShardWriter.tape`, when the tool holds the shard) or a secondary view
(`ShardView.tape`, while persist writes it). `StoredTape` gives them those reads and keeps
the handle, the keys and RocksDB's exceptions inside the store: every RocksDB failure is a
`StoreError`, a stored value that fails its checks a `StoreCorruptError`.
"""

from __future__ import annotations

from pathlib import Path

from rocksdict import Rdict

from tradetape.domain.columns import TradeColumns
from tradetape.domain.gaps import Coverage
from tradetape.domain.id_runs import IdRuns
from tradetape.store.conflicts import check_same, stored_differences
from tradetape.store.index import decode_runs
from tradetape.store.keys import index_key
from tradetape.store.layout import segment_span
from tradetape.store.lookup import gap_times
from tradetape.store.reads import TimeRange, read_coverage, read_trades
from tradetape.store.rocks import rocksdb_errors
from tradetape.store.sealed import decoded
from tradetape.store.voids import read_voids


class StoredTape:
    """Reads of one shard's database through a handle its owner keeps open (and closes)."""

    def __init__(self, db: Rdict, path: Path, segment_ms: int | None = None) -> None:
        """`segment_ms`: the span the writer knows; None reads it from the layout when first needed."""
        self._db = db
        self._path = path
        self._segment_ms = segment_ms

    @property
    def segment_ms(self) -> int:
        """The database's segment span; `StoreLayoutError` for an older format not migrated yet."""
        if self._segment_ms is None:
            with rocksdb_errors(self._path):
                self._segment_ms = segment_span(self._db)
        return self._segment_ms

    def runs(self, symbol: str) -> IdRuns:
        """The agg ids stored for `symbol`, trades and voids (the completeness index)."""
        key = index_key(symbol)
        with rocksdb_errors(self._path):
            return decoded(key, self._db.get(key), decode_runs)

    def trades(self, symbol: str, start_ms: int, end_ms: int) -> TradeColumns:
        """The trades with ``start_ms <= T < end_ms``, ascending by agg id (no voids)."""
        with rocksdb_errors(self._path):
            return read_trades(self._db, symbol, start_ms, end_ms)

    def voids(self, symbol: str, time_range: TimeRange) -> TradeColumns:
        """The voids in the range (None: all), as Binance writes them, ascending by agg id."""
        span = self.segment_ms
        with rocksdb_errors(self._path):
            return read_voids(self._db, symbol, time_range, span)

    def coverage(self, symbol: str, time_range: TimeRange) -> Coverage:
        """Trades held over the range (None: the whole tape, from the index and two seeks), voids, id gaps."""
        with rocksdb_errors(self._path):
            return read_coverage(self._db, symbol, time_range)

    def differences(self, symbol: str, trades: TradeColumns) -> list[tuple[int, str]]:
        """Of `trades` (agg ids the store holds), which differ from the stored ones, and how (`stored_differences`)."""
        span = self.segment_ms
        with rocksdb_errors(self._path):
            return stored_differences(self._db, symbol, trades, span)

    def check_same(self, symbol: str, trades: TradeColumns) -> None:
        """`ImportConflictError` for the first of `trades` (agg ids the store holds) stored with other contents."""
        span = self.segment_ms
        with rocksdb_errors(self._path):
            check_same(self._db, symbol, trades, span)

    def gap_times(self, symbol: str, from_id: int, to_id: int) -> tuple[int, int] | None:
        """The trade times of the stored neighbours of the gap ``[from_id, to_id]`` (None if either is not stored)."""
        with rocksdb_errors(self._path):
            return gap_times(self._db, symbol, from_id, to_id)
