"""Persist against a real JetStream and RocksDB: windows written, bad messages dead-lettered, ids stored once."""

from __future__ import annotations

from pathlib import Path

import nats
import orjson
import pytest

from tests.harness import run_services, wait_for
from tradetape.bus.provision import ensure_streams
from tradetape.settings import Settings
from tradetape.store.reader import SecondaryStore, read_all_trades

pytestmark = pytest.mark.timeout(60)


BASE_MS = 1_767_225_600_000  # 2026-01-01: trade times are epoch ms after 2017


def trade(agg_id: int, time_ms: int) -> bytes:
    """A trade `time_ms` after BASE_MS."""
    body = {"a": agg_id, "p": "100.5", "q": "0.25", "f": agg_id, "l": agg_id, "T": BASE_MS + time_ms, "m": True}
    return orjson.dumps(body)


async def test_bad_messages_are_deadlettered_and_repeats_stored_once(nats_url: str, tmp_path: Path) -> None:
    settings = Settings(nats_url=nats_url, data_dir=tmp_path, symbols=("BTCUSDT",))
    async with run_services(settings, "persist", persist={"linger": 0.02}) as running:
        client = await nats.connect(nats_url)
        js = client.jetstream()
        try:
            await ensure_streams(js, settings)  # idempotent: whoever starts first creates them
            subject = "tape.trades.binance.BTCUSDT"
            for agg_id, time_ms in ((1, 1_000), (2, 1_999), (3, 2_000)):
                await js.publish(subject, trade(agg_id, time_ms), headers={"Nats-Msg-Id": f"binance:BTCUSDT:{agg_id}"})
            await js.publish(subject, b'{"a": 4, "p": "oops"}')
            await js.publish(subject, trade(2, 1_999), headers={"Nats-Msg-Id": "a-different-id"})
            persist = running.services["persist"]

            async def settled() -> bool:
                return bool(persist.written["BTCUSDT"] == 4 and persist.deadlettered["BTCUSDT"] == 1)

            await wait_for(settled, timeout=20, running=running)
            assert persist.already_stored == 1
            dead = await js.get_msg("TAPE_DEADLETTER", 1)
            assert dead.subject == "tape.deadletter.persist.BTCUSDT"
            assert dead.headers is not None and "'f'" in dead.headers["Tradetape-Reason"]
            consumer = await js.consumer_info("TAPE_TRADES", "persist-main")
            assert consumer.num_ack_pending == 0 and consumer.num_pending == 0
        finally:
            await client.close()
    reader = SecondaryStore(settings.shard_dir)
    try:
        stored = read_all_trades(reader.catch_up(), "BTCUSDT")
    finally:
        reader.close()
    assert stored.agg_id.tolist() == [1, 2, 3]
    assert stored.price.tolist() == [10_050_000_000] * 3
