"""Import straight into segments, merged by agg id; export to Parquet and CSV and back; DuckDB agrees.

All against a real RocksDB directory, through the direct route (no persist holds the shard).
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pytest

from tradetape.domain.columns import TradeColumns
from tradetape.history.dumps import DumpError, read_dump
from tradetape.history.export import export, read_frame, tape_frame
from tradetape.history.load import ImportTargetError, TapeImporter, shard_dir_of
from tradetape.settings import Settings, shard_of
from tradetape.store.keys import window_start
from tradetape.store.reader import SecondaryStore
from tradetape.store.reads import read_all_trades
from tradetape.store.shards import find_shards
from tradetape.store.windows import split_by
from tradetape.store.writer import ShardWriter

REAL = Path(__file__).parent / "data" / "BTCUSDT-aggTrades-2026-01-01.head5000.csv"
DAY = (1_767_225_600_000, 1_767_312_000_000)


def settings_in(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", symbols=("BTCUSDT",))


def stored(settings: Settings) -> tuple[TradeColumns, list[bytes]]:
    secondary = SecondaryStore(settings.shard_dir)
    try:
        db = secondary.catch_up()
        return read_all_trades(db, "BTCUSDT"), [bytes(key) for key in db.keys()]  # noqa: SIM118 - an Rdict iterates items
    finally:
        secondary.close()


def same(a: TradeColumns, b: TradeColumns) -> bool:
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a.arrays(), b.arrays(), strict=True))


async def test_import_goes_into_segments_and_twice_adds_nothing(tmp_path: Path) -> None:
    settings = settings_in(tmp_path)
    dump = read_dump(REAL)
    async with TapeImporter(settings) as importer:
        first = await importer.import_dump(dump)
        second = await importer.import_dump(dump)
    assert (first.added, first.duplicates, first.gaps, first.route) == (5000, 0, [], "direct")
    assert (second.added, second.duplicates) == (0, 5000)
    trades, keys = stored(settings)
    assert same(trades, dump.trades)
    assert not [key for key in keys if key.startswith(b"trades:")]  # no 1-second windows
    assert [key for key in keys if key.startswith(b"seg:")] == [b"seg:BTCUSDT:1767225600000"]
    assert (settings.shard_dir / "shard.json").exists()


async def test_with_all_an_import_lands_in_the_shard_its_hash_names_and_joins_its_manifest(tmp_path: Path) -> None:
    mine = Settings(data_dir=tmp_path / "data", symbols="ALL", shard_count=2, shard_index=shard_of("BTCUSDT", 2))
    other = mine.model_copy(update={"shard_index": 1 - mine.shard_index})
    with pytest.raises(ImportTargetError, match="by its hash it is not shard"):
        shard_dir_of(other, "BTCUSDT")
    async with TapeImporter(mine) as importer:
        assert (await importer.import_dump(read_dump(REAL))).added == 5000
    assert find_shards(mine.data_dir / "shards") == {"main": ("BTCUSDT",)}
    assert same(stored(mine)[0], read_dump(REAL).trades)


async def test_an_overlap_with_the_live_tape_adds_nothing_and_a_hole_is_reported(tmp_path: Path) -> None:
    settings = settings_in(tmp_path)
    dump = read_dump(REAL)
    live = dump.trades.take(slice(4000, 5000))
    store = ShardWriter(settings.shard_dir)
    try:
        store.write({("BTCUSDT", start): w for start, w in split_by(live, window_start(live.time))})
    finally:
        store.close()
    holed = dump.trades.take(np.r_[0:1000, 1100:4500])
    async with TapeImporter(settings) as importer:
        result = await importer.import_trades("BTCUSDT", dump.source, holed)
    assert (result.added, result.duplicates) == (3900, 500)
    first_missing = int(dump.trades.agg_id[1000])
    assert result.gaps == [(first_missing, first_missing + 99)]
    trades, keys = stored(settings)
    assert same(trades, dump.trades.take(np.r_[0:1000, 1100:5000]))
    assert not [key for key in keys if key.startswith(b"trades:")]  # the live windows were rolled up first


async def test_different_contents_for_a_stored_agg_id_name_the_line_and_write_nothing(tmp_path: Path) -> None:
    settings = settings_in(tmp_path)
    lines = REAL.read_text().splitlines()
    async with TapeImporter(settings) as importer:
        await importer.import_dump(read_dump(REAL))
        before, _ = stored(settings)
        changed = list(lines)
        fields = changed[2999].split(",")
        fields[2] = "9.99"
        changed[2999] = ",".join(fields)
        later = [",".join([str(3800402495 + i), *line.split(",")[1:]]) for i, line in enumerate(lines[4990:])]
        path = tmp_path / "BTCUSDT-aggTrades-2026-01-01.csv"
        path.write_text("\n".join(changed + later) + "\n")
        with pytest.raises(DumpError) as caught:
            await importer.import_dump(read_dump(path))
    assert caught.value.line == 3000 and "another quantity" in str(caught.value)
    assert same(stored(settings)[0], before)  # the ten new trades were not written either


async def test_export_then_import_round_trips_exactly_and_duckdb_sums_match(tmp_path: Path) -> None:
    settings = settings_in(tmp_path)
    dump = read_dump(REAL)
    async with TapeImporter(settings) as importer:
        await importer.import_dump(dump)
    parquet, csv = tmp_path / "BTCUSDT-day.parquet", tmp_path / "BTCUSDT-day.csv"
    assert export(settings.shard_dir, "BTCUSDT", *DAY, parquet) == 5000
    assert export(settings.shard_dir, "BTCUSDT", *DAY, csv) == 5000
    for path in (parquet, csv):
        again = read_dump(path)
        assert same(again.trades, dump.trades)
        other = Settings(data_dir=tmp_path / path.suffix[1:], symbols=("BTCUSDT",))
        async with TapeImporter(other) as importer:
            assert (await importer.import_dump(again)).added == 5000
        assert same(stored(other)[0], dump.trades)
    total, buys, rows, kind = duckdb.sql(
        f"select sum(qty), sum(qty) filter (where not buyer_maker), count(*), typeof(sum(qty)) from '{parquet}'"
    ).fetchall()[0]
    assert rows == 5000 and kind.startswith("DECIMAL")
    assert int(total * 10**8) == int(dump.trades.qty.sum())
    assert int(buys * 10**8) == int(dump.trades.qty[~dump.trades.buyer_maker].sum())
    frame = tape_frame("btcusdt", "2026-01-01", "2026-01-02T00:00:00Z", settings)
    assert frame.equals(read_frame(settings.shard_dir, "BTCUSDT", *DAY))
    assert frame.schema["price"] == pl.Decimal(38, 8) and frame.schema["time"] == pl.Datetime("ms", "UTC")
    assert frame.height == 5000 and str(frame["price"][0]) == "87648.21000000"
