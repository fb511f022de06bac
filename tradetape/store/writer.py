"""The shard's writer: merges windows into RocksDB and makes them durable.

A window that exists already is merged by agg id, so redelivery, late trades and
backfill never duplicate a trade. `write` returns only after the batch is synced to
the WAL: the consumer acks after it, never before.
"""

from __future__ import annotations

import logging
from pathlib import Path

from rocksdict import Rdict, WriteBatch, WriteOptions

from tradetape.domain.columns import TradeColumns
from tradetape.store.codec import decode_window, encode_window, merge_windows
from tradetape.store.keys import symbol_prefix, window_key, window_start
from tradetape.store.rocks import open_primary
from tradetape.store.windows import WindowId

logger = logging.getLogger(__name__)


class WindowStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: Rdict | None = open_primary(path)
        self._sync = WriteOptions()
        self._sync.sync = True

    @property
    def db(self) -> Rdict:
        if self._db is None:
            raise RuntimeError(f"store {self.path} is closed")
        return self._db

    def write(self, windows: dict[WindowId, TradeColumns]) -> int:
        """Merge `windows` into the store durably; returns how many trades were new."""
        if not windows:
            return 0
        db = self.db
        keys = [window_key(symbol, start) for symbol, start in windows]
        stored_values: list[bytes | None] = db.get(keys)  # type: ignore[arg-type, assignment]
        batch = WriteBatch(raw_mode=True)
        added = 0
        for key, stored_value, incoming in zip(keys, stored_values, windows.values(), strict=False):
            stored = decode_window(stored_value) if stored_value is not None else None
            merged = merge_windows(stored, incoming)
            added += len(merged) - (len(stored) if stored is not None else 0)
            if stored is None or len(merged) != len(stored):
                batch.put(key, encode_window(merged))
        if not batch.is_empty():
            db.write(batch, self._sync)
        return added

    def delete_before(self, symbol: str, cutoff_ms: int) -> None:
        """Retention: drop every window of `symbol` that starts before `cutoff_ms`, as one range."""
        self.db.delete_range(symbol_prefix(symbol), window_key(symbol, window_start(cutoff_ms)), self._sync)

    def close(self) -> None:
        """Flush memtables and close; safe to call twice."""
        db, self._db = self._db, None
        if db is not None:
            db.flush()
            db.close()
            logger.info("store closed", extra={"path": str(self.path)})
