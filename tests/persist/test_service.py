"""Persist against a real JetStream and RocksDB: windows written, bad messages dead-lettered, ids stored once."""

from __future__ import annotations

import asyncio
from pathlib import Path

import nats
import orjson
import pytest

from tests.harness import run_services, wait_for
from tradetape.bus.provision import ensure_streams
from tradetape.services.exchange import Exchange, ExchangeConfig
from tradetape.settings import Settings
from tradetape.store.reader import SecondaryStore, ShardReader
from tradetape.store.reads import read_all_trades
from tradetape.store.shards import ShardLockedError, find_shards

pytestmark = pytest.mark.timeout(60)


BASE_MS = 1_767_225_600_000  # 2026-01-01: trade times are epoch ms after 2017


def trade(agg_id: int, time_ms: int) -> bytes:
    """A trade `time_ms` after BASE_MS."""
    body = {"a": agg_id, "p": "100.5", "q": "0.25", "f": agg_id, "l": agg_id, "T": BASE_MS + time_ms, "m": True}
    return orjson.dumps(body)


async def test_bad_messages_are_deadlettered_and_repeats_stored_once(nats_url: str, tmp_path: Path) -> None:
    settings = Settings(nats_url=nats_url, data_dir=tmp_path, symbols=("BTCUSDT",))
    async with run_services(settings, "persist") as running:
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


def raw_trade(**fields: object) -> bytes:
    """A trade body with some fields replaced, spelled as a client would send it."""
    body: dict[str, object] = {"a": 10, "p": "100.5", "q": "0.25", "f": 10, "l": 10, "T": BASE_MS + 5_000, "m": False}
    body.update(fields)
    return orjson.dumps(body)


async def test_poison_messages_are_deadlettered_and_the_trades_around_them_stored(
    nats_url: str, tmp_path: Path
) -> None:
    settings = Settings(nats_url=nats_url, data_dir=tmp_path, symbols=("BTCUSDT",))
    client = await nats.connect(nats_url)
    js = client.jetstream()
    poison = [
        raw_trade(a=101, p="100000000000000"),  # 10^14: beyond the int64 fixed point
        b'{"a": 9223372036854775808, "p": "1", "q": "1", "f": 1, "l": 1, "T": 1767225600000, "m": true}',
        raw_trade(a=102, p="1\u0661\u0662"),  # Arabic-Indic digits
        b'{"a": 18446744073709551616, "p": "1", "q": "1", "f": 1, "l": 1, "T": 1767225600000, "m": true}',
        raw_trade(a=103, T=5),
        b"x" * (client.max_payload - 16),  # its dead letter must still fit the max payload
    ]
    try:
        await ensure_streams(js, settings)
        subject = "tape.trades.binance.BTCUSDT"
        for i, body in enumerate(poison):
            await js.publish(subject, trade(1 + i, 1_000 + i))
            await js.publish(subject, body)
        async with run_services(settings, "persist") as running:
            persist = running.services["persist"]

            async def settled() -> bool:
                return bool(persist.written["BTCUSDT"] == 6 and persist.deadlettered["BTCUSDT"] == len(poison))

            await wait_for(settled, timeout=30, running=running)
            running.check()
            info = await js.stream_info("TAPE_DEADLETTER")
            assert info.state.messages == len(poison)
            largest = await js.get_msg("TAPE_DEADLETTER", info.state.last_seq)
            assert largest.headers is not None and largest.headers["Tradetape-Truncated"] == "true"
            assert int(largest.headers["Tradetape-Original-Size"]) == client.max_payload - 16
            assert largest.data is not None and len(largest.data) < client.max_payload - 16
            consumer = await js.consumer_info("TAPE_TRADES", "persist-main")
            assert consumer.num_ack_pending == 0 and consumer.num_pending == 0
    finally:
        await client.close()
    reader = SecondaryStore(settings.shard_dir)
    try:
        assert read_all_trades(reader.catch_up(), "BTCUSDT").agg_id.tolist() == [1, 2, 3, 4, 5, 6]
    finally:
        reader.close()


@pytest.mark.slow
async def test_a_second_process_cannot_act_as_the_same_shard(nats_url: str, tmp_path: Path) -> None:
    settings = Settings(nats_url=nats_url, data_dir=tmp_path, symbols=("BTCUSDT",))
    async with run_services(settings, "persist"):
        await asyncio.sleep(0.3)
        with pytest.raises(ShardLockedError):
            async with run_services(settings, "persist"):
                await asyncio.sleep(2)


async def test_all_stores_the_symbols_exchange_info_lists_and_those_listed_later(nats_url: str, tmp_path: Path) -> None:
    listed = ("AAAUSDT", "BBBUSDT", "CCCUSDT")
    async with Exchange(ExchangeConfig(symbols=listed, rate=0)) as exchange:
        settings = Settings(nats_url=nats_url, data_dir=tmp_path, symbols="ALL", binance_rest_url=exchange.rest_url)
        client = await nats.connect(nats_url)
        js = client.jetstream()
        try:
            await ensure_streams(js, settings)
            for symbol in (*listed, "NEWUSDT"):  # NEWUSDT: listed after persist asked, first seen on the stream
                for agg_id in range(1, 21):
                    await js.publish(f"tape.trades.binance.{symbol}", trade(agg_id, agg_id * 10))
            await js.publish("tape.trades.binance.x.y", trade(1, 10))
            async with run_services(settings, "persist") as running:
                persist = running.services["persist"]

                async def settled() -> bool:
                    return bool(sum(persist.written.values()) == 80 and sum(persist.deadlettered.values()) == 1)

                await wait_for(settled, timeout=20, running=running)
                assert persist.symbols == (*listed, "NEWUSDT")
                consumer = await js.consumer_info("TAPE_TRADES", "persist-main")
                assert consumer.config.filter_subjects == ["tape.trades.binance.>"]
                assert consumer.num_ack_pending == 0 and consumer.num_pending == 0
                dead = await js.get_msg("TAPE_DEADLETTER", 1)
                assert dead.headers is not None and "not a trade subject" in dead.headers["Tradetape-Reason"]
        finally:
            await client.close()
    assert find_shards(tmp_path / "shards") == {"main": (*listed, "NEWUSDT")}
    reader = ShardReader(settings.shard_dir)
    try:
        assert [reader.coverage(s, None).trade_count for s in (*listed, "NEWUSDT")] == [20] * 4
    finally:
        reader.close()
