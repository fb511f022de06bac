"""Connection grouping and the connection-attempt limit (pure); the feeds themselves run in test_service."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from tradetape.binance.frames import AggTradeFrame, ControlFrame, ReplyFrame, parse_frame
from tradetape.services.exchange import Exchange, ExchangeConfig
from tradetape.services.ingest.feed import AttemptLimiter, Feed, FeedOptions, FrameSink, split_symbols

pytestmark = pytest.mark.timeout(30)


def test_streams_split_at_the_per_connection_cap() -> None:
    symbols = tuple(f"S{i}" for i in range(2050))
    groups = split_symbols(symbols, 1024)
    assert [len(g) for g in groups] == [1024, 1024, 2]
    assert sum(groups, ()) == symbols
    assert split_symbols(("A", "B", "C"), 2) == [("A", "B"), ("C",)]


def test_attempts_are_limited_over_a_sliding_window() -> None:
    now = [0.0]
    limiter = AttemptLimiter(limit=3, period=300.0, clock=lambda: now[0])
    for at in (0.0, 10.0, 20.0):
        now[0] = at
        assert limiter.delay() == 0
        limiter.record()
    now[0] = 30.0
    assert limiter.delay() == 270.0
    now[0] = 300.0
    assert limiter.delay() == 0


def counting_sink(symbols: tuple[str, ...], seen: Counter[str]) -> FrameSink:
    """A feed's sink counting each symbol's trades in `seen` and handing every other frame back to the feed."""

    def sink(message: str | bytes) -> ControlFrame | ReplyFrame | None:
        frame = parse_frame(message, frozenset(symbols))
        if isinstance(frame, AggTradeFrame):
            seen[frame.symbol] += 1
            return None
        return frame

    return sink


async def test_a_feed_subscribes_the_streams_beyond_its_url_paced() -> None:
    """One stream in the URL, four by SUBSCRIBE one at a time: under the simulator's 5 a second, all flow."""
    symbols = ("AAAUSDT", "BBBUSDT", "CCCUSDT", "DDDUSDT", "EEEUSDT")
    config = ExchangeConfig(symbols=symbols, rate=100, max_incoming_per_s=5)
    seen: Counter[str] = Counter()
    sink = counting_sink(symbols, seen)

    subscribed: list[tuple[str, ...]] = []
    async with Exchange(config) as exchange:
        options = FeedOptions(max_url_chars=10, streams_per_subscribe=1, subscribe_interval=0.05)
        feed = Feed(
            "0",
            exchange.ws_url,
            symbols,
            sink,
            limiter=AttemptLimiter(),
            options=options,
            on_subscribed=subscribed.append,
        )
        stop = asyncio.Event()
        task = asyncio.create_task(feed.run(stop))
        try:
            async with asyncio.timeout(10):
                while len(seen) < len(symbols) or min(seen.values()) < 20:
                    await asyncio.sleep(0.05)
        finally:
            stop.set()
            await asyncio.wait_for(task, 10)
    assert subscribed == [symbols]
    assert (feed.connections, feed.reconnects) == (1, 0)
