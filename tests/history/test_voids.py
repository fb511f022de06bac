"""Dumps holding Binance's void rows: imported (through a running persist or directly), counted, exported back.

A dump was refused whole for one void row before; now the void completes the id
sequence, `coverage` counts it, and anything looser than the pattern is still an error
naming its line.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import nats
import numpy as np
import pytest

from tests.harness import request, run_services
from tests.history.test_import_live import wait_for_persist
from tradetape.domain.columns import TradeColumns
from tradetape.history.dumps import DumpError, read_dump
from tradetape.history.export import export, read_frame
from tradetape.history.fetch import HistoryFetcher
from tradetape.history.load import TapeImporter
from tradetape.services.exchange import Exchange, ExchangeConfig, FaultConfig
from tradetape.settings import Settings
from tradetape.store.reader import SecondaryStore
from tradetape.store.reads import read_all_trades, read_coverage
from tradetape.store.voids import read_voids

pytestmark = pytest.mark.timeout(120)

REAL = Path(__file__).parent / "data" / "BTCUSDT-aggTrades-2026-01-01.head5000.csv"
DAY = (1_767_225_600_000, 1_767_312_000_000)
VOID_ID = 3_800_400_000
"""The one multiple of 5000 among the real file's agg ids."""


def held(shard_dir: Path) -> tuple[TradeColumns, TradeColumns]:
    """The stored trades and voids of BTCUSDT."""
    secondary = SecondaryStore(shard_dir)
    try:
        db = secondary.catch_up()
        return read_all_trades(db, "BTCUSDT"), read_voids(db, "BTCUSDT", None, 3_600_000)
    finally:
        secondary.close()


def with_voids(tmp_path: Path, rows: dict[int, str]) -> Path:
    """The real file with the rows at the given indexes replaced (id, time and side kept)."""
    lines = REAL.read_text().splitlines()
    for index, middle in rows.items():
        fields = lines[index].split(",")
        lines[index] = ",".join([fields[0], middle, *fields[5:]])
    path = tmp_path / "BTCUSDT-aggTrades-2026-01-01.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.slow
async def test_a_dump_holding_a_void_is_imported_through_persist_and_counted(nats_url: str, tmp_path: Path) -> None:
    faults = FaultConfig(void_every=5000)
    config = ExchangeConfig(symbols=("BTCUSDT",), replay=(REAL,), rate=0, original_times=True, faults=faults)
    async with Exchange(config) as exchange:
        settings = Settings(
            nats_url=nats_url,
            data_dir=tmp_path / "data",
            symbols=("BTCUSDT",),
            retention_days=3650,
            history_url=exchange.rest_url,
        )
        async with run_services(settings, "persist", "analytics") as running:
            await wait_for_persist(settings)
            async with TapeImporter(settings) as importer:
                report = await HistoryFetcher(settings, importer).fetch("BTCUSDT", date(2026, 1, 1), date(2026, 1, 1))
            assert not report.failed, report.failed
            [result] = report.imported
            counts = (result.route, result.trades, result.added, result.voids, result.gaps)
            assert counts == ("persist", 5000, 5000, 1, [])
            client = await nats.connect(nats_url)
            try:
                coverage, _ = await request(client, "tape.query.coverage.BTCUSDT", {})
            finally:
                await client.close()
            running.check()
    assert (coverage["trade_count"], coverage["void_count"], coverage["gaps"]) == (4999, 1, [])
    trades, voids = held(settings.shard_dir)
    expected = read_dump(REAL).trades
    assert np.array_equal(trades.agg_id, expected.agg_id[expected.agg_id != VOID_ID])
    assert voids.agg_id.tolist() == [VOID_ID] and voids.first_id.tolist() == [-1] and voids.qty.tolist() == [0]


async def test_voids_in_binance_forms_import_directly_and_exports_carry_them_back(tmp_path: Path) -> None:
    source = with_voids(tmp_path, {10: "0.00000000,0.00000000,-1,-1", 4321: "0,0,-1,-1"})
    dump = read_dump(source)
    assert int(dump.trades.voids().sum()) == 2
    settings = Settings(data_dir=tmp_path / "data", symbols=("BTCUSDT",), retention_days=3650)
    async with TapeImporter(settings) as importer:
        result = await importer.import_dump(dump)
    assert (result.route, result.added, result.voids, result.gaps) == ("direct", 5000, 2, [])
    trades, voids = held(settings.shard_dir)
    assert len(trades) == 4998 and np.array_equal(voids.agg_id, dump.trades.agg_id[[10, 4321]])
    assert read_frame(settings.shard_dir, "BTCUSDT", *DAY).height == 4998  # the analysis table: trades only
    for suffix in (".csv", ".parquet"):
        path = tmp_path / f"BTCUSDT-day{suffix}"
        assert export(settings.shard_dir, "BTCUSDT", *DAY, path) == 5000
        again = read_dump(path)
        assert all(np.array_equal(a, b) for a, b in zip(again.trades.arrays(), dump.trades.arrays(), strict=True))
        other = Settings(data_dir=tmp_path / suffix[1:], symbols=("BTCUSDT",), retention_days=3650)
        async with TapeImporter(other) as importer:
            assert (await importer.import_dump(again)).voids == 2
        secondary = SecondaryStore(other.shard_dir)
        try:
            found = read_coverage(secondary.catch_up(), "BTCUSDT", None)
        finally:
            secondary.close()
        assert (found.trade_count, found.void_count, found.gaps) == (4998, 2, [])


@pytest.mark.parametrize(
    ("middle", "reason"),
    [
        ("0,0,-1,0", "trade id must be from 0"),
        ("0,0,0,0", "price must be positive"),
        ("0,0.1,-1,-1", "trade id must be from 0"),
        ("87648.21,0,-1,-1", "trade id must be from 0"),
        ("0,0,-2,-2", "trade id must be from 0"),
    ],
)
def test_rows_looser_than_the_void_pattern_are_refused_with_their_line(
    tmp_path: Path, middle: str, reason: str
) -> None:
    with pytest.raises(DumpError, match=reason) as caught:
        read_dump(with_voids(tmp_path, {2345: middle}))
    assert caught.value.line == 2346


async def test_a_void_for_an_id_stored_as_a_trade_is_a_conflict_and_the_trade_stays(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", symbols=("BTCUSDT",), retention_days=3650)
    async with TapeImporter(settings) as importer:
        await importer.import_dump(read_dump(REAL))
        with pytest.raises(DumpError, match="as another kind \\(a trade\\)") as caught:
            await importer.import_dump(read_dump(with_voids(tmp_path, {77: "0.00000000,0.00000000,-1,-1"})))
    assert caught.value.line == 78
    trades, voids = held(settings.shard_dir)
    assert len(trades) == 5000 and len(voids) == 0
