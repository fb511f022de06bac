"""fetch-history against the simulator's own dumps: checksums verified, resumable, monthly where a month is whole."""

from __future__ import annotations

import asyncio
import urllib.request
from datetime import date
from pathlib import Path

import numpy as np

from tradetape.domain.columns import TradeColumns
from tradetape.history.dumps import read_dump
from tradetape.history.fetch import HistoryFetcher, periods
from tradetape.history.load import TapeImporter
from tradetape.services.exchange import Exchange, ExchangeConfig, FaultConfig
from tradetape.settings import Settings
from tradetape.store.reader import SecondaryStore
from tradetape.store.reads import read_all_trades

REAL = Path(__file__).parent / "data" / "BTCUSDT-aggTrades-2026-01-01.head5000.csv"
DAY_US = 86_400_000_000


def two_days(tmp_path: Path) -> Path:
    """The real trades, the second half moved to 2026-01-02 (ids and times still rising)."""
    lines = REAL.read_text().splitlines()
    moved = [",".join([*f[:5], str(int(f[5]) + DAY_US), *f[6:]]) for f in (line.split(",") for line in lines[2500:])]
    path = tmp_path / "BTCUSDT-aggTrades-2026-01-01.csv"
    path.write_text("\n".join(lines[:2500] + moved) + "\n")
    return path


def stored(settings: Settings) -> TradeColumns:
    secondary = SecondaryStore(settings.shard_dir)
    try:
        return read_all_trades(secondary.catch_up(), "BTCUSDT")
    finally:
        secondary.close()


def test_whole_past_months_are_monthly_files_and_other_days_daily() -> None:
    found = periods("BTCUSDT", date(2026, 1, 30), date(2026, 3, 2), today=date(2026, 12, 1))
    assert [p.label for p in found] == ["2026-01-30", "2026-01-31", "2026-02", "2026-03-01", "2026-03-02"]
    assert found[2].path == "data/spot/monthly/aggTrades/BTCUSDT/BTCUSDT-aggTrades-2026-02.zip"
    assert [p.kind for p in periods("BTCUSDT", date(2026, 12, 1), date(2026, 12, 31), today=date(2026, 12, 5))] == [
        "daily"
    ] * 31


async def test_a_bad_checksum_stores_nothing_for_that_day_and_a_rerun_resumes(tmp_path: Path) -> None:
    source = two_days(tmp_path)
    expected = read_dump(source).trades
    faults = FaultConfig(corrupt_checksum="2026-01-01")
    config = ExchangeConfig(symbols=("BTCUSDT",), replay=(source,), rate=0, original_times=True, faults=faults)
    async with Exchange(config) as exchange:
        settings = Settings(data_dir=tmp_path / "data", symbols=("BTCUSDT",), history_url=exchange.rest_url)
        async with TapeImporter(settings) as importer:
            fetcher = HistoryFetcher(settings, importer)
            report = await fetcher.fetch("BTCUSDT", date(2026, 1, 1), date(2026, 1, 3))
            assert [name for name, _ in report.failed] == ["BTCUSDT-aggTrades-2026-01-01.zip"]
            assert "does not match its .CHECKSUM" in report.failed[0][1]
            assert [r.source for r in report.imported] == ["BTCUSDT-aggTrades-2026-01-02.zip"]
            assert report.missing == ["BTCUSDT-aggTrades-2026-01-03.zip"]
            day_two = expected.take(expected.time >= 1_767_312_000_000)
            held = stored(settings)
            assert len(held) == 2500 and np.array_equal(held.agg_id, day_two.agg_id)
            assert not list((settings.data_dir / "history" / "downloads").iterdir())

            exchange.set_faults(FaultConfig())
            again = await fetcher.fetch("BTCUSDT", date(2026, 1, 1), date(2026, 1, 2))
            assert [r.source for r in again.imported] == ["BTCUSDT-aggTrades-2026-01-01.zip"]
            assert again.skipped == ["BTCUSDT-aggTrades-2026-01-02.zip"] and not again.failed
        held = stored(settings)
        assert all(np.array_equal(a, b) for a, b in zip(held.arrays(), expected.arrays(), strict=True))


async def test_a_partial_download_resumes_and_a_whole_month_is_one_file(tmp_path: Path) -> None:
    source = two_days(tmp_path)
    config = ExchangeConfig(symbols=("BTCUSDT",), replay=(source,), rate=0, original_times=True)
    async with Exchange(config) as exchange:
        settings = Settings(data_dir=tmp_path / "data", symbols=("BTCUSDT",), history_url=exchange.rest_url)
        url = f"{exchange.rest_url}/data/spot/daily/aggTrades/BTCUSDT/BTCUSDT-aggTrades-2026-01-01.zip"
        body = await asyncio.to_thread(lambda: urllib.request.urlopen(url).read())
        downloads = settings.data_dir / "history" / "downloads"
        downloads.mkdir(parents=True)
        partial = downloads / "BTCUSDT-aggTrades-2026-01-01.zip.part"
        async with TapeImporter(settings) as importer:
            fetcher = HistoryFetcher(settings, importer)
            partial.write_bytes(b"x" * (len(body) // 2))  # resumed, not restarted: the checksum catches it
            spoilt = await fetcher.fetch("BTCUSDT", date(2026, 1, 1), date(2026, 1, 1))
            assert "does not match" in spoilt.failed[0][1] and not partial.exists()
            partial.write_bytes(body[: len(body) // 2])
            daily = await fetcher.fetch("BTCUSDT", date(2026, 1, 1), date(2026, 1, 1))
            assert [r.added for r in daily.imported] == [2500]
            month = await fetcher.fetch("BTCUSDT", date(2026, 1, 1), date(2026, 1, 31))
        assert [(r.source, r.added, r.duplicates) for r in month.imported] == [
            ("BTCUSDT-aggTrades-2026-01.zip", 2500, 2500)
        ]
        assert len(stored(settings)) == 5000
