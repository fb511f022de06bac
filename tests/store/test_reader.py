"""Range reads against a real RocksDB: trades, coverage and price levels equal what was written."""

from __future__ import annotations

import resource
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.store.synthetic import SYMBOL, T0, coverage_figures, figures_of, same, tape, windows_of, write_rolled
from tradetape.domain.columns import TradeColumns
from tradetape.domain.gaps import coverage
from tradetape.domain.price_levels import PriceLevels
from tradetape.store.reader import ShardReader
from tradetape.store.reads import read_coverage
from tradetape.store.writer import ShardWriter

HOUR = 3_600_000
DAY = 24 * HOUR


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    """Five hours of trades with gaps, rolled up, plus a minute of young windows."""
    path = tmp_path_factory.mktemp("reader") / "shard"
    trades = tape(20_000, 5 * HOUR)
    held = np.ones(len(trades), dtype=np.bool_)
    held[[5, 6, 7, 9_000, 15_500]] = False
    trades = trades.take(held)
    store = ShardWriter(path)
    write_rolled(store, trades.take(trades.time < T0 + 5 * HOUR - 60_000))
    store.write(windows_of(SYMBOL, trades.take(trades.time >= T0 + 5 * HOUR - 60_000)))
    store.close()
    return path, trades


RANGES = [
    None,
    (T0, T0 + 5 * HOUR),
    (T0 + 1_234, T0 + 3 * HOUR + 999),
    (T0 + HOUR, T0 + 2 * HOUR),
    (T0 + 4 * HOUR + 3_599_000, T0 + 6 * HOUR),
    (T0 + 10 * HOUR, T0 + 11 * HOUR),
    (0, 4_102_444_800_000),
]


@pytest.mark.slow
@pytest.mark.parametrize("cache_bytes", [0, 64 << 20], ids=["uncached", "cached"])
@pytest.mark.parametrize("time_range", RANGES)
def test_every_read_equals_the_trades_written(
    written: tuple[Path, object], time_range: tuple[int, int] | None, cache_bytes: int
) -> None:
    path, trades = written
    expected = trades if time_range is None else trades.between(*time_range)  # type: ignore[attr-defined]
    reader = ShardReader(path, cache_bytes=cache_bytes)
    try:
        misses = []
        for _ in range(2):  # the second time from the cache, where there is one
            found = reader.trades(SYMBOL, time_range)
            assert same(found, expected)
            assert reader.coverage(SYMBOL, time_range) == coverage(expected.agg_id, expected.time)
            levels = reader.price_levels(SYMBOL, time_range)
            reference = PriceLevels.of_trades(expected)
            assert levels is not None and reference is not None
            assert all(np.array_equal(a, b) for a, b in zip(levels.arrays(), reference.arrays(), strict=True))
            misses.append(reader.cache.misses)
        assert misses[1] == misses[0] if cache_bytes else reader.cache.hits == 0, "the second reads decoded nothing"
    finally:
        reader.close()


def test_the_segment_cache_never_serves_a_segment_written_since(tmp_path: Path) -> None:
    """Late trades merged into a cached segment, then retention cutting it: every read sees the store as it is."""
    trades = tape(6_000, 2 * HOUR, seed=9)
    late = np.zeros(len(trades), dtype=np.bool_)
    late[100:4_000:7] = True
    store = ShardWriter(tmp_path / "shard")
    store.roll_up(SYMBOL, T0 + 3 * HOUR)
    store.write({(SYMBOL, 0): trades.take(~late)})
    reader = ShardReader(tmp_path / "shard", cache_bytes=16 << 20)
    try:
        inside = (T0, T0 + 2 * HOUR)
        assert same(reader.trades(SYMBOL, inside), trades.take(~late))
        with pytest.raises(ValueError, match="read-only"):
            reader.trades(SYMBOL, (T0, T0 + HOUR)).qty[0] = 1  # one whole segment: the cached arrays themselves
        store.write({(SYMBOL, 0): trades.take(late)})  # late trades: merged into the cached segments
        assert same(reader.trades(SYMBOL, inside), trades)
        levels, reference = reader.price_levels(SYMBOL, inside), PriceLevels.of_trades(trades)
        assert levels is not None and reference is not None
        assert all(np.array_equal(a, b) for a, b in zip(levels.arrays(), reference.arrays(), strict=True))
        store.delete_before(SYMBOL, T0 + HOUR + 1_000)
        assert same(reader.trades(SYMBOL, inside), trades.between(T0 + HOUR + 1_000, T0 + 2 * HOUR))
        assert reader.cache.hits > 0
    finally:
        reader.close()
        store.close()


def test_a_reader_before_the_first_write_sees_an_empty_tape(tmp_path: Path) -> None:
    reader = ShardReader(tmp_path / "nothing")
    try:
        assert len(reader.trades(SYMBOL, None)) == 0
        assert reader.coverage(SYMBOL, None).trade_count == 0
        levels = reader.price_levels(SYMBOL, None)
        assert levels is not None and len(levels) == 0
    finally:
        reader.close()


