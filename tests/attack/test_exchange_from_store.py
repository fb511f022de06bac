"""`exchange --from-store` serving a spot symbol and a futures instrument of the same name (`BTCUSDT`,
`um:BTCUSDT`) from a real store through a real analytics worker and nats-server: each history gets its own trades."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from websockets.asyncio.client import connect as ws_connect

from tests.analytics.test_replay import HOUR_MS, answered, tape, write_store
from tests.harness import run_services, wait_for
from tradetape.client import TapeClient
from tradetape.services.exchange import Exchange, ExchangeConfig
from tradetape.services.exchange.stored import replayed
from tradetape.settings import Settings

pytestmark = pytest.mark.timeout(120)

INSTRUMENTS = ("BTCUSDT", "um:BTCUSDT")


async def test_a_futures_instrument_is_served_into_its_own_history_not_the_spot_symbols(
    nats_url: str, tmp_path: Path
) -> None:
    now_ms = int(time.time() * 1000)
    start, end = now_ms - 3 * HOUR_MS, now_ms - HOUR_MS
    tapes = {"BTCUSDT": tape(1_500, start, HOUR_MS, 21, 1), "um:BTCUSDT": tape(1_200, start, HOUR_MS, 22, 500_000)}
    settings = Settings(nats_url=nats_url, data_dir=tmp_path / "data", symbols=INSTRUMENTS)
    write_store(settings.shard_dir, tapes, start + HOUR_MS)
    async with (
        run_services(settings, "analytics") as running,
        await TapeClient.connect(url=nats_url) as client,
    ):
        await wait_for(lambda: answered(client, "um:BTCUSDT"), timeout=20, running=running)
        expected = {
            name: [a for frame in [f async for f in client.replay(name, start=start, end=end)] for a in frame["agg_id"]]
            for name in INSTRUMENTS
        }
        config = ExchangeConfig(symbols=INSTRUMENTS, rate=0, stored=replayed(settings, INSTRUMENTS, start, end, None))
        async with Exchange(config) as exchange:
            async with ws_connect(f"{exchange.ws_url}/ws/btcusdt@aggTrade") as websocket:  # starts the feed
                got = 0
                while got < len(expected["BTCUSDT"]):
                    await asyncio.wait_for(websocket.recv(), 20)
                    got += 1

            async def served() -> bool:
                return len(exchange.history("um:BTCUSDT")) >= len(expected["um:BTCUSDT"])

            await wait_for(served, timeout=20)
            for name in INSTRUMENTS:
                assert [t.agg_id for t in exchange.history(name).trades()] == expected[name], name
        running.check()
