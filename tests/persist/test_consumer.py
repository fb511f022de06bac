"""Persist's consumer against a real JetStream: re-provisioned when deleted, undeliverable messages dead-lettered."""

from __future__ import annotations

from pathlib import Path

import nats
import pytest

from tests.harness import run_services, wait_for
from tests.persist.test_service import trade
from tradetape.bus.provision import PERSIST_MAX_DELIVER, ensure_persist_consumer, ensure_streams
from tradetape.settings import Settings
from tradetape.store.reader import ShardReader

pytestmark = pytest.mark.timeout(90)

SUBJECT = "tape.trades.binance.BTCUSDT"


def stored_ids(settings: Settings) -> list[int]:
    reader = ShardReader(settings.shard_dir)
    try:
        return [int(i) for i in reader.trades("BTCUSDT", None).agg_id]
    finally:
        reader.close()


@pytest.mark.slow
async def test_a_deleted_consumer_and_a_lost_stream_are_provisioned_again(nats_url: str, tmp_path: Path) -> None:
    settings = Settings(nats_url=nats_url, data_dir=tmp_path, symbols=("BTCUSDT",))
    client = await nats.connect(nats_url)
    js = client.jetstream()
    try:
        await ensure_streams(js, settings)
        async with run_services(settings, "persist") as running:
            persist = running.services["persist"]

            async def stored(count: int) -> bool:
                return bool(sum(persist.written.values()) - persist.already_stored == count)

            await js.publish(SUBJECT, trade(1, 1_000))
            await wait_for(lambda: stored(1), timeout=10, running=running)
            await js.delete_consumer("TAPE_TRADES", "persist-main")
            await js.publish(SUBJECT, trade(2, 2_000))
            await wait_for(lambda: stored(2), timeout=30, running=running)
            # As if NATS came back without its JetStream state: no stream, no consumer.
            await js.delete_stream("TAPE_TRADES")

            async def stream_back() -> bool:
                return "TAPE_TRADES" in [info.config.name for info in await js.streams_info()]

            await wait_for(stream_back, timeout=30, running=running)
            await js.publish(SUBJECT, trade(3, 3_000))
            await wait_for(lambda: stored(3), timeout=30, running=running)
    finally:
        await client.close()
    assert stored_ids(settings) == [1, 2, 3]


async def test_a_message_never_acked_within_max_deliver_is_deadlettered(nats_url: str, tmp_path: Path) -> None:
    """A message that made persist fail `max_deliver` times is given up and dead-lettered, not retried forever."""
    settings = Settings(nats_url=nats_url, data_dir=tmp_path, symbols=("BTCUSDT",))
    client = await nats.connect(nats_url)
    js = client.jetstream()
    try:
        await ensure_streams(js, settings)
        durable = await ensure_persist_consumer(js, settings)
        await js.publish(SUBJECT, trade(1, 1_000))
        # A persist that fails on this message every time (here: one that naks it).
        failing = await js.pull_subscribe_bind(durable, "TAPE_TRADES")
        for _ in range(PERSIST_MAX_DELIVER):
            [msg] = await failing.fetch(1, timeout=5)
            await msg.nak()
        await failing.unsubscribe()
        await js.publish(SUBJECT, trade(2, 2_000))
        async with run_services(settings, "persist") as running:
            persist = running.services["persist"]

            async def settled() -> bool:
                return bool(persist.written["BTCUSDT"] == 1 and persist.deadlettered["BTCUSDT"] == 1)

            await wait_for(settled, timeout=30, running=running)
            dead = await js.get_msg("TAPE_DEADLETTER", 1)
            assert dead.headers is not None and "deliveries" in dead.headers["Tradetape-Reason"]
            assert dead.data == trade(1, 1_000)
    finally:
        await client.close()
    assert stored_ids(settings) == [2]
