"""Group commit against a real JetStream and RocksDB: a write holds what arrived while the last one was written,
never a fixed linger, and each durable write is announced (notice, live trades) before its messages are acked."""

from __future__ import annotations

import asyncio
import functools
import time
from pathlib import Path

import nats
import orjson
import pytest

from tests.harness import run_services, wait_for
from tests.persist.test_service import trade
from tradetape.api.live.messages import LiveTradesUpdate
from tradetape.bus.provision import ensure_streams
from tradetape.bus.subjects import live_trades_subject, trade_subject, written_subject
from tradetape.services.persist.service import PersistService
from tradetape.settings import Settings

pytestmark = pytest.mark.timeout(60)


async def test_a_trade_at_a_quiet_moment_is_written_alone_and_announced(nats_url: str, tmp_path: Path) -> None:
    """A write never waits for more trades: the second trade is published only once the first is announced, so a
    persist that held a write back for a fuller batch (or a second trade) never announces the first."""
    settings = Settings(nats_url=nats_url, data_dir=tmp_path, symbols=("BTCUSDT",))
    client = await nats.connect(nats_url)
    js = client.jetstream()
    try:
        await ensure_streams(js, settings)
        notices = await client.subscribe(written_subject(settings.shard))
        live = await client.subscribe(live_trades_subject("BTCUSDT"))
        await client.flush()
        async with run_services(settings, "persist") as running:
            persist = running.services["persist"]
            await wait_for(lambda: _true(persist.symbols == ("BTCUSDT",)), 20, interval=0.02, running=running)
            await js.publish(trade_subject("BTCUSDT"), trade(1, 1_000), headers={"Nats-Msg-Id": "binance:BTCUSDT:1"})
            first = LiveTradesUpdate.model_validate_json((await live.next_msg(timeout=20)).data)
            notice = orjson.loads((await notices.next_msg(timeout=5)).data)
            await js.publish(trade_subject("BTCUSDT"), trade(2, 1_050), headers={"Nats-Msg-Id": "binance:BTCUSDT:2"})
            second = LiveTradesUpdate.model_validate_json((await live.next_msg(timeout=20)).data)
            await wait_for(lambda: _true(persist.written["BTCUSDT"] == 2), 20, interval=0.02, running=running)
            assert persist.batches == 2, "each trade was written as soon as it came, alone"
    finally:
        await client.close()
    assert [t.a for t in first.trades] == [1] and [t.a for t in second.trades] == [2]
    assert (first.run, first.seq, second.seq) == (second.run, 1, 2)
    assert first.trades[0].p == "100.5" and first.trades[0].q == "0.25" and first.voids == []
    assert notice["added"] == 1 and notice["stored_at"] == first.stored_at


async def _true(value: bool) -> bool:
    return value


async def _stored(persist: PersistService, count: int) -> bool:
    return persist.written["BTCUSDT"] == count


async def test_a_write_is_announced_before_it_is_synced_and_acked_after(nats_url: str, tmp_path: Path) -> None:
    """Visible before durable: persist writes unsynced, announces, syncs the log, and only then acks."""
    settings = Settings(nats_url=nats_url, data_dir=tmp_path, symbols=("BTCUSDT",))
    client = await nats.connect(nats_url)
    js = client.jetstream()
    try:
        await ensure_streams(js, settings)
        async with run_services(settings, "persist") as running:
            persist = running.services["persist"]
            await wait_for(lambda: _true(persist.symbols == ("BTCUSDT",)), 20, interval=0.02, running=running)
            for agg_id in (1, 2, 3):
                headers = {"Nats-Msg-Id": f"binance:BTCUSDT:{agg_id}"}
                await js.publish(trade_subject("BTCUSDT"), trade(agg_id, 1_000 + agg_id), headers=headers)
                stored = functools.partial(_stored, persist, agg_id)
                await wait_for(stored, 20, interval=0.02, running=running)
            await wait_for(lambda: _true(len(persist.steps) >= 12), 20, interval=0.02, running=running)
            steps = list(persist.steps)
    finally:
        await client.close()
    writes = sorted({write for _, write in steps})
    assert len(writes) == 3
    for write in writes:
        assert [step for step, number in steps if number == write] == ["written", "announced", "durable", "acked"]


async def test_writes_start_no_closer_than_the_write_spacing(nats_url: str, tmp_path: Path) -> None:
    """With `persist_write_spacing_ms`, trades arriving one by one are gathered into writes at least that far apart."""
    settings = Settings(nats_url=nats_url, data_dir=tmp_path, symbols=("BTCUSDT",), persist_write_spacing_ms=300)
    client = await nats.connect(nats_url)
    js = client.jetstream()
    try:
        await ensure_streams(js, settings)
        async with run_services(settings, "persist") as running:
            persist = running.services["persist"]
            await wait_for(lambda: _true(persist.symbols == ("BTCUSDT",)), 20, interval=0.02, running=running)
            started = time.monotonic()
            for agg_id in range(1, 31):
                headers = {"Nats-Msg-Id": f"binance:BTCUSDT:{agg_id}"}
                await js.publish(trade_subject("BTCUSDT"), trade(agg_id, 1_000 + agg_id), headers=headers)
                await asyncio.sleep(0.01)
            await wait_for(functools.partial(_stored, persist, 30), 20, interval=0.02, running=running)
            stored_s = time.monotonic() - started
            writes = persist.batches
    finally:
        await client.close()
    # Each write's fetch returned after the first publish, before the last trade was stored, 0.3 s after the last one.
    assert writes <= stored_s / 0.3 + 1, (writes, stored_s)
