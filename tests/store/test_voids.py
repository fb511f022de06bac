"""Voids in a real RocksDB directory: held in the index, never among the trades, never replaced, trimmed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.store.synthetic import SYMBOL, T0, same, tape, windows_of, write_rolled
from tradetape.domain.columns import TradeColumns
from tradetape.history.bulk import decode_batch, encode_batch
from tradetape.store.conflicts import ImportConflictError
from tradetape.store.keys import SUMMARY, kind_prefix, prefix_end
from tradetape.store.lookup import time_of_id
from tradetape.store.reads import read_all_trades, read_coverage, read_price_levels
from tradetape.store.rocks import scan
from tradetape.store.voids import read_voids
from tradetape.store.writer import ShardWriter

HOUR = 3_600_000


def voided(trades: TradeColumns, where: np.ndarray) -> TradeColumns:
    """`trades` with the rows `where` turned into Binance's void rows (same id, time and side)."""
    price, qty, first, last = (column.copy() for column in (trades.price, trades.qty, trades.first_id, trades.last_id))
    price[where], qty[where], first[where], last[where] = 0, 0, -1, -1
    return TradeColumns(trades.agg_id, price, qty, first, last, trades.time, trades.buyer_maker)


def summaries(store: ShardWriter) -> list[bytes]:
    prefix = kind_prefix(SUMMARY, SYMBOL)
    return [value for _, value in scan(store.db, prefix, prefix_end(prefix))]


@pytest.fixture
def stores(tmp_path: Path) -> tuple[ShardWriter, ShardWriter]:
    with_voids, without = ShardWriter(tmp_path / "voids"), ShardWriter(tmp_path / "plain")
    yield with_voids, without  # type: ignore[misc]
    with_voids.close()
    without.close()


def test_voids_complete_the_sequence_and_no_trade_read_summary_or_histogram_sees_them(
    stores: tuple[ShardWriter, ShardWriter],
) -> None:
    store, plain = stores
    trades = tape(3_000, 3 * HOUR)
    void = np.isin(np.arange(len(trades)), [0, 1_234, 2_999])  # the first, one inside, the last
    write_rolled(store, voided(trades, void))
    write_rolled(plain, trades.take(~void))
    assert same(read_all_trades(store.db, SYMBOL), trades.take(~void))
    assert summaries(store) == summaries(plain)
    for time_range in (None, (T0, T0 + 3 * HOUR), (T0 + 1_000_000, T0 + 2 * HOUR + 7)):
        levels, plain_levels = (read_price_levels(s.db, SYMBOL, time_range) for s in (store, plain))
        assert levels is not None and plain_levels is not None
        assert all(np.array_equal(a, b) for a, b in zip(levels.arrays(), plain_levels.arrays(), strict=True))
    assert same(read_voids(store.db, SYMBOL, None, HOUR), voided(trades, void).take(void))
    assert store.index(SYMBOL).count == 3_000 and plain.index(SYMBOL).gaps() != []
    whole = read_coverage(store.db, SYMBOL, None)
    assert (whole.trade_count, whole.void_count, whole.gaps) == (2_997, 3, [])
    assert (whole.first_id, whole.last_id) == (int(trades.agg_id[0]), int(trades.agg_id[-1]))
    assert (whole.first_time, whole.last_time) == (int(trades.time[0]), int(trades.time[-1]))
    middle = read_coverage(store.db, SYMBOL, (int(trades.time[1_000]), int(trades.time[2_000])))
    assert (middle.void_count, middle.gaps) == (1, [])
    assert middle.trade_count + middle.void_count == middle.last_id - middle.first_id + 1  # type: ignore[operator]
    assert time_of_id(store.db, SYMBOL, int(trades.agg_id[1_234])) == int(trades.time[1_234])


def test_a_stored_row_is_never_replaced_by_the_other_kind(stores: tuple[ShardWriter, ShardWriter]) -> None:
    store, _ = stores
    trades = tape(400, 60_000, start_ms=T0 + 5 * HOUR)
    void = np.arange(len(trades)) % 100 == 7
    live = voided(trades, void)
    assert store.write(windows_of(SYMBOL, live)) == 400
    eighth = np.arange(len(trades)) == 8
    flipped = TradeColumns.concat([trades.take(void), voided(trades, eighth).take(eighth)])  # trades for the voids
    assert store.write(windows_of(SYMBOL, flipped)) == 0  # held ids: the stored rows stay
    assert same(read_all_trades(store.db, SYMBOL), trades.take(~void))
    assert same(read_voids(store.db, SYMBOL, None, HOUR), live.take(void))
    with pytest.raises(ImportConflictError, match="as another kind \\(a void\\)") as caught:
        store.import_trades(SYMBOL, trades, roll_up_before_ms=T0)
    assert caught.value.agg_id == int(trades.agg_id[7])
    with pytest.raises(ImportConflictError, match="as another kind \\(a trade\\)") as caught:
        store.import_trades(SYMBOL, voided(live, eighth), roll_up_before_ms=T0)
    assert caught.value.agg_id == int(trades.agg_id[8])
    again = store.import_trades(SYMBOL, live, roll_up_before_ms=T0)
    assert (again.added, again.duplicates) == (0, 400)


def test_an_import_batch_carries_voids_and_retention_trims_them_with_the_index(
    stores: tuple[ShardWriter, ShardWriter],
) -> None:
    store, _ = stores
    trades = tape(6_000, 6 * HOUR)
    void = np.isin(np.arange(len(trades)), [10, 2_500, 2_900, 5_000])
    rows = voided(trades, void)
    source, batch = decode_batch(encode_batch("test", rows))  # the bulk encoding persist's importer reads
    assert source == "test" and same(batch, rows)
    counts = store.import_trades(SYMBOL, batch, roll_up_before_ms=T0 + 7 * HOUR)
    assert (counts.added, counts.duplicates) == (6_000, 0)
    cutoff = int(trades.time[2_700])  # between two voids of one segment span
    expired = trades.time < cutoff
    assert store.delete_before(SYMBOL, cutoff) == int(expired.sum())
    kept = read_voids(store.db, SYMBOL, None, HOUR)
    assert kept.agg_id.tolist() == trades.agg_id[[2_900, 5_000]].tolist()
    whole = read_coverage(store.db, SYMBOL, None)
    first_kept = int(trades.agg_id[~expired][0])
    held = int((~expired).sum())
    assert (whole.first_id, whole.trade_count, whole.void_count, whole.gaps) == (first_kept, held - 2, 2, [])
    store.delete_before(SYMBOL, int(trades.time[-1]) + 1)
    assert len(read_voids(store.db, SYMBOL, None, HOUR)) == 0 and store.index(SYMBOL).count == 0