@pytest.mark.slow
def test_coverage_of_a_seven_day_tape_reads_no_trades(tmp_path: Path) -> None:
    """Whole-tape coverage from the index: milliseconds and no memory growth, whatever the tape's size."""
    store = ShardWriter(tmp_path / "shard")
    trades = tape(1_200_000, 7 * DAY, seed=5)
    held = np.ones(len(trades), dtype=np.bool_)
    held[1::100_000] = False
    store.roll_up(SYMBOL, T0 + 7 * DAY)  # a backfill: every trade goes straight into its segment
    for day in range(7):
        part = trades.take(held & (trades.time >= T0 + day * DAY) & (trades.time < T0 + (day + 1) * DAY))
        store.write({(SYMBOL, day): part})  # the writer groups by trade time itself
    db = store.db
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    timings = []
    for _ in range(5):
        started = time.perf_counter()
        found = read_coverage(db, SYMBOL, None)
        timings.append(time.perf_counter() - started)
    week = read_coverage(db, SYMBOL, (T0, T0 + 7 * DAY))
    started = time.perf_counter()
    read_coverage(db, SYMBOL, (T0 + 1_000, T0 + 7 * DAY - 1_000))
    ranged = time.perf_counter() - started
    store.close()
    assert found.trade_count == len(trades) - 12 and len(found.gaps) == 12
    assert week == found
    assert min(timings) < 0.02, timings
    assert ranged < 0.2, ranged
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before < 50 * 1024


def test_levels_need_no_trades_for_whole_segments(written: tuple[Path, object]) -> None:
    path, trades = written
    reader = ShardReader(path)
    try:
        assert reader.price_levels(SYMBOL, (T0 + HOUR, T0 + 3 * HOUR)) is not None
    finally:
        reader.close()


def test_a_young_window_unchanged_since_the_last_read_is_not_decoded_again(tmp_path: Path) -> None:
    """A dashboard polls the last seconds: the windows that did not change come from the cache, as they were."""
    trades = tape(3_000, 3_000, seed=4)
    store = ShardWriter(tmp_path / "shard")
    store.write(windows_of(SYMBOL, trades))
    reader = ShardReader(tmp_path / "shard", cache_bytes=16 << 20)
    try:
        second = (T0 + 1_000, T0 + 2_000)  # one whole window
        first_read = reader.trades(SYMBOL, second)
        assert same(first_read, trades.between(*second))
        assert reader.trades(SYMBOL, second).agg_id is first_read.agg_id  # held, not decoded again
        with pytest.raises(ValueError, match="read-only"):
            first_read.qty[0] = 1
        assert reader.coverage(SYMBOL, (T0, T0 + 3_000)) == coverage(trades.agg_id, trades.time)
    finally:
        reader.close()
        store.close()


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(1, 40), st.booleans()), min_size=1, max_size=12))
def test_reads_through_held_windows_equal_reads_of_the_store_as_it_is(
    tmp_path_factory: pytest.TempPathFactory, steps: list[tuple[int, int, bool]]
) -> None:
    """Windows written into again (late and new trades), rolled up and read in any order: a reader holding decoded
    windows answers what a reader without a cache does, and what was written."""
    path = tmp_path_factory.mktemp("held") / "shard"
    store = ShardWriter(path)
    cached = ShardReader(path, cache_bytes=16 << 20)
    plain = ShardReader(path)
    written = TradeColumns.empty()
    try:
        next_id = 1_000
        for second, count, roll in steps:
            part = tape(count, 1_000, seed=next_id, first_id=next_id, start_ms=T0 + second * 1_000)
            next_id += count
            store.write(windows_of(SYMBOL, part))
            written = TradeColumns.concat([written, part])
            if roll:
                store.roll_up(SYMBOL, T0 + second * 1_000)
            for time_range in [(T0, T0 + 4_000), (T0 + second * 1_000 + 500, T0 + 4_000), None]:
                expected = written if time_range is None else written.between(*time_range)
                assert same(cached.trades(SYMBOL, time_range), expected)
                assert same(plain.trades(SYMBOL, time_range), expected)
                assert cached.coverage(SYMBOL, time_range) == plain.coverage(SYMBOL, time_range)
                if time_range is not None:  # edge windows held by their summaries never answer stale
                    assert coverage_figures(cached.coverage(SYMBOL, time_range)) == figures_of(written, *time_range)
    finally:
        cached.close()
        plain.close()
        store.close()


def test_young_windows_going_stale_push_out_each_other_not_the_segments(tmp_path: Path) -> None:
    """Every window a poll decoded is held, and none is asked again once rolled up: those must not evict segments."""
    old = tape(4_000, HOUR, seed=5)
    store = ShardWriter(tmp_path / "shard")
    write_rolled(store, old)
    reader = ShardReader(tmp_path / "shard", cache_bytes=4 << 20)
    try:
        hour = (T0, T0 + HOUR)
        assert same(reader.trades(SYMBOL, hour), old)
        misses = reader.cache.misses
        young = tape(80_000, 200_000, seed=6, first_id=100_000, start_ms=T0 + 2 * HOUR)  # ~8 MB held as windows
        for start in range(T0 + 2 * HOUR, T0 + 2 * HOUR + 200_000, 10_000):
            store.write(windows_of(SYMBOL, young.between(start, start + 10_000)))
            assert same(reader.trades(SYMBOL, (start, start + 10_000)), young.between(start, start + 10_000))
            assert reader.cache.held_bytes <= reader.cache.max_bytes
        assert same(reader.trades(SYMBOL, hour), old)
        assert reader.cache.misses == misses, "the segment was pushed out by windows"
    finally:
        reader.close()
        store.close()
