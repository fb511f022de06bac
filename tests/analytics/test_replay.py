"""Replay over a real NATS server from a real store: exact, in order, flow-controlled, bounded, paced.

The store is written through the real `ShardWriter` (hour segments and young windows, voids among the
trades); the analytics service runs in-process (`tests.harness.run_services`) or, where its memory is
measured, as its own process. What `trades` answers page by page is the reference.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

import nats
import numpy as np
import orjson
import polars as pl
import pytest

from tests.harness import Running, run_services, wait_for
from tradetape.api.replay.chunks import ReplayChunk, ReplayStart, decode_message
from tradetape.bus.subjects import analytics_queue_group, replay_subject
from tradetape.client import ClientQueryError, TapeClient, TapeUnavailable
from tradetape.domain.columns import TradeColumns
from tradetape.domain.trade import VOID_TRADE_ID
from tradetape.services.analytics.service import AnalyticsService
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


@contextlib.asynccontextmanager
async def serving_an_hour(nats_url: str, tmp_path: Path) -> AsyncIterator[tuple[Settings, int, Running, TapeClient]]:
    """An analytics worker (ranges of 2 days at most) serving the last hour's 100 BTCUSDT trades (98 and 2 voids),
    and a client it has answered."""
    now_ms = int(time.time() * 1000)
    settings = Settings(nats_url=nats_url, data_dir=tmp_path, symbols=SYMBOLS, query_max_range_days=2)
    write_store(settings.shard_dir, {"BTCUSDT": tape(100, now_ms - HOUR_MS, 60_000, 3, 1)}, now_ms - 2 * HOUR_MS)
    async with (
        run_services(settings, "analytics") as running,
        await TapeClient.connect(url=nats_url, timeout=5) as client,
    ):
        await wait_for(lambda: answered(client, "BTCUSDT"), timeout=20, running=running)
        yield settings, now_ms, running, client


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


@pytest.mark.slow
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
    async with serving_an_hour(nats_url, tmp_path) as (settings, now_ms, running, client):
        with pytest.raises(ClientQueryError) as unknown:
            [f async for f in client.replay("SOLUSDT", start=now_ms - HOUR_MS, end=now_ms)]
        assert unknown.value.code == "unknown_symbol"
        with pytest.raises(ClientQueryError) as too_long:
            [f async for f in client.replay("BTCUSDT", start=now_ms - 3 * 86_400_000, end=now_ms)]
        assert too_long.value.code == "range_too_large"
        with pytest.raises(ClientQueryError) as just_over:
            [f async for f in client.replay("BTCUSDT", start=now_ms - 2 * 86_400_000 - 1, end=now_ms)]
        assert "1 ms more than the 2 days" in str(just_over.value)
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


async def test_replay_is_discovered_in_srv_info_and_counted_in_srv_stats(nats_url: str, tmp_path: Path) -> None:
    """Before: replay subscribed beside the micro service, so `$SRV.INFO` did not list it and `$SRV.STATS` did
    not count its requests or errors."""
    async with serving_an_hour(nats_url, tmp_path) as (settings, now_ms, running, client):

        async def endpoint(verb: str) -> dict[str, object]:
            msg = await client.nc.request(f"$SRV.{verb}.tradetape-analytics", b"", timeout=5)
            found = [e for e in orjson.loads(msg.data)["endpoints"] if e["subject"] == "tape.replay.open.>"]
            assert len(found) == 1, f"$SRV.{verb} lists no replay endpoint: {msg.data[:600]!r}"
            return found[0]

        info = await endpoint("INFO")
        assert info["name"] == "replay" and info["queue_group"] == analytics_queue_group(settings.shard)
        assert info["metadata"] == {"protocol": "stream", "spec": "tradetape.api.replay"}
        assert len(pl.concat([f async for f in client.replay("BTCUSDT", start=now_ms - HOUR_MS, end=now_ms)])) == 98
        with pytest.raises(ClientQueryError):
            [f async for f in client.replay("BTCUSDT", start=now_ms - 3 * 86_400_000, end=now_ms)]
        stats = await endpoint("STATS")
        assert stats["num_requests"] == 2 and stats["num_errors"] == 1
        assert "days" in str(stats["last_error"])
        running.check()


async def test_a_replay_reads_through_the_query_cache_without_filling_it(nats_url: str, tmp_path: Path) -> None:
    """Before: a replay's hours went through the query segment cache, so replaying 8 hours (the cache holds about
    3 decoded segments) evicted the segment a query had just used, and the query decoded it again."""
    now_ms = int(time.time() * 1000)
    first_hour = now_ms - now_ms % HOUR_MS - 9 * HOUR_MS
    trades = tape(48_000, first_hour, 8 * HOUR_MS, 5, 1)  # 6,000 an hour: ~290 KB a decoded segment
    settings = Settings(nats_url=nats_url, data_dir=tmp_path, symbols=SYMBOLS, query_cache_mb=1)
    write_store(settings.shard_dir, {"BTCUSDT": trades}, first_hour + 8 * HOUR_MS)
    async with (
        run_services(settings, "analytics") as running,
        await TapeClient.connect(url=nats_url, timeout=10) as client,
    ):
        await wait_for(lambda: answered(client, "BTCUSDT"), timeout=20, running=running)
        cache = running.services["analytics"]._reader.cache
        asked = {"start": first_hour + 2 * HOUR_MS + 600_000, "end": first_hour + 2 * HOUR_MS + 1_200_000}
        queried = await client.query("trades", "BTCUSDT", **asked)
        misses, held = cache.misses, cache.held_bytes
        assert misses >= 1 and 0 < held <= 2**20
        frames = client.replay("BTCUSDT", start=first_hour, end=first_hour + 8 * HOUR_MS)
        replayed = pl.concat([frame async for frame in frames])
        assert len(replayed) == int(((trades.agg_id % 50) != 0).sum())  # every hour read, voids left out
        assert cache.held_bytes == held, "the replay filled the query cache"
        through = running.services["analytics"]._reader.read_through_cache
        assert through.hits == 1 and through.misses == 7  # the hour the query cached was used, not decoded again
        assert (await client.query("trades", "BTCUSDT", **asked)) == queried
        assert cache.misses == misses, "the query decoded again what the replay evicted"
        running.check()


async def _async(value: object) -> object:
    return value


class RawStream:
    """The replay protocol spoken by hand: the request, the messages as they come, acks when told."""

    def __init__(self, nc: nats.NATS, symbol: str, body: dict[str, object]) -> None:
        self.nc, self.symbol, self.body = nc, symbol, body
        self.start: ReplayStart | None = None

    async def open(self) -> None:
        self.subscription = await self.nc.subscribe(self.nc.new_inbox())
        await self.nc.publish(replay_subject(self.symbol), orjson.dumps(self.body), reply=self.subscription.subject)
        message = decode_message((await self.subscription.next_msg(timeout=10)).data, 20_000)
        assert isinstance(message, ReplayStart)
        self.start = message
        await self.send({})  # the asker answers the start: the worker sends nothing before

    async def chunks_for(self, seconds: float) -> list[int]:
        """The chunk numbers that come within `seconds`, none acked."""
        seqs = []
        deadline = asyncio.get_running_loop().time() + seconds
        while (left := deadline - asyncio.get_running_loop().time()) > 0:
            try:
                msg = await self.subscription.next_msg(timeout=left)
            except nats.errors.TimeoutError:
                break
            message = decode_message(msg.data, 20_000)
            assert isinstance(message, ReplayChunk)
            seqs.append(message.seq)
        return seqs

    async def send(self, body: dict[str, object]) -> None:
        assert self.start is not None
        await self.nc.publish(self.start.flow_subject, orjson.dumps(body))


@pytest.mark.slow
async def test_a_slow_client_holds_the_worker_to_its_window_and_a_vanished_one_stops_it(
    nats_url: str, tmp_path: Path
) -> None:
    now_ms = int(time.time() * 1000)
    start = now_ms - 3 * HOUR_MS
    settings = Settings(nats_url=nats_url, data_dir=tmp_path, symbols=SYMBOLS, replay_idle_timeout_s=1.5)
    write_store(settings.shard_dir, {"BTCUSDT": tape(30_000, start, 2 * HOUR_MS, 4, 1)}, now_ms)
    body = {"start": start, "end": now_ms, "chunk": 500, "window": 4}
    async with run_services(settings, "analytics") as running:
        analytics = running.services["analytics"]
        raw = await nats.connect(nats_url)
        try:
            await wait_for(lambda: _async(analytics.replay.streams == set() and analytics._serving), timeout=20)
            slow = RawStream(raw, "BTCUSDT", body)
            await slow.open()
            assert await slow.chunks_for(1.0) == [0, 1, 2, 3]  # a window of chunks, then nothing until an ack
            await slow.send({"ack": 1})
            assert await slow.chunks_for(0.5) == [4, 5]
            await slow.send({"ack": 40})  # beyond what was sent: credit up to what was sent only
            assert await slow.chunks_for(0.5) == [6, 7, 8, 9]
            await slow.send({"cancel": True})
            await wait_for(lambda: _async(not analytics.replay.streams), timeout=5)
            await slow.send({"ack": 9})
            assert await slow.chunks_for(0.3) == []

            vanishing = await nats.connect(nats_url)
            gone = RawStream(vanishing, "BTCUSDT", body)
            await gone.open()
            assert len(await gone.chunks_for(0.3)) == 4
            await vanishing.close()  # the client is gone: no ack will ever come
            vanished_at = time.monotonic()
            await asyncio.sleep(0.5)
            assert len(analytics.replay.streams) == 1  # still waiting for its ack ...
            await wait_for(lambda: _async(not analytics.replay.streams), timeout=10, interval=0.05)
            stopped_after = time.monotonic() - vanished_at
            assert 1.0 < stopped_after < 1.5 + 2.0, stopped_after  # ... for the idle timeout, then no longer
            assert analytics.replay.counts["replay_abandoned"] == 2
        finally:
            await raw.close()
        running.check()


async def test_a_client_slower_than_the_idle_timeout_keeps_its_stream(nats_url: str, tmp_path: Path) -> None:
    """The client says it is alive while its consumer is busy: only a vanished client loses its stream."""
    now_ms = int(time.time() * 1000)
    start = now_ms - 3 * HOUR_MS
    settings = Settings(nats_url=nats_url, data_dir=tmp_path, symbols=SYMBOLS, replay_idle_timeout_s=0.6)
    write_store(settings.shard_dir, {"BTCUSDT": tape(6_000, start, 2 * HOUR_MS, 5, 1)}, now_ms)
    async with (
        run_services(settings, "analytics") as running,
        await TapeClient.connect(url=nats_url, timeout=5) as client,
    ):
        await wait_for(lambda: answered(client, "BTCUSDT"), timeout=20, running=running)
        received = 0
        async for frame in client.replay("BTCUSDT", start=start, end=now_ms, chunk=1000, window=1):
            received += len(frame)
            if received == 1000:
                await asyncio.sleep(2.0)  # three idle timeouts with the window full
        assert received == len(await trades_pages(client, "BTCUSDT", start, now_ms)) > 5_000
        assert running.services["analytics"].replay.counts["replay_abandoned"] == 0


@pytest.mark.slow
async def test_speed_paces_the_frames_by_trade_time(nats_url: str, tmp_path: Path) -> None:
    now_ms = int(time.time() * 1000)
    start = now_ms - 2 * HOUR_MS
    settings = Settings(nats_url=nats_url, data_dir=tmp_path, symbols=SYMBOLS)
    tapes = {"BTCUSDT": tape(400, start, 8_000, 6, 1), "ETHUSDT": tape(300, start + 500, 7_000, 7, 10_000)}
    write_store(settings.shard_dir, tapes, now_ms)
    async with (
        run_services(settings, "analytics") as running,
        await TapeClient.connect(url=nats_url, timeout=5) as client,
    ):
        await wait_for(lambda: answered(client, "BTCUSDT"), timeout=20, running=running)
        loop = asyncio.get_running_loop()
        lateness, frames, began = [], [], None
        async for frame in client.replay(SYMBOLS, start=start, end=start + 10_000, speed=4, chunk=100):
            now = loop.time()
            times_ms = frame["time"].dt.epoch("ms")
            if began is None:
                began, origin_ms = now, int(times_ms[0])
            lateness.append(now - (began + (int(times_ms[0]) - origin_ms) / 4000))
            assert int(times_ms.max()) <= origin_ms + (now - began) * 4000 + 8  # only trades due by now (2 ms)
            frames.append(frame)
        replayed = pl.concat(frames)
        assert replayed.equals(pl.concat([f async for f in client.replay(SYMBOLS, start=start, end=start + 10_000)]))
        span_s = (replayed["time"][-1] - replayed["time"][0]).total_seconds() / 4
        assert span_s > 1.5 and abs((loop.time() - began) - span_s) < 0.2
        assert min(lateness) > -0.002  # never early
        assert sorted(lateness)[int(len(lateness) * 0.99)] < 0.05  # a generous bound: other tests share the cores


@pytest.mark.slow
async def test_a_stream_ends_with_the_worker_even_where_its_publish_swallowed_the_cancel(
    nats_url: str, tmp_path: Path
) -> None:
    """Before: nats-py's publish, waiting for its flush (its pending buffer full, as under load), swallows a cancel
    (`_flush_pending`: `except CancelledError: pass`); the stream sent on while its client acked, and the worker's stop
    (SIGTERM) waited for the whole range. A 1-byte pending buffer makes every publish wait for its flush; 200,000
    chunks of one trade take far longer to send than the 5 s the worker is given to stop."""
    now_ms = int(time.time() * 1000)
    start = now_ms - 3 * HOUR_MS
    settings = Settings(nats_url=nats_url, data_dir=tmp_path, symbols=SYMBOLS, replay_idle_timeout_s=3)
    write_store(settings.shard_dir, {"BTCUSDT": tape(200_000, start, 2 * HOUR_MS, 4, 1)}, now_ms)
    worker_nc = await nats.connect(nats_url, pending_size=1)
    raw = await nats.connect(nats_url)
    service = AnalyticsService(settings, worker_nc)
    stop = asyncio.Event()
    worker = asyncio.create_task(service.run(stop))
    acking: asyncio.Task[None] | None = None
    try:
        await wait_for(lambda: _async(service._serving), timeout=20)
        stream = RawStream(raw, "BTCUSDT", {"start": start, "end": now_ms, "chunk": 1, "window": 32})
        await stream.open()

        async def ack_each() -> None:
            while True:
                message = decode_message((await stream.subscription.next_msg(timeout=None)).data, 20_000)
                if not isinstance(message, ReplayChunk):
                    return
                await stream.send({"ack": message.seq})

        acking = asyncio.create_task(ack_each())
        await asyncio.sleep(0.5)
        assert service.replay.streams and not acking.done()  # streaming, a chunk a publish
        stop.set()
        await asyncio.wait((worker,), timeout=5)
        assert worker.done() and not acking.done()  # ended mid-range, not at its end
        await worker
    finally:
        for task in (acking, worker):
            if task is not None:
                task.cancel()
                await asyncio.wait((task,), timeout=10)
        await raw.close()
        await worker_nc.close()
