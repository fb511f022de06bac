"""Persist believes nothing it can check: conflicting copies, implausible ids and quantities of 0 are refused.

Real nats-server, the real persist service in-process, real RocksDB; trades are published
straight into the stream as a foreign publisher would (the permissions that keep such a
publisher out are tested in tests/operate/test_permissions.py).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import nats
import orjson
import pytest
from nats.js import JetStreamContext

from tests.harness import run_services, wait_for
from tradetape.bus.ledger import LedgerEntry, LedgerGap, ledger_bucket, write_entry
from tradetape.bus.provision import ensure_streams
from tradetape.settings import Settings
from tradetape.store.reader import SecondaryStore, ShardReader
from tradetape.store.reads import read_all_trades

pytestmark = pytest.mark.timeout(90)

BASE_MS = 1_767_225_600_000
SUBJECT = "tape.trades.binance.BTCUSDT"


def trade(agg_id: int, price: str = "100.5", qty: str = "0.25") -> bytes:
    body = {"a": agg_id, "p": price, "q": qty, "f": agg_id, "l": agg_id, "T": BASE_MS + agg_id % 10**6, "m": True}
    return orjson.dumps(body)


async def publish(js: JetStreamContext, agg_id: int, subject: str = SUBJECT, **fields: Any) -> None:
    """As ingest publishes: with the `Nats-Msg-Id` of the trade."""
    symbol = subject.rsplit(".", 1)[-1]
    await js.publish(subject, trade(agg_id, **fields), headers={"Nats-Msg-Id": f"binance:{symbol}:{agg_id}"})


async def deadletter_reasons(js: JetStreamContext) -> list[str]:
    info = await js.stream_info("TAPE_DEADLETTER")
    reasons = []
    for seq in range(1, info.state.last_seq + 1):
        msg = await js.get_msg("TAPE_DEADLETTER", seq)
        assert msg.headers is not None
        reasons.append(msg.headers["Tradetape-Reason"])
    return reasons


def stored_ids(settings: Settings, symbol: str = "BTCUSDT") -> list[int]:
    reader = SecondaryStore(settings.shard_dir)
    try:
        return [int(i) for i in read_all_trades(reader.catch_up(), symbol).agg_id]
    finally:
        reader.close()


async def test_a_copy_of_a_stored_agg_id_with_other_contents_is_deadlettered_as_conflict(
    nats_url: str, tmp_path: Path
) -> None:
    settings = Settings(nats_url=nats_url, data_dir=tmp_path, symbols=("BTCUSDT",))
    client = await nats.connect(nats_url)
    js = client.jetstream()
    try:
        await ensure_streams(js, settings)
        for agg_id in (1, 2, 3):
            await publish(js, agg_id)
        await js.publish(SUBJECT, trade(3, price="99.5"))  # the same batch: the first of id 3 is kept
        async with run_services(settings, "persist") as running:
            persist = running.services["persist"]
            await wait_for(lambda: _true(persist.written["BTCUSDT"] == 3), timeout=20, running=running)
            await js.publish(SUBJECT, trade(2, price="101.5"))  # no Nats-Msg-Id: not a duplicate to the stream
            await js.publish(SUBJECT, trade(1, qty="0.5"))
            await js.publish(SUBJECT, trade(1))  # the same trade again: a redelivery, not a conflict
            await wait_for(lambda: _true(persist.refused["conflict"] == 3), timeout=20, running=running)
            await wait_for(lambda: _true(persist.already_stored == 1), timeout=20, running=running)
            snapshot = await persist.metrics.snapshot()
            assert snapshot.errors["conflict"] == 3
            reasons = await deadletter_reasons(js)
            consumer = await js.consumer_info("TAPE_TRADES", "persist-main")
            assert consumer.num_ack_pending == 0 and consumer.num_pending == 0
    finally:
        await client.close()
    assert [reason.split(":")[0] for reason in reasons] == ["conflict"] * 3
    assert "agg id 3 arrived twice in one batch" in reasons[0]
    assert "agg id 2 is stored with another price" in reasons[1]
    assert "agg id 1 is stored with another quantity" in reasons[2]
    reader = SecondaryStore(settings.shard_dir)
    try:
        stored = read_all_trades(reader.catch_up(), "BTCUSDT")
    finally:
        reader.close()
    assert stored.agg_id.tolist() == [1, 2, 3]
    assert stored.price.tolist() == [10_050_000_000] * 3 and stored.qty.tolist() == [25_000_000] * 3


@pytest.mark.slow
async def test_an_id_far_beyond_the_newest_is_implausible_unless_ingest_ledger_asks_for_it(
    nats_url: str, tmp_path: Path
) -> None:
    symbols = ("BTCUSDT", "ETHUSDT")
    settings = Settings(nats_url=nats_url, data_dir=tmp_path, symbols=symbols, ingest_max_id_jump=100_000)
    client = await nats.connect(nats_url)
    js = client.jetstream()
    try:
        await ensure_streams(js, settings)
        async with run_services(settings, "persist") as running:
            persist = running.services["persist"]
            for agg_id in (1, 2, 3):
                await publish(js, agg_id)
            await publish(js, 5_000_000, subject="tape.trades.binance.ETHUSDT")  # a new symbol: nothing to measure
            await wait_for(lambda: _true(sum(persist.written.values()) == 4), timeout=20, running=running)
            started = time.monotonic()
            await publish(js, 500_003)  # a plausible-looking fake, 500,000 ahead
            await publish(js, 4)
            await wait_for(lambda: _true(persist.refused["implausible_id"] == 1), timeout=30, running=running)
            assert time.monotonic() - started >= 3.5, "given back twice before it is dead-lettered"
            assert persist.held_implausible == 2

            # ingest saw a jump it believed (REST showed it): its ledger asks for the ids in between
            kv = await ledger_bucket(js, create=True)
            assert kv is not None
            gap = LedgerGap(5, 700_000, int(time.time() * 1000))
            await write_entry(kv, LedgerEntry("BTCUSDT", 4, 4, int(time.time() * 1000), (gap,)))
            await publish(js, 700_001)  # the live trade after the jump
            await publish(js, 650_000)  # one the gap fill brings
            await wait_for(lambda: _true(persist.written["BTCUSDT"] == 6), timeout=20, running=running)
            assert persist.refused["implausible_id"] == 1
            snapshot = await persist.metrics.snapshot()
            assert snapshot.errors["implausible_id"] == 1
            reasons = await deadletter_reasons(js)
    finally:
        await client.close()
    assert len(reasons) == 1 and reasons[0].startswith("implausible_id: agg id 500003 is 499999 beyond 4")
    assert stored_ids(settings) == [1, 2, 3, 4, 650_000, 700_001]
    assert stored_ids(settings, "ETHUSDT") == [5_000_000]


@pytest.mark.slow
async def test_a_real_jump_published_before_ingest_wrote_its_ledger_is_stored_after_a_second_look(
    nats_url: str, tmp_path: Path
) -> None:
    settings = Settings(nats_url=nats_url, data_dir=tmp_path, symbols=("BTCUSDT",), ingest_max_id_jump=100_000)
    client = await nats.connect(nats_url)
    js = client.jetstream()
    try:
        await ensure_streams(js, settings)
        kv = await ledger_bucket(js, create=True)
        assert kv is not None
        async with run_services(settings, "persist") as running:
            persist = running.services["persist"]
            await publish(js, 1)
            await wait_for(lambda: _true(persist.written["BTCUSDT"] == 1), timeout=20, running=running)
            await publish(js, 300_000)
            await wait_for(lambda: _true(persist.held_implausible == 1), timeout=20, running=running)
            await write_entry(kv, LedgerEntry("BTCUSDT", 1, 300_000, int(time.time() * 1000), ()))
            await wait_for(lambda: _true(persist.written["BTCUSDT"] == 2), timeout=20, running=running)
            assert persist.refused["implausible_id"] == 0
    finally:
        await client.close()
    reader = ShardReader(settings.shard_dir)
    try:
        coverage = reader.coverage("BTCUSDT", None)
    finally:
        reader.close()
    assert (coverage.trade_count, coverage.last_id) == (2, 300_000)


async def test_a_quantity_of_0_is_deadlettered_and_never_stored(nats_url: str, tmp_path: Path) -> None:
    settings = Settings(nats_url=nats_url, data_dir=tmp_path, symbols=("BTCUSDT",))
    client = await nats.connect(nats_url)
    js = client.jetstream()
    try:
        await ensure_streams(js, settings)
        await publish(js, 1)
        await publish(js, 2, qty="0.00000000")
        async with run_services(settings, "persist") as running:
            persist = running.services["persist"]
            await wait_for(lambda: _true(persist.deadlettered["BTCUSDT"] == 1), timeout=20, running=running)
            reasons = await deadletter_reasons(js)
    finally:
        await client.close()
    assert reasons == ["quantity must be positive, got '0.00000000'"]
    assert stored_ids(settings) == [1]


async def _true(value: bool) -> bool:
    return value
