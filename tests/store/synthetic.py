"""Synthetic tapes for store tests: numpy columns, written through the real writer."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tradetape.domain.columns import TradeColumns
from tradetape.domain.gaps import Coverage
from tradetape.store.keys import window_start
from tradetape.store.windows import WindowId, split_by
from tradetape.store.writer import ShardWriter

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
SYMBOL = "BTCUSDT"


def tape(n: int, span_ms: int, *, seed: int = 1, first_id: int = 1_000, start_ms: int = T0) -> TradeColumns:
    """`n` trades with consecutive ids spread over `span_ms`, times rising with ids."""
    rng = np.random.default_rng(seed)
    ids = np.arange(first_id, first_id + n, dtype=np.int64)
    times = start_ms + np.sort(rng.integers(0, span_ms, n)).astype(np.int64)
    price = 8_700_000_000_000 + np.cumsum(rng.integers(-3, 4, n)) * 1_000_000
    qty = rng.integers(1, 100_000, n).astype(np.int64) * 1_000
    return TradeColumns(ids, price.astype(np.int64), qty, ids * 2, ids * 2 + 1, times, rng.random(n) < 0.5)


def windows_of(symbol: str, trades: TradeColumns) -> dict[WindowId, TradeColumns]:
    return {(symbol, start): part for start, part in split_by(trades, window_start(trades.time))}


def write_rolled(store: ShardWriter, trades: TradeColumns, *, chunk_ms: int = 600_000, age_ms: int = 60_000) -> None:
    """Write `trades` in chunks of trade time, rolling up as a live persist would."""
    starts = trades.time - trades.time % chunk_ms
    for start, part in split_by(trades, starts):
        store.write(windows_of(SYMBOL, part))
        store.roll_up(SYMBOL, start + chunk_ms - age_ms)


def rolled_store(path: Path, trades: TradeColumns, *, chunk_ms: int = 600_000) -> Path:
    """A shard at `path` holding `trades` written by `write_rolled`, closed (tests open readers on it)."""
    store = ShardWriter(path)
    try:
        write_rolled(store, trades, chunk_ms=chunk_ms)
    finally:
        store.close()
    return path


def same(a: TradeColumns, b: TradeColumns) -> bool:
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a.arrays(), b.arrays(), strict=True))


def coverage_figures(found: Coverage) -> tuple[int, int | None, int | None, int | None, int | None]:
    return found.trade_count, found.first_id, found.last_id, found.first_time, found.last_time


def figures_of(held: TradeColumns, start: int, end: int) -> tuple[int, int | None, int | None, int | None, int | None]:
    """What a coverage of ``[start, end)`` says of `held` (ids need not rise with time here: seconds are drawn)."""
    trades = held.between(start, end)
    if len(trades) == 0:
        return 0, None, None, None, None
    ids, times = trades.agg_id, trades.time
    return len(trades), int(ids.min()), int(ids.max()), int(times.min()), int(times.max())
