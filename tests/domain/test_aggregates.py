"""1-second bars, minute levels and wide sums against plain Python integer references, and the layer's codec."""

from __future__ import annotations

import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tradetape.domain.aggregates import MinuteLevels, OhlcRows, SecondBars, minute_levels, second_bars
from tradetape.domain.columns import TradeColumns
from tradetape.domain.sums import SumOverflowError, WideSums, product_digits, run_sums, value_digits
from tradetape.errors import FormatError
from tradetape.store.layer import (
    decode_minute_bars,
    decode_minute_levels,
    decode_second_bars,
    encode_minute_levels,
    encode_second_bars,
)
from tradetape.store.sealed import seal, unseal

T0 = 1_767_225_600_000
INT64 = st.integers(0, 2**63 - 1)


@settings(max_examples=200, deadline=None)
@given(pairs=st.lists(st.tuples(INT64, INT64, st.integers(0, 3)), min_size=1, max_size=40))
def test_wide_sums_are_exact_past_int64(pairs: list[tuple[int, int, int]]) -> None:
    pairs.sort(key=lambda pair: pair[2])
    a, b = (np.array([p[i] for p in pairs], dtype=np.int64) for i in (0, 1))
    group = np.array([p[2] for p in pairs], dtype=np.int64)
    starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]])
    keys = sorted(set(group.tolist()))
    products = {k: sum(x * y for x, y, g in pairs if g == k) for k in keys}
    sums = {k: sum(x for x, _, g in pairs if g == k) for k in keys}
    if max(products.values()) >= 2**126:
        with pytest.raises(SumOverflowError):
            run_sums(product_digits(a, b), starts)
    else:
        wide = run_sums(product_digits(a, b), starts)
        assert wide.ints() == [products[k] for k in keys]
        total = sum(products.values())
        if total >= 2**126:  # each group fits, their total does not
            with pytest.raises(SumOverflowError):
                run_sums(wide.digits(), np.array([0]))
        else:
            assert run_sums(wide.digits(), np.array([0])).ints() == [total]  # wide sums add up again
    assert run_sums(value_digits(a), starts).ints() == [sums[k] for k in keys]


TRADES = st.lists(
    st.tuples(st.integers(1, 10**13), st.integers(0, 10**10), st.integers(0, 200_000), st.booleans()),
    min_size=0,
    max_size=60,
)
"""Prices to 100,000 and quantities to 100 (units of 1e-8): 60 trades' Σ q·(p − low)² stays under 2**126, past which
second bars raise `SumOverflowError` (quantities to 10,000 drew a tape past it)."""


def columns(rows: list[tuple[int, int, int, bool]]) -> TradeColumns:
    """Trades in agg-id order, times as drawn (not always rising with ids)."""
    n = len(rows)
    ids = np.arange(100, 100 + n, dtype=np.int64)
    price, qty, offset, maker = (np.array([r[i] for r in rows], dtype=dtype) for i, dtype in
                                 enumerate((np.int64, np.int64, np.int64, np.bool_)))  # fmt: skip
    return TradeColumns(ids, price, qty, ids, ids, T0 + offset, maker)


