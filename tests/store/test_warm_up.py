"""Warming a reader's cache with the newest segments: within its budget, never evicting what it holds."""

from __future__ import annotations

import shutil
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from rocksdict import Rdict

from tests.store.synthetic import SYMBOL, T0, rolled_store, same, tape
from tradetape.store.keys import SUMMARY, timed_key
from tradetape.store.reader import ShardReader
from tradetape.store.rocks import store_options
from tradetape.store.warm_up import warmed_level_steps

HOUR = 3_600_000
HOURS = 10


@pytest.fixture(scope="module")
def shard(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return rolled_store(tmp_path_factory.mktemp("warm") / "shard", tape(HOURS * 2_000, HOURS * HOUR), chunk_ms=HOUR)


def test_warming_holds_the_newest_hours_and_reads_them_as_stored(shard: Path) -> None:
    reader = ShardReader(shard, cache_bytes=64 << 20)
    try:
        warmed = reader.warm(SYMBOL, 3 * HOUR)
        assert warmed.complete and warmed.segments == 5  # 3 h back from the newest trade, and one segment more
        assert reader.cache.misses == 0 and reader.cache.hits == 0  # warming is not counted as queries
        recent = (T0 + (HOURS - 3) * HOUR + 1_234, T0 + HOURS * HOUR - 61_000)
        trades = reader.trades(SYMBOL, recent)
        bars = reader.second_bars(SYMBOL, recent)
        minute_bars = reader.minute_bars(SYMBOL, recent)
        assert reader.minute_levels(SYMBOL, recent) is not None and reader.price_levels(SYMBOL, recent) is not None
        assert reader.cache.misses == 0
        assert reader.cache.derived == 0  # a footprint's bars rolled to minutes were warmed too, not derived now
        cold = ShardReader(shard)
        try:
            assert same(trades, cold.trades(SYMBOL, recent))
            expected = cold.second_bars(SYMBOL, recent).arrays()
            assert all(np.array_equal(a, b) for a, b in zip(bars.arrays(), expected, strict=True))
            expected = cold.minute_bars(SYMBOL, recent).arrays()
            assert all(np.array_equal(a, b) for a, b in zip(minute_bars.arrays(), expected, strict=True))
        finally:
            cold.close()
    finally:
        reader.close()


def test_warming_holds_the_minute_levels_bucketed_as_row_sizes_of_the_symbol_ask(shard: Path) -> None:
    """Before: only the plain minute levels were warmed, so a fresh worker's first footprint or profile with a row
    size bucketed every level of its range (bench/query.py: a 24 h profile at rows of 10 USDT, ~900k levels, cold
    14 ms against 5 warm)."""
    reader = ShardReader(shard, cache_bytes=64 << 20)
    cold = ShardReader(shard)
    try:
        assert reader.warm(SYMBOL, 3 * HOUR).complete
        recent = (T0 + (HOURS - 3) * HOUR + 1_234, T0 + HOURS * HOUR - 61_000)
        price = int(reader.trades(SYMBOL, recent).price[-1])
        steps = warmed_level_steps(price)
        assert steps == (10**8, 10**9, 10**10)  # 87,000 USDT: rows of 1, 10 and 100 USDT
        for step in steps:
            derived = reader.cache.derived
            levels = reader.minute_levels(SYMBOL, recent, step)
            assert reader.cache.derived == derived and reader.cache.misses == 0, step
            expected = cold.minute_levels(SYMBOL, recent, step)
            assert levels is not None and expected is not None and len(levels) < len(cold.minute_levels(SYMBOL, recent))
            assert all(np.array_equal(a, b) for a, b in zip(levels.arrays(), expected.arrays(), strict=True))
    finally:
        cold.close()
        reader.close()


def test_the_warmed_level_steps_follow_the_price() -> None:
    assert warmed_level_steps(350_000_000_000) == (10**7, 10**8, 10**9)  # ETHUSDT at 3,500: rows of 0.1, 1, 10
    assert warmed_level_steps(30_000_000) == (10**3, 10**4, 10**5)  # 0.3 USDT
    assert warmed_level_steps(5_000) == (10,)  # 0.00005: no step of 1 (the plain levels)
    assert warmed_level_steps(0) == ()


def test_warming_stops_at_the_budget_and_evicts_nothing_held(shard: Path) -> None:
    reader = ShardReader(shard, cache_bytes=1 << 20)
    try:
        old = (T0, T0 + HOUR + 5_000)
        reader.trades(SYMBOL, old)
        held = reader.cache.held_bytes
        assert 0 < held <= 1 << 20
        warmed = reader.warm(SYMBOL, HOURS * HOUR)
        assert not warmed.complete
        assert held < reader.cache.held_bytes <= 1 << 20
        misses = reader.cache.misses
        reader.trades(SYMBOL, old)
        assert reader.cache.misses == misses  # what a query had read is still held
    finally:
        reader.close()


def test_no_cache_no_warming(shard: Path) -> None:
    reader = ShardReader(shard, cache_bytes=0)
    try:
        assert not reader.warm(SYMBOL, HOUR).complete
        assert reader.cache.held_bytes == 0
    finally:
        reader.close()


def test_a_corrupt_newest_summary_leaves_the_symbol_unwarmed_not_the_worker_down(shard: Path, tmp_path: Path) -> None:
    """Before: the summaries of the span were decoded outside the corrupt-value guard, so a worker whose newest
    summary was corrupt raised `StoreCorruptError` while warming and never served (found by the store-corrupt test)."""
    copy = Path(shutil.copytree(shard, tmp_path / "shard"))
    db = Rdict(str(copy), store_options())
    try:
        key = timed_key(SUMMARY, SYMBOL, T0 + (HOURS - 1) * HOUR)
        value = db[key]
        db[key] = value[:-4] + bytes(b ^ 0xFF for b in value[-4:])
    finally:
        db.close()
    reader = ShardReader(copy, cache_bytes=64 << 20)
    try:
        warmed = reader.warm(SYMBOL, 3 * HOUR)
        assert (warmed.segments, warmed.corrupt) == (0, 1)
        assert reader.cache.held_bytes == 0
    finally:
        reader.close()


def test_a_newest_segment_larger_than_the_cache_is_not_decoded_to_find_it_does_not_fit(tmp_path: Path) -> None:
    """Before: warming read and decoded a segment's trades, then found they did not fit: one busy hour of 600k
    trades (29 MB of columns) peaked at ~29 MB more than a cache of 2 MB (its budget bounded what was kept only)."""
    busy = rolled_store(tmp_path / "busy", tape(600_000, HOUR), chunk_ms=HOUR)
    reader = ShardReader(busy, cache_bytes=2 << 20)
    try:
        tracemalloc.start()
        try:
            warmed = reader.warm(SYMBOL, HOUR)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert not warmed.complete and warmed.segments >= 1
        assert reader.cache.held_bytes <= 2 << 20
        assert peak < 12 << 20, f"warming peaked at {peak / 2**20:.1f} MB for a cache of 2 MB"
    finally:
        reader.close()
