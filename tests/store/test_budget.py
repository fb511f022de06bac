"""A read past its memory budget is refused before it decodes anything."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.store.synthetic import SYMBOL, T0, same, tape, write_rolled
from tradetape.store.budget import ReadBudget, ReadTooLargeError
from tradetape.store.reader import ShardReader
from tradetape.store.writer import ShardWriter

HOUR_MS = 3_600_000
TRADES = 40_000


@pytest.fixture
def reader(tmp_path: Path) -> ShardReader:
    store = ShardWriter(tmp_path / "shard")
    try:
        write_rolled(store, tape(TRADES, 8 * HOUR_MS))
    finally:
        store.close()
    return ShardReader(tmp_path / "shard", cache_bytes=64 * 2**20)


@pytest.mark.slow
def test_trades_over_the_budget_are_refused_before_any_segment_is_decoded(reader: ShardReader) -> None:
    whole = (T0 + 1_000, T0 + 8 * HOUR_MS - 1_000)
    try:
        with pytest.raises(ReadTooLargeError) as refused:
            reader.trades(SYMBOL, whole, ReadBudget(max_bytes=TRADES * 50, trade_bytes=100))
        assert reader.cache.misses == 0 and reader.cache.hits == 0  # not one segment looked up
        assert TRADES - 100 <= refused.value.trades <= TRADES and refused.value.estimate == refused.value.trades * 100
        fits = reader.trades(SYMBOL, whole, ReadBudget(max_bytes=TRADES * 100, trade_bytes=100))
        assert same(fits, reader.trades(SYMBOL, whole))
    finally:
        reader.close()


@pytest.mark.slow
def test_price_levels_count_the_histograms_levels_before_merging_them(reader: ShardReader) -> None:
    whole = (T0, T0 + 8 * HOUR_MS)
    try:
        levels = reader.price_levels(SYMBOL, whole)
        assert levels is not None
        fits = reader.price_levels(SYMBOL, whole, ReadBudget(max_bytes=10**9, trade_bytes=100, level_bytes=100))
        assert fits is not None and all(map(np.array_equal, fits.arrays(), levels.arrays()))
        with pytest.raises(ReadTooLargeError) as refused:
            reader.price_levels(SYMBOL, whole, ReadBudget(max_bytes=len(levels) * 10, trade_bytes=1, level_bytes=100))
        assert refused.value.levels >= len(levels)  # each segment's own levels, before they are merged
    finally:
        reader.close()
