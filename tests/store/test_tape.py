"""The tools' reads through the store's face: a `ShardView` reads what the writer holds, as its own tape does."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.store.synthetic import SYMBOL, T0, same, tape, write_rolled
from tests.store.test_voids import voided
from tradetape.domain.columns import TradeColumns
from tradetape.store import ImportConflictError, ShardView, ShardWriter, StoredTape

HOUR = 3_600_000


def test_a_view_reads_what_the_writer_holds(tmp_path: Path) -> None:
    trades = tape(6_000, 3 * HOUR)
    kept = ~np.isin(np.arange(len(trades)), np.arange(2_000, 2_010))  # a gap of ten ids
    void = np.isin(np.arange(len(trades)), [5, 4_321])
    stored = voided(trades, void).take(kept)
    store = ShardWriter(tmp_path / "shard")
    try:
        write_rolled(store, stored)
        assert store.segment_count(SYMBOL) == 3
        with ShardView(tmp_path / "shard") as view:
            seen = view.tape()
            assert seen is not None
            for reads in (store.tape, seen):
                check_reads(reads, trades, stored, void[kept])
    finally:
        store.close()


def check_reads(reads: StoredTape, trades: TradeColumns, stored: TradeColumns, void: np.ndarray) -> None:
    assert reads.segment_ms == HOUR
    runs = reads.runs(SYMBOL)
    assert runs.count == len(stored) and runs.gaps() == [(3_000, 3_009)]
    middle = (T0 + HOUR // 2, T0 + 2 * HOUR + HOUR // 3)
    within = stored.take(~void)
    assert same(reads.trades(SYMBOL, *middle), within.between(*middle))
    assert same(reads.voids(SYMBOL, None), stored.take(void))
    whole = reads.coverage(SYMBOL, None)
    assert (whole.trade_count, whole.void_count, whole.gaps) == (len(stored) - 2, 2, [(3_000, 3_009)])
    assert reads.gap_times(SYMBOL, 3_000, 3_009) == (int(trades.time[1_999]), int(trades.time[2_010]))
    held = stored.take(slice(100, 110))
    assert reads.differences(SYMBOL, held) == []
    moved = TradeColumns.of_arrays([*held.arrays()[:5], held.time + 1, held.buyer_maker])
    assert reads.differences(SYMBOL, moved)[0] == (0, "with another trade time")
    with pytest.raises(ImportConflictError, match="with another trade time"):
        reads.check_same(SYMBOL, moved)


def test_a_view_before_the_writer_made_the_database_has_no_tape(tmp_path: Path) -> None:
    view = ShardView(tmp_path / "shard")
    assert view.tape() is None
    view.close()
    view.close()
