"""Nothing accepted is lost or duplicated when a service is killed or NATS goes away."""

from __future__ import annotations

import asyncio
import csv
import signal
from decimal import Decimal
from pathlib import Path
from typing import Any

import nats
import pytest

from tests.harness import coverage_of, replay_pipeline, request, wait_for, wait_until_stored
from tests.processes import ServiceProcesses, service_env
from tradetape.runtime.nats_server import EmbeddedNatsServer
from tradetape.services.exchange import BUNDLED_REPLAY, Exchange, ExchangeConfig
from tradetape.testing import simulator_settings

pytestmark = pytest.mark.timeout(150)

FIRST_ID, LAST_ID = 3800397495, 3800402494


def csv_total_volume() -> Decimal:
    with BUNDLED_REPLAY.open() as handle:
        return sum((Decimal(row[2]) for row in csv.reader(handle)), Decimal(0))


async def assert_complete_and_exact(client: Any) -> None:
    found = await wait_until_stored(client, "BTCUSDT", 5000, timeout=90)
    assert (found["first_id"], found["last_id"]) == (FIRST_ID, LAST_ID)
    profile, _ = await request(
        client, "tape.query.volume_profile.BTCUSDT", {"last": "30d", "row_size": "10"}
    )
    assert profile["trade_count"] == 5000
    assert Decimal(profile["total_volume"]) == csv_total_volume()


async def some_stored(client: Any) -> bool:
    return bool((await coverage_of(client, "BTCUSDT")).get("trade_count", 0) >= 500)


@pytest.mark.slow
async def test_killed_ingest_and_persist_resume_without_loss_or_duplicates(
    nats_url: str, tmp_path: Path, processes: ServiceProcesses
) -> None:
    config = ExchangeConfig(symbols=("BTCUSDT",), replay=(BUNDLED_REPLAY,), rate=0, speed=80)
    async with Exchange(config) as exchange:
        settings = simulator_settings(exchange, nats_url, tmp_path / "data", "BTCUSDT")
        env = service_env(settings)
        persist = processes.start(["persist"], env)
        ingest = processes.start(["ingest"], env)
        processes.start(["analytics"], env)
        client = await nats.connect(nats_url)
        try:
            await wait_for(lambda: some_stored(client), timeout=60)
            persist.send_signal(signal.SIGKILL)
            ingest.send_signal(signal.SIGKILL)
            persist.wait(10)
            ingest.wait(10)
            partial = (await coverage_of(client, "BTCUSDT"))["trade_count"]
            assert partial < 5000, "the replay must still be running while the services are down"
            await asyncio.sleep(1.5)
            processes.start(["persist"], env)
            processes.start(["ingest"], env)
            await assert_complete_and_exact(client)
        finally:
            await client.close()
        processes.stop_all()
        restarted_ingest_log = processes.log_of(4)
        assert "gap filled" in restarted_ingest_log, restarted_ingest_log[-2000:]


@pytest.mark.slow
async def test_services_ride_out_a_nats_restart(tmp_path: Path) -> None:
    server = EmbeddedNatsServer(tmp_path / "nats")
    await server.start()
    try:
        async with replay_pipeline(server.url, tmp_path / "data", speed=80) as (_, running, client):
            await wait_for(lambda: some_stored(client), timeout=60, running=running)
            port = server.port
            await server.stop()
            await asyncio.sleep(2)
            server = EmbeddedNatsServer(tmp_path / "nats", port=port)
            await server.start()
            await assert_complete_and_exact(client)
            running.check()
    finally:
        await server.stop()
