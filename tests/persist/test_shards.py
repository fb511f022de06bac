"""Persist shards against a real JetStream: a split by stable hash, each shard its own database."""

from __future__ import annotations

import time
from pathlib import Path

import nats
import orjson
import pytest

from tests.harness import run_services, wait_for
from tradetape.bus.provision import ensure_streams
from tradetape.services.exchange import Exchange, ExchangeConfig
from tradetape.settings import Settings, shard_of
from tradetape.store.reader import ShardReader
from tradetape.store.shards import find_shards

pytestmark = pytest.mark.timeout(60)

SYMBOLS = ("BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT")


async def test_two_shards_split_four_symbols_and_together_hold_everything(nats_url: str, tmp_path: Path) -> None:
    shards = [
        Settings(nats_url=nats_url, data_dir=tmp_path, symbols=SYMBOLS, shard=f"s{i}", shard_count=2, shard_index=i)
        for i in range(2)
    ]
    assert sorted(shards[0].shard_symbols + shards[1].shard_symbols) == sorted(SYMBOLS)
    assert shards[0].shard_symbols and shards[1].shard_symbols
    await publish_and_persist(nats_url, shards)
    assert find_shards(tmp_path / "shards") == {s.shard: s.shard_symbols for s in shards}
    assert_each_shard_holds_its_own(shards)


async def test_two_shards_split_all_that_exchange_info_lists(nats_url: str, tmp_path: Path) -> None:
    async with Exchange(ExchangeConfig(symbols=SYMBOLS, rate=0)) as exchange:
        shards = [
            Settings(
                nats_url=nats_url,
                data_dir=tmp_path,
                symbols="ALL",
                binance_rest_url=exchange.rest_url,
                shard=f"s{i}",
                shard_count=2,
                shard_index=i,
            )
            for i in range(2)
        ]
        client = await nats.connect(nats_url)
        try:
            await publish_and_persist(nats_url, shards)
            for settings in shards:
                info = await client.jetstream().consumer_info("TAPE_TRADES", f"persist-{settings.shard}")
                share = settings.shard_share(sorted(SYMBOLS))
                assert info.config.filter_subjects == [f"tape.trades.binance.{s}" for s in share]
        finally:
            await client.close()
    assert find_shards(tmp_path / "shards") == {s.shard: s.shard_share(sorted(SYMBOLS)) for s in shards}
    assert_each_shard_holds_its_own(shards)


async def publish_and_persist(nats_url: str, shards: list[Settings]) -> None:
    """100 trades of each symbol, then both shards until together they wrote all 400."""
    now = int(time.time() * 1000)
    client = await nats.connect(nats_url)
    js = client.jetstream()
    try:
        await ensure_streams(js, shards[0])
        for symbol in SYMBOLS:
            for agg_id in range(1, 101):
                body = {
                    "a": agg_id,
                    "p": "1.5",
                    "q": "2",
                    "f": agg_id,
                    "l": agg_id,
                    "T": now - 1000 + agg_id,
                    "m": False,
                }
                await js.publish(f"tape.trades.binance.{symbol}", orjson.dumps(body))
        async with (
            run_services(shards[0], "persist") as first,
            run_services(shards[1], "persist") as second,
        ):
            persists = [first.services["persist"], second.services["persist"]]

            async def all_written() -> bool:
                return sum(sum(p.written.values()) for p in persists) == 400

            await wait_for(all_written, timeout=30, running=first)
    finally:
        await client.close()


def assert_each_shard_holds_its_own(shards: list[Settings]) -> None:
    for settings in shards:
        reader = ShardReader(settings.shard_dir)
        try:
            for symbol in SYMBOLS:
                count = reader.coverage(symbol, None).trade_count
                assert count == (100 if shard_of(symbol, 2) == settings.shard_index else 0), (settings.shard, symbol)
        finally:
            reader.close()
