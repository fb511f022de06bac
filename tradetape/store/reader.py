"""Opening the tape's RocksDB and reading trades out of it.

One process per shard writes (the primary); every other process reads the same
directory as a RocksDB secondary instance, which sees the writer's new data after
`catch_up()`. Keys are spelled only in `tradetape.store.keys`; values only in
`tradetape.store.codec`.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
from pathlib import Path

from rocksdict import AccessType, Rdict, ReadOptions

from tradetape.domain.columns import TradeColumns
from tradetape.store.codec import decode_windows
from tradetape.store.keys import symbol_prefix, window_key_range
from tradetape.store.rocks import StoreNotFoundError, store_options

logger = logging.getLogger(__name__)


class SecondaryStore:
    """A read-only view of a shard's database that follows the writer."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._secondary_dir: str | None = None
        self._db: Rdict | None = None

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

    def catch_up(self) -> Rdict:
        """The database, brought up to the writer's latest durable state."""
        db = self._open()
        db.try_catch_up_with_primary()
        return db

    def close(self) -> None:
        db, self._db = self._db, None
        if db is not None:
            db.close()
        if self._secondary_dir is not None:
            shutil.rmtree(self._secondary_dir, ignore_errors=True)
            self._secondary_dir = None


def read_trades(db: Rdict, symbol: str, start_ms: int, end_ms: int) -> TradeColumns:
    """All stored trades of `symbol` with ``start_ms <= T < end_ms``, ascending by agg id."""
    lower, upper = window_key_range(symbol, start_ms, end_ms)
    return decode_windows(_values_between(db, lower, upper)).between(start_ms, end_ms)


def read_all_trades(db: Rdict, symbol: str) -> TradeColumns:
    prefix = symbol_prefix(symbol)
    upper = prefix[:-1] + bytes([prefix[-1] + 1])
    return decode_windows(_values_between(db, prefix, upper))


def _values_between(db: Rdict, lower: bytes, upper: bytes) -> list[bytes]:
    it = db.iter(ReadOptions())
    it.seek(lower)
    values = []
    while it.valid():
        if it.key() >= upper:
            break
        values.append(it.value())
        it.next()
    return values


class ShardReader:
    """The shard's trades, as of the writer's latest durable write (the analytics' `TradeSource`)."""

    def __init__(self, path: Path) -> None:
        self._store = SecondaryStore(path)
        self._lock = threading.Lock()

    def trades(self, symbol: str, time_range: tuple[int, int] | None) -> TradeColumns:
        with self._lock:
            try:
                db = self._store.catch_up()
            except StoreNotFoundError:
                return TradeColumns.empty()
            if time_range is None:
                return read_all_trades(db, symbol)
            return read_trades(db, symbol, *time_range)

    def close(self) -> None:
        with self._lock:
            self._store.close()
