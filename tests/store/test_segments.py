import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tradetape.domain.columns import TradeColumns
from tradetape.domain.price_levels import PriceLevels
from tradetape.store.segments import (
    SegmentFormatError,
    SegmentSummary,
    decode_histogram,
    decode_segment,
    encode_histogram,
    encode_segment,
)

MAX_ID = 2**53 - 1


@st.composite
def trade_columns(draw: st.DrawFn, min_size: int = 1) -> TradeColumns:
    ids = sorted(draw(st.sets(st.integers(0, MAX_ID), min_size=min_size, max_size=60)))
    n = len(ids)
    price = draw(st.lists(st.integers(1, 2**63 - 1), min_size=n, max_size=n))
    qty = draw(st.lists(st.integers(0, 2**63 - 1), min_size=n, max_size=n))
    first = draw(st.lists(st.integers(0, MAX_ID - 1000), min_size=n, max_size=n))
    fills = draw(st.lists(st.integers(0, 1000), min_size=n, max_size=n))
    times = draw(st.lists(st.integers(1_483_228_800_000, 4_102_444_800_000), min_size=n, max_size=n))
    maker = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    first_ids = np.array(first, dtype=np.int64)
    return TradeColumns(
        np.array(ids, dtype=np.int64),
        np.array(price, dtype=np.int64),
        np.array(qty, dtype=np.int64),
        first_ids,
        first_ids + np.array(fills, dtype=np.int64),
        np.array(times, dtype=np.int64),
        np.array(maker, dtype=np.bool_),
    )


def same(a: TradeColumns, b: TradeColumns) -> bool:
    return all(np.array_equal(x, y) for x, y in zip(a.arrays(), b.arrays(), strict=True))


@given(trade_columns())
def test_segment_round_trips_any_valid_trades(columns: TradeColumns) -> None:
    assert same(decode_segment(encode_segment(columns)), columns)


def realistic(n: int) -> TradeColumns:
    rng = np.random.default_rng(3)
    ids = np.arange(3_800_000_000, 3_800_000_000 + n, dtype=np.int64)
    fills = rng.geometric(0.7, n) - 1
    last = 5_700_000_000 + np.cumsum(fills + 1)
    price = 8_700_000_000_000 + np.cumsum(rng.integers(-2, 3, n)) * 1_000_000
    qty = rng.integers(1, 50_000, n) * 1_000
    times = 1_767_225_600_000 + np.cumsum(rng.integers(0, 40, n))
    return TradeColumns(ids, price, qty, last - fills, last, times, rng.random(n) < 0.5)


def test_real_like_trades_take_a_few_bytes_each() -> None:
    columns = realistic(50_000)
    assert len(encode_segment(columns)) / len(columns) < 6


def test_summary_round_trips_and_describes_the_segment() -> None:
    columns = realistic(1_000)
    summary = SegmentSummary.of(1_767_225_600_000, columns)
    assert SegmentSummary.decode(summary.encode()) == summary
    assert summary.trade_count == 1_000 and summary.first_id == int(columns.agg_id[0])
    assert summary.volume == int(columns.qty.sum())
    assert summary.buy_volume == int(columns.qty[~columns.buyer_maker].sum())
    assert (summary.min_price, summary.max_price) == (int(columns.price.min()), int(columns.price.max()))


def reference_levels(columns: TradeColumns) -> dict[int, tuple[int, int, int]]:
    levels: dict[int, tuple[int, int, int]] = {}
    for p, q, m in zip(columns.price.tolist(), columns.qty.tolist(), columns.buyer_maker.tolist(), strict=True):
        volume, buy, count = levels.get(p, (0, 0, 0))
        levels[p] = (volume + q, buy + (0 if m else q), count + 1)
    return levels


def as_dict(levels: PriceLevels) -> dict[int, tuple[int, int, int]]:
    rows = zip(*(c.tolist() for c in levels.arrays()), strict=True)
    return {p: (v, b, c) for p, v, b, c in rows}


@given(trade_columns())
def test_price_levels_are_exact_or_refused(columns: TradeColumns) -> None:
    levels = PriceLevels.of_trades(columns)
    fits = int(columns.qty.max()) * len(columns) <= 2**63 - 1
    assert (levels is not None) == fits
    if levels is not None:
        assert as_dict(levels) == reference_levels(columns)
        assert list(levels.price) == sorted(levels.price)
        assert as_dict(decode_histogram(encode_histogram(levels))) == as_dict(levels)


def test_merged_levels_equal_the_levels_of_all_trades() -> None:
    columns = realistic(5_000)
    parts = [PriceLevels.of_trades(columns.take(slice(lo, lo + 1_000))) for lo in range(0, 5_000, 1_000)]
    merged = PriceLevels.merge([p for p in parts if p is not None])
    assert merged is not None and as_dict(merged) == reference_levels(columns)


def test_unreadable_values_are_a_specific_error() -> None:
    for decode in (decode_segment, SegmentSummary.decode, decode_histogram):
        with pytest.raises(SegmentFormatError):
            decode(b"\x81\xa1v\x63")