@settings(max_examples=150, deadline=None)
@given(rows=TRADES, seconds=st.sampled_from([1, 3, 60, 3600]))
def test_bars_rolled_from_second_bars_equal_a_per_interval_reference(
    rows: list[tuple[int, int, int, bool]], seconds: int
) -> None:
    """From second bars, and (whole minutes) from them rolled to a row a minute first (`OhlcRows.per_minute`, what
    a footprint reads), times not always rising with agg ids (late prints)."""
    trades = columns(rows)
    interval = seconds * 1000
    seconds_bars = second_bars(trades)
    paths = [seconds_bars.rolled(interval)]
    if seconds % 60 == 0:
        minutes = seconds_bars.ohlc().per_minute()
        assert len(minutes) == len(np.unique(trades.time // 60_000))
        paths += [minutes.rolled(interval), minutes.per_minute().rolled(interval)]
    reference: dict[int, list[tuple[int, int, int, bool]]] = {}
    fields = (trades.agg_id, trades.price, trades.qty, trades.time, trades.buyer_maker)
    for agg_id, price, qty, time, maker in zip(*(column.tolist() for column in fields), strict=True):
        reference.setdefault(time - time % interval, []).append((agg_id, price, qty, maker))
    for bars in paths:
        assert bars.start.tolist() == sorted(reference)
        for i, start in enumerate(sorted(reference)):
            group = sorted(reference[start])
            prices = [p for _, p, _, _ in group]
            assert (int(bars.open[i]), int(bars.close[i])) == (prices[0], prices[-1])
            assert (int(bars.high[i]), int(bars.low[i])) == (max(prices), min(prices))
            assert bars.volume[i] == sum(q for _, _, q, _ in group)
            assert bars.buy_volume[i] == sum(q for _, _, q, m in group if not m)
            assert bars.quote[i] == sum(p * q for _, p, q, _ in group)
            assert int(bars.trade_count[i]) == len(group)


@settings(max_examples=100, deadline=None)
@given(rows=TRADES, minutes=st.sampled_from([1, 5, 30]))
def test_minute_levels_per_interval_equal_a_reference(rows: list[tuple[int, int, int, bool]], minutes: int) -> None:
    trades = columns([(p % 50 * 10**6 + 10**8, q, t * 30, m) for p, q, t, m in rows])
    levels = minute_levels(trades)
    assert levels is not None
    per = levels.per_interval(minutes * 60_000)
    expected: dict[tuple[int, int], list[int]] = {}
    for price, qty, time, maker in zip(trades.price.tolist(), trades.qty.tolist(), trades.time.tolist(),
                                       trades.buyer_maker.tolist(), strict=True):  # fmt: skip
        row = expected.setdefault((time - time % (minutes * 60_000), price), [0, 0, 0])
        row[0], row[1], row[2] = row[0] + qty, row[1] + (0 if maker else qty), row[2] + 1
    got = zip(per.time.tolist(), per.price.tolist(), per.volume.tolist(), per.buy_volume.tolist(),
              per.trade_count.tolist(), strict=True)  # fmt: skip
    assert {(t, p): [v, b, c] for t, p, v, b, c in got} == expected
    assert list(zip(per.time.tolist(), per.price.tolist(), strict=True)) == sorted(expected)


@settings(max_examples=100, deadline=None)
@given(rows=TRADES, step=st.sampled_from([1, 10**6, 10**7, 3 * 10**7, 10**9]))
def test_bucketed_minute_levels_equal_a_reference(rows: list[tuple[int, int, int, bool]], step: int) -> None:
    """What a footprint of rows a multiple of `step` reads: per minute and price taken down to a multiple of it."""
    trades = columns([(p % 500 * 10**6 + 10**8, q, t * 30, m) for p, q, t, m in rows])
    levels = minute_levels(trades)
    assert levels is not None
    bucketed = levels.bucketed(step)
    expected: dict[tuple[int, int], list[int]] = {}
    for price, qty, time, maker in zip(trades.price.tolist(), trades.qty.tolist(), trades.time.tolist(),
                                       trades.buyer_maker.tolist(), strict=True):  # fmt: skip
        row = expected.setdefault((time - time % 60_000, price - price % step), [0, 0, 0])
        row[0], row[1], row[2] = row[0] + qty, row[1] + (0 if maker else qty), row[2] + 1
    got = list(zip(bucketed.time.tolist(), bucketed.price.tolist(), bucketed.volume.tolist(),
                   bucketed.buy_volume.tolist(), bucketed.trade_count.tolist(), strict=True))  # fmt: skip
    assert got == [(t, p, *expected[(t, p)]) for t, p in sorted(expected)]


def test_levels_whose_buckets_could_leave_int64_are_kept_as_they_are() -> None:
    # each level fits int64 (as the store keeps them), one bucket of both would hold 10**19
    time, price = np.full(2, T0, dtype=np.int64), np.array([10**8, 10**8 + 10**6], dtype=np.int64)
    volume = np.full(2, 5 * 10**18, dtype=np.int64)
    levels = MinuteLevels(time, price, volume, volume, np.ones(2, dtype=np.int64))
    assert levels.bucketed(10**8) is levels  # each level stays, in its bucket's row
    with pytest.raises(ValueError, match="positive"):
        levels.bucketed(0)


def same(a: SecondBars | MinuteLevels | OhlcRows, b: SecondBars | MinuteLevels | OhlcRows) -> bool:
    pairs = zip(a.arrays(), b.arrays(), strict=True)
    return all(np.array_equal(x, y, equal_nan=x.dtype == np.float64) for x, y in pairs)


@settings(max_examples=100, deadline=None)
@given(rows=TRADES, huge=st.booleans())
def test_the_layer_codec_gives_back_what_it_was_given(rows: list[tuple[int, int, int, bool]], huge: bool) -> None:
    trades = columns(rows)
    if huge and len(trades):  # notionals and volumes past int64 in one second
        trades = TradeColumns(trades.agg_id, trades.price % 10**6 + 2**58, trades.qty + 2**61, trades.first_id,
                              trades.last_id, trades.time, trades.buyer_maker)  # fmt: skip
    start = T0 - T0 % 3_600_000
    try:
        bars = second_bars(trades)
    except SumOverflowError:  # the store then keeps no 1-second bars for the segment (`put_layer`)
        assert _widest_second_sum(trades) >= 2**126
        bars = SecondBars.empty()
    if len(bars):
        value = encode_second_bars(start, bars)
        assert same(decode_second_bars(value), bars)
        assert same(decode_minute_bars(value), bars.ohlc().per_minute())
    levels = minute_levels(trades)
    if levels is not None and len(levels):
        assert same(decode_minute_levels(encode_minute_levels(start, levels)), levels)


def _widest_second_sum(trades: TradeColumns) -> int:
    """The largest of a second's exact sums of q·p and q·(p − its low)² (what 1-second bars keep)."""
    seconds: dict[int, list[tuple[int, int]]] = {}
    for time, price, qty in zip(trades.time.tolist(), trades.price.tolist(), trades.qty.tolist(), strict=True):
        seconds.setdefault(time // 1000, []).append((price, qty))
    widest = 0
    for held in seconds.values():
        low = min(price for price, _ in held)
        quote = sum(price * qty for price, qty in held)
        widest = max(widest, quote, sum(qty * (price - low) ** 2 for price, qty in held))
    return widest


def test_wide_values_and_flipped_layer_values() -> None:
    assert WideSums(np.array([1, 0]), np.array([5, 7])).ints() == [2**63 + 5, 7]
    trades = columns([(10**13, 10**9, 10, False), (10**13 + 10**6, 10**9, 20, True), (10**13, 5, 1_500, False)])
    value = encode_second_bars(T0, second_bars(trades))
    for at in (0, len(value) // 2, len(value) - 1):
        damaged = bytearray(value)
        damaged[at] ^= 0xFF
        with pytest.raises(FormatError, match="checksum"):
            decode_second_bars(bytes(damaged))


def test_minute_bars_of_a_value_without_its_minute_frame_are_rolled_from_its_seconds() -> None:
    """A value written before the minute frame is read as it was; one whose frame claims more rows than it may is
    refused before anything is allocated for them."""
    trades = columns([(10**13 + i % 7 * 10**6, 10**9 + i, 30 * i, i % 3 == 0) for i in range(400)])
    trades = TradeColumns(trades.agg_id, trades.price, trades.qty, trades.first_id, trades.last_id,
                          trades.time + np.arange(400) * 450, trades.buyer_maker)  # fmt: skip
    bars = second_bars(trades)
    body = msgpack.unpackb(unseal(encode_second_bars(T0, bars)))
    assert body["mn"] == len(bars.ohlc().per_minute()) > 1
    before = seal(msgpack.packb({k: v for k, v in body.items() if k not in ("mn", "mw", "mz")}))
    assert same(decode_minute_bars(before), bars.ohlc().per_minute())
    with pytest.raises(FormatError, match="minute bars of"):
        decode_minute_bars(seal(msgpack.packb(body | {"mn": len(bars) + 1})))
