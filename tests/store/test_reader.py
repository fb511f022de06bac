"""Range reads against a real RocksDB: trades, coverage and price levels equal what was written."""

from __future__ import annotations

import resource
import time
from pathlib import Path

import numpy as np
import pytest

from tests.store.synthetic import SYMBOL, T0, same, tape, windows_of, write_rolled
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
