"""Import while the system runs: batches through the shard's persist over NATS, and the same tape as ingest's.

Real nats-server, the real persist (and ingest, analytics) services in-process, the
simulator replaying the real BTCUSDT file with its original times.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import nats
import numpy as np
import pytest
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError

from tests.harness import run_services, wait_until_stored
from tradetape.api.methods import volume_profile
from tradetape.bus.subjects import import_subject
from tradetape.domain.columns import TradeColumns
from tradetape.history.dumps import DumpError, read_dump
from tradetape.history.load import TapeImporter
from tradetape.services.exchange import Exchange, ExchangeConfig
from tradetape.settings import Settings
from tradetape.store.reader import SecondaryStore, ShardReader
from tradetape.store.reads import read_all_trades
from tradetape.testing import simulator_settings

REAL = Path(__file__).parent / "data" / "BTCUSDT-aggTrades-2026-01-01.head5000.csv"
DAY = (1_767_225_600_000, 1_767_312_000_000)


def stored(shard_dir: Path) -> TradeColumns:
    secondary = SecondaryStore(shard_dir)
    try:
        return read_all_trades(secondary.catch_up(), "BTCUSDT")
    finally:
        secondary.close()


def same(a: TradeColumns, b: TradeColumns) -> bool:
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a.arrays(), b.arrays(), strict=True))


async def wait_for_persist(settings: Settings) -> None:
    """Until persist answers bulk imports (an empty body is refused as invalid: it is listening)."""
    assert settings.nats_url is not None
    client = await nats.connect(settings.nats_url)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                reply = await client.request(import_subject("BTCUSDT"), b"", timeout=1)
                assert b"invalid" in reply.data
                return
            except (NoRespondersError, NatsTimeoutError):
                assert time.monotonic() < deadline, "persist did not start"
                await asyncio.sleep(0.05)
    finally:
        await client.close()


async def test_import_while_persist_runs_goes_through_it_in_batches(
    nats_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("tradetape.history.load.BATCH_TRADES", 700)  # the first and last 350, then seven more batches
    settings = Settings(nats_url=nats_url, data_dir=tmp_path / "data", symbols=("BTCUSDT",), retention_days=3650)
    dump = read_dump(REAL)
    async with run_services(settings, "persist") as running:
        await wait_for_persist(settings)
        async with TapeImporter(settings) as importer:
            first = await importer.import_dump(dump)
            second = await importer.import_dump(dump)
            lines = REAL.read_text().splitlines()
            fields = lines[1233].split(",")
            fields[1] = "1.00000000"
            lines[1233] = ",".join(fields)
            changed = tmp_path / "BTCUSDT-aggTrades-2026-01-01.csv"
            changed.write_text("\n".join(lines) + "\n")
            with pytest.raises(DumpError) as caught:
                await importer.import_dump(read_dump(changed))
        running.check()
        assert same(stored(settings.shard_dir), dump.trades)
    assert (first.route, first.added, first.duplicates, first.gaps) == ("persist", 5000, 0, [])
    assert (second.added, second.duplicates) == (0, 5000)
    assert caught.value.line == 1234 and "another price" in str(caught.value)


@pytest.mark.slow
async def test_importing_the_real_file_gives_the_same_tape_and_profile_as_ingesting_it(
    nats_url: str, tmp_path: Path
) -> None:
    config = ExchangeConfig(symbols=("BTCUSDT",), replay=(REAL,), rate=0, original_times=True)
    async with Exchange(config) as exchange:
        live = simulator_settings(exchange, nats_url, tmp_path / "live", "BTCUSDT")
        async with run_services(live, "persist", "analytics", "ingest") as running:
            client = await nats.connect(nats_url)
            try:
                await wait_until_stored(client, "BTCUSDT", 5000, running=running)
            finally:
                await client.close()
            ingested = stored(live.shard_dir)
            live_reader = ShardReader(live.shard_dir)
            try:
                request = volume_profile.VolumeProfileRequest(start=DAY[0], end=DAY[1], row_size="10")
                live_profile = volume_profile.handle(live_reader, "BTCUSDT", request, DAY[1])
            finally:
                live_reader.close()
    imported_settings = Settings(data_dir=tmp_path / "imported", symbols=("BTCUSDT",))
    async with TapeImporter(imported_settings) as importer:
        await importer.import_dump(read_dump(REAL))
    assert same(stored(imported_settings.shard_dir), ingested)
    reader = ShardReader(imported_settings.shard_dir)
    try:
        imported_profile = volume_profile.handle(reader, "BTCUSDT", request, DAY[1])
    finally:
        reader.close()
    assert imported_profile == live_profile
    assert imported_profile.trade_count == 5000 and imported_profile.total_volume == "79.74436"
