"""repair: gaps punched into a stored tape are closed from the simulator's REST, while persist runs."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
from websockets.asyncio.client import connect as ws_connect

from tests.harness import run_services
from tests.history.test_fetch import two_days
from tests.history.test_import_live import same, stored, wait_for_persist
from tradetape.binance.rest import RestClient
from tradetape.history.dumps import read_dump
from tradetape.history.fetch import HistoryFetcher
from tradetape.history.load import TapeImporter
from tradetape.history.repair import repair
from tradetape.services.exchange import Exchange, ExchangeConfig, FaultConfig
from tradetape.settings import Settings

REAL = Path(__file__).parent / "data" / "BTCUSDT-aggTrades-2026-01-01.head5000.csv"


async def test_repair_closes_punched_gaps_from_rest_and_reports_what_stays_open(nats_url: str, tmp_path: Path) -> None:
    dump = read_dump(REAL)
    ids = dump.trades.agg_id
    holed = dump.trades.take(np.r_[0:1000, 1100:3000, 3001:5000])
    config = ExchangeConfig(symbols=("BTCUSDT",), replay=(REAL,), rate=0, original_times=True)
    async with Exchange(config) as exchange:
        async with ws_connect(f"{exchange.ws_url}/ws/btcusdt@aggTrade") as ws:
            await asyncio.wait_for(exchange.wait_replay("BTCUSDT"), 10)
            ws.transport.abort()  # a client that read nothing would make the close wait
        settings = Settings(
            nats_url=nats_url,
            data_dir=tmp_path / "data",
            symbols=("BTCUSDT",),
            binance_rest_url=exchange.rest_url,
            retention_days=3650,  # persist's retention would delete a tape of 2026-01-01 at its start
        )
        async with TapeImporter(settings) as importer:
            await importer.import_trades("BTCUSDT", "holed", holed)
        async with run_services(settings, "persist") as running:
            await wait_for_persist(settings)
            async with TapeImporter(settings) as importer:
                gaps = importer.gaps("BTCUSDT", None)
                assert gaps == [(int(ids[1000]), int(ids[1099])), (int(ids[3000]), int(ids[3000]))]
                assert importer.gaps("BTCUSDT", (int(dump.trades.time[2000]), int(dump.trades.time[4000]))) == gaps[1:]
                rest = RestClient(exchange.rest_url, weight_per_minute=1200)

                exchange.set_faults(FaultConfig(rest_error="503"))
                failed = await repair(importer, rest, "BTCUSDT", gaps)
                assert failed.closed == [] and len(failed.still_open) == 2
                assert "REST failed: HTTP 503" in failed.still_open[0][2]

                exchange.set_faults(FaultConfig())
                report = await repair(importer, rest, "BTCUSDT", gaps)
                assert (report.closed, report.still_open, report.added) == (gaps, [], 101)
                assert importer.gaps("BTCUSDT", None) == []
            running.check()
            assert same(stored(settings.shard_dir), dump.trades)


async def test_a_large_gap_in_a_past_day_comes_from_its_dump_even_when_rest_fails(tmp_path: Path) -> None:
    source = two_days(tmp_path)
    dump = read_dump(source)
    ids = dump.trades.agg_id
    config = ExchangeConfig(
        symbols=("BTCUSDT",), replay=(source,), rate=0, original_times=True, faults=FaultConfig(rest_error="503")
    )
    async with Exchange(config) as exchange:
        settings = Settings(
            data_dir=tmp_path / "data", symbols=("BTCUSDT",), history_url=exchange.rest_url, retention_days=3650
        )
        async with TapeImporter(settings) as importer:
            await importer.import_trades("BTCUSDT", "holed", dump.trades.take(np.r_[0:500, 900:4000, 4001:5000]))
            gaps = importer.gaps("BTCUSDT", None)
            rest = RestClient(exchange.rest_url, weight_per_minute=1200)
            fetcher = HistoryFetcher(settings, importer)
            report = await repair(importer, rest, "BTCUSDT", gaps, fetcher=fetcher, dump_min_ids=300)
        # 400 ids of 2026-01-01: its dump; the one id of 2026-01-02 is below the threshold and REST fails.
        assert report.closed == [(int(ids[500]), int(ids[899]))] and report.from_dumps == 400
        assert [(low, high) for low, high, _ in report.still_open] == [(int(ids[4000]), int(ids[4000]))]
        assert "REST failed: HTTP 503" in report.still_open[0][2]
