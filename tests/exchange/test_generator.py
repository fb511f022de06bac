"""The synthetic trade generator: determinism, id continuity, shapes, live release, id state."""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections import Counter
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from statistics import median

import orjson
import pytest

from tradetape.services.exchange.generator import (
    _MAX_BURST,
    FIRST_ID,
    GeneratorFeed,
    IdCheckpoint,
    Resume,
    TradeGenerator,
    format_units,
    past_trades,
    release_interval,
    resume_after,
    to_units,
)
from tradetape.services.exchange.history import AggTrade, TradeHistory, now_ms

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


@pytest.mark.slow
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


class VirtualClock:
    """Simulated time that advances only by the feed's own sleeps (and explicit stalls),
    so minutes of trading run in a fraction of a second and exactly the same each time."""

    def __init__(self, epoch_ms: int = 1_767_225_600_000) -> None:
        self.seconds = 0.0
        self.epoch_ms = epoch_ms

    def monotonic(self) -> float:
        return self.seconds

    def now_ms(self) -> int:
        return self.epoch_ms + int(self.seconds * 1000)

    async def sleep(self, seconds: float) -> None:
        self.seconds += seconds
        await asyncio.sleep(0)


async def run_for(clock: VirtualClock, until: float, feed: GeneratorFeed, samples: list[tuple[float, int]]) -> None:
    """Let simulated time reach ``until``, sampling (time, released) as it goes."""
    async with asyncio.timeout(10):
        while clock.seconds < until:
            await asyncio.sleep(0)
            samples.append((clock.seconds, feed.released))


def assert_tape(trades: Sequence[AggTrade], first_id: int = FIRST_ID) -> None:
    """Consecutive agg ids, joined trade ids and non-decreasing times: a gap-free tape."""
    assert [t.agg_id for t in trades] == list(range(first_id, first_id + len(trades)))
    assert all(a.last_id + 1 == b.first_id for a, b in itertools.pairwise(trades))
    assert all(a.time_ms <= b.time_ms for a, b in itertools.pairwise(trades))


async def test_default_simulated_feed_keeps_its_rate_for_minutes(caplog: pytest.LogCaptureFixture) -> None:
    """`tradetape up --simulate` generates at 20/s with seed 1; ETHUSDT's first burst larger
    than 2 x rate (50 trades, at ~108 s) used to leave the feed skipping forever."""
    rate, minutes = 20.0, 3.5
    clock = VirtualClock()
    history = TradeHistory("ETHUSDT")
    feed = GeneratorFeed(TradeGenerator("ETHUSDT", 1, tick_size="0.01"), history, rate, clock=clock)
    samples: list[tuple[float, int]] = []
    feed.start()
    try:
        await run_for(clock, minutes * 60, feed, samples)
    finally:
        await feed.stop()
    tolerance = _MAX_BURST + rate * feed.interval
    for seconds, released in samples:
        assert abs(released - rate * seconds) <= tolerance, f"{released} trades after {seconds:.2f} s at {rate}/s"
    trades = history.trades()
    assert len(trades) == feed.released
    assert_tape(trades)
    assert clock.epoch_ms <= trades[0].time_ms and trades[-1].time_ms <= clock.now_ms()
    assert trades[-1].time_ms - trades[0].time_ms >= (minutes * 60 - 1) * 1000
    assert max(Counter(t.time_ms for t in trades).values()) > 2 * rate, "the run must contain a big burst"
    assert "fell behind" not in caplog.text


