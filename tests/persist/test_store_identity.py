"""One store, one shard: an analytics worker from another data directory refuses to answer for the shard.

Two data directories against one real nats-server: persist and a worker on the first, a
second worker started from the second (empty) directory. That worker used to join the
shard's queue group and answer `coverage` from its empty store half the time; now it
refuses to start, naming both directories, and every answer comes from the real store.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import nats
import orjson
import pytest

from tests.harness import coverage_of, run_services, wait_for, wait_until_stored
from tests.processes import ServiceProcesses, service_env
from tradetape.bus.provision import ensure_streams
from tradetape.bus.shard_stores import ForeignStoreError, read_shard_store
from tradetape.settings import Settings
from tradetape.store.shards import MANIFEST_FILE, store_id

pytestmark = pytest.mark.timeout(120)

SYMBOL = "BTCUSDT"


def live_trade(agg_id: int) -> bytes:
    now = int(time.time() * 1000)
    return orjson.dumps({"a": agg_id, "p": "100.5", "q": "0.25", "f": agg_id, "l": agg_id, "T": now, "m": True})


@pytest.mark.slow
async def test_a_worker_of_another_data_directory_refuses_to_join_the_shard(
    nats_url: str, tmp_path: Path, processes: ServiceProcesses
) -> None:
    own = Settings(nats_url=nats_url, data_dir=tmp_path / "a", symbols=(SYMBOL,))
    foreign = Settings(nats_url=nats_url, data_dir=tmp_path / "b", symbols=(SYMBOL,))
    client = await nats.connect(nats_url)
    js = client.jetstream()
    try:
        await ensure_streams(js, own)
        for agg_id in range(1, 51):
            await js.publish(f"tape.trades.binance.{SYMBOL}", live_trade(agg_id))
        async with run_services(own, "persist", "analytics") as running:
            await wait_until_stored(client, SYMBOL, 50, running=running)
            record = await read_shard_store(js, "main")
            assert record is not None and record.store_id == store_id(own.shard_dir)
            assert record.dir == str(own.shard_dir.resolve())

            with pytest.raises(ForeignStoreError) as caught:
                async with run_services(foreign, "analytics") as refused:
                    await asyncio.wait({refused.tasks["analytics"]}, timeout=30)
            message = str(caught.value)
            assert str(own.shard_dir.resolve()) in message and str(foreign.shard_dir.resolve()) in message

            worker = processes.start(["analytics"], service_env(foreign))
            exit_code = await asyncio.wait_for(asyncio.to_thread(worker.wait), timeout=60)
            assert exit_code != 0
            assert str(own.shard_dir.resolve()) in processes.log_of(0)

            answers = [(await coverage_of(client, SYMBOL))["trade_count"] for _ in range(20)]
            assert answers == [50] * 20
    finally:
        await client.close()
    manifest = json.loads((own.shard_dir / MANIFEST_FILE).read_text())
    assert manifest["store_id"] == record.store_id, "the id is written once and kept"


@pytest.mark.slow
async def test_the_store_id_is_made_once_and_a_worker_of_the_same_directory_starts(
    nats_url: str, tmp_path: Path
) -> None:
    settings = Settings(nats_url=nats_url, data_dir=tmp_path, symbols=(SYMBOL,))
    ids = []
    for _ in range(2):
        async with run_services(settings, "persist"):
            await wait_for(lambda: _exists(settings.shard_dir / MANIFEST_FILE), timeout=20)
            await asyncio.sleep(0.2)
            ids.append(store_id(settings.shard_dir))
    assert ids[0] is not None and ids == [ids[0]] * 2
    async with run_services(settings, "analytics") as running:
        client = await nats.connect(nats_url)
        try:
            reply = await wait_for(lambda: coverage_of(client, SYMBOL), timeout=20, running=running)
        finally:
            await client.close()
    assert reply["trade_count"] == 0


async def _exists(path: Path) -> bool:
    return path.exists()
