"""Futures ingest against the simulator and a real nats-server: each market its connections, its REST, its budget.

Spot ETHUSDT and USD-M um:ETHUSDT replay the same 5,000 trades, so they carry the SAME agg
ids: each must still reach its own subject exactly once, ids dropped on each WebSocket
filled from its own market's REST family, and each market's REST weight counted apart, at
the simulator as in ingest.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.ingest.test_feed import counting_sink
from tests.ingest.test_service import assert_tape_exact, ingest_settings, ingesting, stored_trades
from tradetape.binance.markets import market_api
from tradetape.domain.instruments import Market
from tradetape.services.exchange import BUNDLED_REPLAY, Exchange, ExchangeConfig, FaultConfig
from tradetape.services.ingest.feed import AttemptLimiter, Feed, FeedOptions
from tradetape.services.ingest.lanes import subscribe_interval_s

pytestmark = pytest.mark.timeout(120)

SPOT, UM = "ETHUSDT", "um:ETHUSDT"


@pytest.mark.slow
async def test_usdm_beside_spot_with_ids_dropped_is_filled_from_each_markets_rest(
    nats_url: str, tmp_path: Path
) -> None:
    faults = FaultConfig(drop_every=499)
    config = ExchangeConfig(symbols=(), replay={SPOT: BUNDLED_REPLAY, UM: BUNDLED_REPLAY}, rate=0, faults=faults)
    async with Exchange(config) as exchange:
        settings = ingest_settings(
            exchange,
            nats_url,
            tmp_path,
            SPOT,
            UM,
            ingest_rest_weight_per_minute=1200,
            ingest_um_rest_weight_per_minute=2400,
        )
        started = time.monotonic()
        async with ingesting(settings) as (running, ingest, client):
            await assert_tape_exact(client, exchange, (SPOT, UM), running)
            elapsed = time.monotonic() - started
            spot_lane, um_lane = ingest.lanes[Market.SPOT], ingest.lanes[Market.UM]
            assert [f.name for f in ingest.feeds] == ["0", "um-0"]
            assert um_lane.feeds[0].instruments == (UM,) and um_lane.feeds[0].symbols == (SPOT,)
            for lane in (spot_lane, um_lane):
                tape = next(iter(lane.tapes.values()))
                assert tape.counters.backfilled >= 5000 // 499 and tape.counters.gaps_closed >= 1
            spot_stored = await stored_trades(client.jetstream(), SPOT)
            um_stored = await stored_trades(client.jetstream(), UM)
    assert sorted(t["a"] for t in spot_stored) == sorted(t["a"] for t in um_stored), "the same ids, both kept"
    log = exchange.rest_log
    fapi = [path for _, path in log.recent if path.startswith("/fapi/v1/aggTrades")]
    spot_calls = [path for _, path in log.recent if path.startswith("/api/v3/aggTrades")]
    assert fapi and spot_calls and not any(p.startswith("/dapi/") for _, p in log.recent)
    assert all("symbol=ETHUSDT&" in path for path in fapi + spot_calls)
    assert log.weights[Market.UM] == um_lane.rest.budget.used == 20 * len(fapi), "USD-M's weight, counted apart"
    assert log.weights[Market.SPOT] == spot_lane.rest.budget.used == 4 * len(spot_calls)
    for market, budget in ((Market.SPOT, 1200), (Market.UM, 2400)):
        assert log.weights[market] <= budget / 4 + budget * elapsed / 60, f"{market} kept to its own budget"
    assert not log.refused, "no market went over the exchange's limit"


@pytest.mark.slow
async def test_a_usdm_feed_subscribes_paced_for_ten_messages_a_second() -> None:
    """Twelve USD-M streams: one in the URL, eleven by SUBSCRIBE at futures pace, under the simulator's 10 a second."""
    symbols = tuple(f"Q{index:02d}USDT" for index in range(12))
    config = ExchangeConfig(symbols=tuple(f"um:{s}" for s in symbols), rate=50, futures_max_incoming_per_s=10)
    seen: Counter[str] = Counter()
    sink = counting_sink(symbols, seen)

    subscribed: list[tuple[str, ...]] = []
    async with Exchange(config) as exchange:
        interval = subscribe_interval_s(market_api(Market.UM).incoming_per_s)
        options = FeedOptions(max_url_chars=10, streams_per_subscribe=1, subscribe_interval=interval)
        feed = Feed(
            "um-0",
            exchange.urls(Market.UM)[0],
            symbols,
            sink,
            limiter=AttemptLimiter(),
            options=options,
            on_subscribed=subscribed.append,
            market=Market.UM,
        )
        stop = asyncio.Event()
        began = time.monotonic()
        task = asyncio.create_task(feed.run(stop))
        try:
            async with asyncio.timeout(20):
                while not subscribed:
                    await asyncio.sleep(0.01)
                took = time.monotonic() - began
                while len(seen) < len(symbols) or min(seen.values()) < 5:
                    await asyncio.sleep(0.05)
        finally:
            stop.set()
            await asyncio.wait_for(task, 10)
    assert subscribed == [tuple(f"um:{s}" for s in symbols)], "the filler hears of instruments, not symbols"
    assert (feed.connections, feed.reconnects) == (1, 0), "never over the limit"
    assert 11 * interval * 0.9 <= took < 11 * subscribe_interval_s(5), "paced for futures, faster than spot's pace"