async def test_feed_skips_only_a_real_stall(caplog: pytest.LogCaptureFixture) -> None:
    rate = 20.0
    clock = VirtualClock()
    history = TradeHistory("ETHUSDT")
    feed = GeneratorFeed(TradeGenerator("ETHUSDT", 1), history, rate, clock=clock)
    samples: list[tuple[float, int]] = []
    feed.start()
    try:
        with caplog.at_level(logging.WARNING, logger="tradetape.services.exchange.generator"):
            await run_for(clock, 10, feed, samples)
            clock.seconds += 3  # shorter than the stall tolerance: caught up, nothing skipped
            await run_for(clock, 20, feed, samples)
            assert "fell behind" not in caplog.text
            assert rate * 19.9 <= feed.released <= rate * 20 + _MAX_BURST
            before = feed.released
            clock.seconds += 60
            await run_for(clock, 90, feed, samples)
            assert "fell behind" in caplog.text
    finally:
        await feed.stop()
    trades = history.trades()
    assert_tape(trades)
    assert rate * 9.9 <= feed.released - before <= rate * 10 + _MAX_BURST
    after = trades[before]
    assert trades[before - 1].time_ms < clock.epoch_ms + 21_000
    assert clock.epoch_ms + 79_900 <= after.time_ms <= clock.epoch_ms + 80_100
    assert trades[-1].time_ms <= clock.now_ms()


def test_a_former_state_file_is_resumed_above(tmp_path: Path) -> None:
    """Simulators before the released-trade record wrote only their next ids; an upgraded one starts above them."""
    checkpoint = IdCheckpoint(tmp_path / "state" / "ETHUSDT.json")
    assert checkpoint.load() is None and checkpoint.resume() is None
    checkpoint.path.parent.mkdir()
    state = {"next_agg_id": 2_000_000, "next_trade_id": 2_500_000, "agg_margin": 90, "trade_margin": 360}
    checkpoint.path.write_bytes(orjson.dumps({**state, "clean": True}))
    assert checkpoint.resume() == (2_000_000, 2_500_000)
    checkpoint.path.write_bytes(orjson.dumps({**state, "clean": False}))
    assert checkpoint.resume() == (2_000_090, 2_500_360)
    assert checkpoint.resume(agg_margin=500, trade_margin=100) == (2_000_500, 2_500_360)
    for broken in (b"{", b"[]", b'{"next_agg_id": 1}', b'{"next_agg_id": "1", "next_trade_id": 1, "clean": true}'):
        checkpoint.path.write_bytes(broken)
        with pytest.raises(ValueError, match="generator state"):
            checkpoint.resume()


def test_resume_after_the_newest_trade_and_the_newest_real_one() -> None:
    trades = TradeGenerator("ETHUSDT", 1).take(10)
    last = trades[-1]
    assert resume_after([]) is None
    assert resume_after(trades) == Resume(last.agg_id + 1, last.last_id + 1, last.price)
    voided = [*trades[:-1], last.voided()]
    assert resume_after(voided) == Resume(last.agg_id + 1, trades[-2].last_id + 1, trades[-2].price)


def test_past_trades_end_right_below_the_given_ids() -> None:
    day = 86_400_000
    start = now_ms() // day * day - 2 * day
    past = past_trades("BTCUSDT", 1, "0.01", start, start + 2 * day, last_agg_id=999_999, last_trade_id=4_999_999)
    assert 2 * 8640 <= len(past) <= 2 * 8640 + _MAX_BURST
    assert past[-1].agg_id == 999_999 and past[-1].last_id == 4_999_999
    assert [t.agg_id for t in past] == list(range(past[0].agg_id, 1_000_000))
    assert all(b.first_id == a.last_id + 1 for a, b in itertools.pairwise(past))
    assert start == past[0].time_ms and past[-1].time_ms < start + 2 * day
    assert all(a.time_ms <= b.time_ms for a, b in itertools.pairwise(past))
    again = past_trades("BTCUSDT", 1, "0.01", start, start + 2 * day, last_agg_id=999_999, last_trade_id=4_999_999)
    assert again == past, "one seed, one past"
    assert past_trades("BTCUSDT", 1, "0.01", start, start + day, last_agg_id=100, last_trade_id=100) == []


@pytest.mark.parametrize(("rate", "seconds"), [(1.0, 0.02), (500.0, 0.02), (2_000.0, 0.005), (10_000.0, 0.002),
                                               (1e6, 0.002)])  # fmt: skip
def test_a_feed_releases_about_ten_trades_at_a_time_between_2_and_20_ms(rate: float, seconds: float) -> None:
    assert release_interval(rate) == pytest.approx(seconds)
    assert GeneratorFeed(TradeGenerator("BTCUSDT", seed=1), TradeHistory("BTCUSDT"), rate).interval == pytest.approx(
        seconds
    )
