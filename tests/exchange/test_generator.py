"""The synthetic trade generator: determinism, id continuity, shapes, live release."""

from __future__ import annotations

import asyncio
import itertools
from decimal import Decimal
from statistics import median

import pytest

from services.exchange.generator import (
    FIRST_ID,
    GeneratorFeed,
    TradeGenerator,
    format_units,
    to_units,
)
from services.exchange.history import AggTrade, TradeHistory, now_ms

pytestmark = pytest.mark.timeout(10)


def content(trades: list[AggTrade]) -> list[tuple[str, str, bool]]:
    return [(t.price, t.qty, t.buyer_maker) for t in trades]


def test_units_round_trip() -> None:
    assert to_units("0.01") == 1_000_000
    assert to_units("87000") == 87_000 * 10**8
    assert format_units(8_764_821_000_000) == "87648.21000000"
    assert format_units(1_000) == "0.00001000"
    for bad in ("0", "-1", "abc", "0.000000001"):
        with pytest.raises(ValueError):
            to_units(bad)


def test_same_seed_same_sequence() -> None:
    first = TradeGenerator("BTCUSDT", seed=7).take(20_000)
    second = TradeGenerator("BTCUSDT", seed=7).take(20_000)
    assert content(first) == content(second)
    assert content(TradeGenerator("BTCUSDT", seed=8).take(1000)) != content(first[:1000])
    assert content(TradeGenerator("ETHUSDT", seed=7).take(1000)) != content(first[:1000])


def test_sequence_does_not_depend_on_how_it_is_taken() -> None:
    whole = TradeGenerator("BTCUSDT", seed=3).take(10_000)
    generator = TradeGenerator("BTCUSDT", seed=3)
    pieces: list[AggTrade] = []
    while len(pieces) < len(whole):
        pieces.extend(generator.take_cluster(time_ms=len(pieces)))
    assert content(pieces[: len(whole)]) == content(whole)


def test_ids_are_consecutive() -> None:
    trades = TradeGenerator("BTCUSDT", seed=1).take(20_000)
    assert [t.agg_id for t in trades] == list(range(FIRST_ID, FIRST_ID + len(trades)))
    assert trades[0].first_id == FIRST_ID
    assert all(t.first_id <= t.last_id for t in trades)
    assert all(a.last_id + 1 == b.first_id for a, b in itertools.pairwise(trades))
    assert any(t.last_id > t.first_id for t in trades)


def test_prices_on_the_tick_grid_and_sizes_on_the_lot() -> None:
    for symbol, tick, level in (
        ("BTCUSDT", "0.01", 87000),
        ("ETHUSDT", "0.01", 3000),
        ("SOLUSDT", "0.5", 100),
    ):
        trades = TradeGenerator(symbol, seed=2, tick_size=tick).take(5000)
        step = Decimal(tick)
        for trade in trades:
            assert len(trade.price.split(".")[1]) == 8 and len(trade.qty.split(".")[1]) == 8
            price, qty = Decimal(trade.price), Decimal(trade.qty)
            assert price > 0 and price % step == 0
            assert qty > 0 and qty % Decimal("0.00001") == 0
        assert abs(Decimal(trades[0].price) - level) < level * Decimal("0.01")


def test_shapes_bursts_heavy_tails_and_side_runs() -> None:
    generator = TradeGenerator("BTCUSDT", seed=5)
    clusters = [generator.take_cluster(time_ms=i) for i in range(20_000)]
    sizes = [len(c) for c in clusters]
    assert max(sizes) >= 5
    assert 1.2 < sum(sizes) / len(sizes) < 3
    for cluster in clusters:
        assert len({t.buyer_maker for t in cluster}) == 1
        prices = [Decimal(t.price) for t in cluster]
        assert prices == sorted(prices, reverse=cluster[0].buyer_maker)
        assert len(set(prices)) == len(prices)
    sides = [c[0].buyer_maker for c in clusters]
    flips = sum(a != b for a, b in itertools.pairwise(sides)) / (len(sides) - 1)
    assert 0.1 < flips < 0.45
    assert 0.3 < sum(sides) / len(sides) < 0.7
    quantities = [Decimal(t.qty) for c in clusters for t in c]
    assert max(quantities) / median(quantities) > 50


async def test_feed_releases_at_rate_in_batches() -> None:
    history = TradeHistory("BTCUSDT")
    feed = GeneratorFeed(TradeGenerator("BTCUSDT", seed=1), history, rate=20_000)
    loop = asyncio.get_running_loop()
    began = loop.time()
    feed.start()
    try:
        await asyncio.sleep(0.5)
    finally:
        await feed.stop()
        await feed.stop()
    elapsed = loop.time() - began
    trades = history.trades()
    assert 0.3 * 20_000 * elapsed < len(trades) <= 20_000 * elapsed + 100
    assert [t.agg_id for t in trades] == list(range(FIRST_ID, FIRST_ID + len(trades)))
    times = [t.time_ms for t in trades]
    assert times == sorted(times)
    assert times[-1] <= now_ms()
    assert len(set(times)) < len(times)
    expected = content(TradeGenerator("BTCUSDT", seed=1).take(len(trades))[: len(trades)])
    assert content(trades) == expected
