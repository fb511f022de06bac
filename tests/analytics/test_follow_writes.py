"""Analytics follows persist's writes by their notices: a write is caught up with before any query asks, a query
does not catch up itself while notices keep it current, and a flood of notices costs one catch-up at a time."""

from __future__ import annotations

import asyncio
from pathlib import Path

import nats
import pytest

from tests.harness import coverage_of, run_services, wait_for
from tests.persist.test_service import trade
from tradetape.bus.provision import ensure_streams
from tradetape.bus.subjects import trade_subject, written_subject
from tradetape.settings import Settings

pytestmark = pytest.mark.timeout(90)


@pytest.mark.slow
async def test_writes_are_caught_up_on_notice_not_per_query(nats_url: str, tmp_path: Path) -> None:
    settings = Settings(nats_url=nats_url, data_dir=tmp_path, symbols=("BTCUSDT",))
    client = await nats.connect(nats_url)
    js = client.jetstream()
    try:
        await ensure_streams(js, settings)
        notices = await client.subscribe(written_subject(settings.shard))
        async with run_services(settings, "persist", "analytics") as running:
            reader = running.services["analytics"]._reader
            await js.publish(trade_subject("BTCUSDT"), trade(1, 1_000), headers={"Nats-Msg-Id": "binance:BTCUSDT:1"})
            await wait_for(lambda: _stored(client, 1), 30, interval=0.05, running=running)
            await notices.next_msg(timeout=5)

            # A second write: caught up with on its notice, before any query asks.
            caught_up = reader.catch_ups
            await js.publish(trade_subject("BTCUSDT"), trade(2, 1_100), headers={"Nats-Msg-Id": "binance:BTCUSDT:2"})
            await notices.next_msg(timeout=5)
            await wait_for(lambda: _true(reader.catch_ups > caught_up), 10, interval=0.005, running=running)
            assert (await coverage_of(client, "BTCUSDT"))["last_id"] == 2

            # Queries while nothing is written: they answer from the state the notices kept current.
            caught_up = reader.catch_ups
            loop = asyncio.get_running_loop()
            began = loop.time()
            for _ in range(100):
                assert (await coverage_of(client, "BTCUSDT"))["trade_count"] == 2
            seconds = loop.time() - began
            assert reader.catch_ups - caught_up <= seconds + 1, "at most one catch-up a second of queries"

            # A flood of notices (anyone allowed to publish them): one catch-up at a time, never one each.
            caught_up = reader.catch_ups
            for _ in range(500):
                await client.publish(written_subject(settings.shard), b"not json")
            await client.flush()
            await asyncio.sleep(1.0)
            assert 1 <= reader.catch_ups - caught_up < 100
            assert (await coverage_of(client, "BTCUSDT"))["trade_count"] == 2
    finally:
        await client.close()


async def _stored(client: nats.NATS, count: int) -> bool:
    return bool((await coverage_of(client, "BTCUSDT")).get("trade_count") == count)


async def _true(value: bool) -> bool:
    return value
