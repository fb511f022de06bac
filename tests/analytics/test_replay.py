"""Replay over a real NATS server from a real store: exact, in order, flow-controlled, bounded, paced.

The store is written through the real `ShardWriter` (hour segments and young windows, voids among the
trades); the analytics service runs in-process (`tests.harness.run_services`) or, where its memory is
measured, as its own process. What `trades` answers page by page is the reference.
"""

from __future__ import annotations

import time
from pathlib import Path

import nats
import numpy as np
import orjson
import polars as pl
import pytest

from tests.harness import run_services, wait_for
from tradetape.bus.subjects import replay_subject
from tradetape.client import ClientQueryError, TapeClient, TapeUnavailable
from tradetape.domain.columns import TradeColumns
from tradetape.domain.trade import VOID_TRADE_ID
from tradetape.settings import Settings
from tradetape.store import ShardWriter, window_start
from tradetape.store.windows import split_by

pytestmark = pytest.mark.timeout(120)

HOUR_MS = 3_600_000
SYMBOLS = ("BTCUSDT", "ETHUSDT")


def tape(count: int, start_ms: int, span_ms: int, seed: int, first_id: int) -> TradeColumns:
    """`count` trades over `span_ms`, many sharing a millisecond, every 50th a void."""
    rng = np.random.default_rng(seed)
    times = np.sort(rng.integers(start_ms, start_ms + span_ms, count) // 7 * 7).astype(np.int64)  # ties likely
    ids = np.arange(first_id, first_id + count, dtype=np.int64)
    price = (3_000 * 10**8 + np.cumsum(rng.integers(-3, 4, count)) * 10**6).astype(np.int64)
    qty = (rng.integers(1, 5000, count) * 1000).astype(np.int64)
    first = 2 * ids
    trades = TradeColumns(ids, price, qty, first, first + 1, times, rng.random(count) < 0.5)
    void = (ids % 50) == 0
    trades.price[void], trades.qty[void], trades.first_id[void], trades.last_id[void] = 0, 0, VOID_TRADE_ID, -1
    return trades


def write_store(path: Path, tapes: dict[str, TradeColumns], rolled_until_ms: int) -> None:
    """Older trades into hour segments, newer ones into 1-second windows, as persist leaves them."""
    store = ShardWriter(path)
    try:
        for symbol, trades in tapes.items():
            store.roll_up(symbol, rolled_until_ms)
            store.write({(symbol, s): w for s, w in split_by(trades, window_start(trades.time))})
    finally:
        store.close()


async def answered(tape_client: TapeClient, symbol: str) -> bool:
    """Whether the worker answers queries about `symbol` yet (it adds its endpoints one by one)."""
    try:
        await tape_client.query("coverage", symbol)
    except TapeUnavailable:
        return False
    return True


async def trades_pages(tape_client: TapeClient, symbol: str, start: int, end: int) -> pl.DataFrame:
    """What `trades` answers over the range, every page joined."""
    frames, cursor = [], None
    while True:
        fields: dict[str, object] = {"cursor": cursor} if cursor else {"start": start, "end": end, "limit": 5000}
        page = await tape_client.query("trades", symbol, **fields)
        frames.append(page.to_polars().with_columns(pl.lit(symbol).alias("symbol")))
        cursor = page.next_cursor
        if cursor is None:
            return pl.concat(frames)


async def test_two_symbols_replayed_exactly_and_in_order(nats_url: str, tmp_path: Path) -> None:
    now_ms = int(time.time() * 1000)
    start = now_ms - now_ms % HOUR_MS - 3 * HOUR_MS + 1234  # three hour boundaries inside the range
    tapes = {
        "BTCUSDT": tape(9_000, start - 60_000, 3 * HOUR_MS + 120_000, 1, 1_000),
        "ETHUSDT": tape(6_000, start - 60_000, 3 * HOUR_MS + 120_000, 2, 50_000),
    }
    settings = Settings(nats_url=nats_url, data_dir=tmp_path, symbols=SYMBOLS)
    write_store(settings.shard_dir, tapes, start + HOUR_MS + 500)
    end = start + 3 * HOUR_MS
    async with (
        run_services(settings, "analytics") as running,
        await TapeClient.connect(url=nats_url) as client,
    ):
        await wait_for(lambda: answered(client, "ETHUSDT"), timeout=20, running=running)
        expected = pl.concat([await trades_pages(client, symbol, start, end) for symbol in SYMBOLS])
        expected = expected.sort("time", "symbol", "agg_id").select(
            "symbol", "agg_id", "price", "qty", "first_id", "last_id", "time", "buyer_maker"
        )
        frames = [frame async for frame in client.replay(["ethusdt", "BTCUSDT"], start=start, end=end, chunk=700)]
        replayed = pl.concat(frames)
        assert replayed.schema == expected.schema
        assert len(expected) > 10_000 and expected["time"].n_unique() < len(expected)  # ties across symbols
        assert replayed.equals(expected)
        assert max(len(frame) for frame in frames) <= 2 * 700
        alone = pl.concat([f async for f in client.replay("BTCUSDT", start=start, end=end)])
        assert alone.equals(expected.filter(pl.col("symbol") == "BTCUSDT"))
        voids = int(((tapes["BTCUSDT"].agg_id % 50) == 0).sum())
        assert voids and not alone["price"].eq(0).any()
        running.check()


async def test_requests_are_checked_and_bounded(nats_url: str, tmp_path: Path) -> None:
    now_ms = int(time.time() * 1000)
    settings = Settings(nats_url=nats_url, data_dir=tmp_path, symbols=SYMBOLS, query_max_range_days=2)
    write_store(settings.shard_dir, {"BTCUSDT": tape(100, now_ms - HOUR_MS, 60_000, 3, 1)}, now_ms - 2 * HOUR_MS)
    async with (
        run_services(settings, "analytics") as running,
        await TapeClient.connect(url=nats_url, timeout=5) as client,
    ):
        await wait_for(lambda: answered(client, "BTCUSDT"), timeout=20, running=running)
        with pytest.raises(ClientQueryError) as unknown:
            [f async for f in client.replay("SOLUSDT", start=now_ms - HOUR_MS, end=now_ms)]
        assert unknown.value.code == "unknown_symbol"
        with pytest.raises(ClientQueryError) as too_long:
            [f async for f in client.replay("BTCUSDT", start=now_ms - 3 * 86_400_000, end=now_ms)]
        assert too_long.value.code == "range_too_large"
        for fields in ({"chunk": 0}, {"window": 1000}, {"start": now_ms, "end": now_ms - 1}):
            with pytest.raises(ClientQueryError) as bad:
                [f async for f in client.replay("BTCUSDT", **{"start": now_ms - HOUR_MS, "end": now_ms, **fields})]
            assert bad.value.code == "invalid_request"
        with pytest.raises(ClientQueryError):
            [f async for f in client.replay("BTC-USDT", start=now_ms - HOUR_MS, end=now_ms)]
        raw = await nats.connect(nats_url)
        try:
            inbox = raw.new_inbox()
            subscription = await raw.subscribe(inbox)
            body = {"start": now_ms - HOUR_MS, "end": now_ms, "chunk": 10**9, "extra": 1}
            await raw.publish(replay_subject("BTCUSDT"), orjson.dumps(body), reply=inbox)
            refused = await subscription.next_msg(timeout=5)
            assert refused.headers and refused.headers["Nats-Service-Error-Code"] == "400"
            problems = orjson.loads(refused.data)["error"]["details"]["errors"]
            assert {problem["field"] for problem in problems} == {"chunk", "extra"}
            # a reply subject outside the inboxes is never answered
            await raw.publish(replay_subject("BTCUSDT"), orjson.dumps({"start": now_ms - HOUR_MS, "end": now_ms}),
                              reply="tape.live.profile.BTCUSDT")
            await raw.flush()
            analytics = running.services["analytics"]
            await wait_for(lambda: _async(analytics.replies.dropped_reply_subject == 1), timeout=5)
        finally:
            await raw.close()
        assert len(pl.concat([f async for f in client.replay("BTCUSDT", start=now_ms - HOUR_MS, end=now_ms)])) == 98
        running.check()


async def _async(value: object) -> object:
    return value
