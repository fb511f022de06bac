"""Volume profile and liquidity vacuum rules (docs/design.md, "Query API").

Every expected value below is worked out by hand in the comments next to it; the last
tests compare against a slow pure-Python ``Decimal`` reference on random trades.
"""

from __future__ import annotations

import random
from decimal import Decimal
from fractions import Fraction

import numpy as np
import pytest

from tests.reference_profile import reference_profile
from tradetape.domain.decimals import format_units, parse_units
from tradetape.domain.profile import (
    LiquidityVacuum,
    VolumeProfile,
    choose_row_size,
    liquidity_vacuums,
    volume_profile,
)

Trade = tuple[int, int, bool]  # (price units, qty units, buyer_maker)


def profile_of(trades: list[Trade], row_size: int, value_area: Decimal = Decimal("0.7")) -> VolumeProfile:
    price = np.array([t[0] for t in trades], dtype=np.int64)
    qty = np.array([t[1] for t in trades], dtype=np.int64)
    maker = np.array([t[2] for t in trades], dtype=np.bool_)
    return volume_profile(price, qty, maker, row_size, value_area)


def profile_with_volumes(
    volumes: list[int], row_size: int = 100, first_row: int = 0, **kwargs: Decimal
) -> VolumeProfile:
    """One trade per non-empty row, at the row's bottom edge, with the given volume."""
    trades = [((first_row + i) * row_size, v, False) for i, v in enumerate(volumes) if v]
    return profile_of(trades, row_size, **kwargs)


# --- rows ----------------------------------------------------------------------------------


def test_price_on_row_edge_goes_to_the_row_above() -> None:
    # row_size 100: 99 -> row 0; 100 and 199 -> row 1; 200 -> row 2.
    p = profile_of([(100, 1, False), (199, 2, False), (200, 4, False), (99, 8, False)], 100)
    assert [r.index for r in p.rows] == [0, 1, 2]
    assert [(r.price_low, r.price_high) for r in p.rows] == [(0, 100), (100, 200), (200, 300)]
    assert [r.volume for r in p.rows] == [8, 3, 4]
    assert [r.trade_count for r in p.rows] == [1, 2, 1]


def test_row_edge_with_real_prices() -> None:
    # Row size 10 USDT: 87650.00 is the bottom edge of row 8765, 87649.99999999 the top of 8764.
    size = parse_units("10")
    p = profile_of([(parse_units("87650.00"), 1, False), (parse_units("87649.99999999"), 1, False)], size)
    assert [r.index for r in p.rows] == [8764, 8765]
    assert p.rows[1].price_low == parse_units("87650")
    assert p.rows[0].price_high == parse_units("87650")


def test_empty_rows_between_traded_rows_are_present() -> None:
    # Trades in rows 1 and 5 -> rows 1..5, rows 2, 3, 4 empty.
    p = profile_of([(150, 3, False), (510, 7, True)], 100)
    assert [r.index for r in p.rows] == [1, 2, 3, 4, 5]
    assert [r.volume for r in p.rows] == [3, 0, 0, 0, 7]
    assert [r.trade_count for r in p.rows] == [1, 0, 0, 0, 1]
    assert [(r.buy_volume, r.sell_volume) for r in p.rows[1:4]] == [(0, 0)] * 3
    assert p.trade_count == 2
    assert p.total_volume == 10


def test_buy_and_sell_split_follows_buyer_maker() -> None:
    # m=True: buyer is maker, taker sold -> sell volume; m=False -> buy volume.
    p = profile_of([(100, 3, True), (150, 4, False), (250, 5, True), (120, 6, False)], 100)
    assert [(r.buy_volume, r.sell_volume) for r in p.rows] == [(10, 3), (0, 5)]
    assert [r.volume for r in p.rows] == [13, 5]
    assert (p.buy_volume, p.sell_volume, p.total_volume) == (10, 8, 18)


def test_sums_do_not_overflow_int64() -> None:
    big = 9_000_000_000_000_000_000  # 9e18 units, just under int64 max (9.22e18)
    odd = 2**62 + 12345
    trades = [(100, big, False)] * 3 + [(150, big, True)] * 2 + [(110, odd, True), (120, 1, False)]
    p = profile_of(trades, 100)
    (row,) = p.rows
    assert row.buy_volume == 3 * big + 1 == 27_000_000_000_000_000_001
    assert row.sell_volume == 2 * big + odd == 18_000_000_000_000_000_000 + 2**62 + 12345
    assert row.volume == 5 * big + odd + 1
    assert p.total_volume == row.volume
    assert row.trade_count == 7


def test_many_large_trades_sum_exactly() -> None:
    # 200_000 trades of 2**62 - 1 units (odd, every bit set) in one row and 100_000 in another.
    q = 2**62 - 1
    price = np.array([5] * 200_000 + [15] * 100_000, dtype=np.int64)
    qty = np.full(300_000, q, dtype=np.int64)
    maker = np.zeros(300_000, dtype=np.bool_)
    maker[::2] = True
    p = volume_profile(price, qty, maker, 10)
    assert [r.volume for r in p.rows] == [200_000 * q, 100_000 * q]
    assert [r.sell_volume for r in p.rows] == [100_000 * q, 50_000 * q]
    assert p.total_volume == 300_000 * q


def test_large_quantities_below_int64_total_sum_exactly() -> None:
    # 300_000 trades of 2**40 + 12345 units: too wide for one float64 chunk per column, but
    # all of them together stay below 2**63 -- rows 0, 1, 2 take 100_000 trades each.
    q = 2**40 + 12_345
    price = np.repeat(np.array([0, 10, 20], dtype=np.int64), 100_000)
    qty = np.full(300_000, q, dtype=np.int64)
    qty[-1] = 7  # one small trade in the top row
    maker = np.zeros(300_000, dtype=np.bool_)
    maker[100_000:] = True  # rows 1 and 2 are sells
    p = volume_profile(price, qty, maker, 10)
    assert [r.volume for r in p.rows] == [100_000 * q, 100_000 * q, 99_999 * q + 7]
    assert [r.buy_volume for r in p.rows] == [100_000 * q, 0, 0]
    assert p.total_volume == 299_999 * q + 7


# --- POC -----------------------------------------------------------------------------------


def test_poc_is_the_row_with_most_volume() -> None:
    p = profile_with_volumes([1, 9, 3])
    assert p.poc_row == 1
    assert (p.poc_low, p.poc_high) == (100, 200)


def test_poc_tie_odd_row_count_nearest_to_middle() -> None:
    # rows 0..4, middle 2: ties at 0 (distance 2) and 3 (distance 1) -> 3.
    p = profile_with_volumes([5, 1, 1, 5, 1])
    assert p.poc_row == 3


def test_poc_tie_odd_row_count_equidistant_takes_lower() -> None:
    # rows 0..4, middle 2: ties at 0 and 4, both distance 2 -> the lower, 0.
    p = profile_with_volumes([5, 1, 1, 1, 5])
    assert p.poc_row == 0


def test_poc_tie_even_row_count_nearest_to_middle() -> None:
    # rows 0..3, middle 1.5: ties at 0 (1.5), 2 (0.5), 3 (1.5) -> 2.
    p = profile_with_volumes([5, 1, 5, 5])
    assert p.poc_row == 2


def test_poc_tie_even_row_count_equidistant_takes_lower() -> None:
    # rows 0..3, middle 1.5: ties at 1 and 2, both 0.5 away -> 1.
    p = profile_with_volumes([1, 5, 5, 1])
    assert p.poc_row == 1


def test_poc_middle_is_of_the_profile_not_of_row_zero() -> None:
    # rows 7..11, middle 9: ties at 7 (distance 2), 10 (1), 11 (2) -> row 10, position 3.
    p = profile_with_volumes([4, 1, 1, 4, 4], first_row=7)
    assert p.rows[p.poc_row].index == 10
    assert p.poc_row == 3


def test_poc_middle_counts_empty_rows() -> None:
    # rows 0..6 with 1..4 empty, middle 3: ties at 0 (3), 5 (2), 6 (3) -> 5.
    p = profile_with_volumes([2, 0, 0, 0, 0, 2, 2])
    assert p.poc_row == 5


def test_poc_price_is_middle_of_row() -> None:
    # row_size 0.1 = 10_000_000 units; 87650.07 is in [87650.0, 87650.1) -> poc 87650.05.
    p = profile_of([(parse_units("87650.07"), 1, False)], parse_units("0.1"))
    assert (p.poc_low, p.poc_high) == (parse_units("87650.0"), parse_units("87650.1"))
    assert p.poc == Decimal("87650.05")
    assert str(p.poc) == "87650.05"


def test_poc_with_odd_row_size_has_ninth_decimal() -> None:
    # row_size 3 units; 87650.05 = 8765005000000 units = 3 * 2921668333333 + 1,
    # so the row is [8765004999999, 8765005000002) and its middle 8765005000000.5 units.
    p = profile_of([(parse_units("87650.05"), 1, False)], 3)
    assert (p.poc_low, p.poc_high) == (8_765_004_999_999, 8_765_005_000_002)
    assert p.poc == Decimal("87650.050000005")
    assert str(p.poc) == "87650.050000005"


def test_poc_whole_number_has_no_trailing_zeros() -> None:
    # row_size 2 USDT, trade at 101 -> row [100, 102), middle 101.
    p = profile_of([(parse_units("101"), 1, False)], parse_units("2"))
    assert str(p.poc) == "101"


# --- value area ----------------------------------------------------------------------------


def test_value_area_adds_larger_neighbour() -> None:
    # volumes [1, 3, 10, 2, 1], total 17, target 11.9; POC row 2 (10);
    # above 2 < below 3 -> add row 1: 13 >= 11.9 -> rows 1..2.
    p = profile_with_volumes([1, 3, 10, 2, 1])
    assert (p.value_area_low_row, p.value_area_high_row) == (1, 2)
    assert (p.val, p.vah) == (100, 300)
    assert p.value_area_volume == 13


def test_value_area_tie_takes_upper() -> None:
    # volumes [1, 2, 10, 2, 1], total 16, target 11.2; POC row 2 (10);
    # above 2 == below 2 -> upper, row 3: 12 >= 11.2 -> rows 2..3.
    p = profile_with_volumes([1, 2, 10, 2, 1])
    assert (p.value_area_low_row, p.value_area_high_row) == (2, 3)
    assert (p.val, p.vah) == (200, 400)


def test_value_area_adds_one_row_at_a_time() -> None:
    # volumes [1, 1, 4, 10, 3, 1], total 20, target 14; POC row 3 (10);
    # above 3 < below 4 -> row 2: 14, not below 14 -> stop. Rows 2..3 (not row 4 as well).
    p = profile_with_volumes([1, 1, 4, 10, 3, 1])
    assert (p.value_area_low_row, p.value_area_high_row) == (2, 3)


def test_value_area_target_is_compared_exactly() -> None:
    # volumes [1, 2, 5, 2], total 10, target exactly 7; POC row 2 (5);
    # tie 2 / 2 -> upper row 3: 7, not below 7 -> stop at rows 2..3.
    p = profile_with_volumes([1, 2, 5, 2])
    assert (p.value_area_low_row, p.value_area_high_row) == (2, 3)
    # The same scaled by x = 100000000000000033 (total 10x ~ 1e18 units): the exact target
    # is 7x = 700000000000000231, where 0.7 * 10x in floats is 700000000000000256, so a
    # float comparison would add row 1 as well.
    x = 100_000_000_000_000_033
    assert 0.7 * (10 * x) > 7 * x  # the float trap this test is about
    p = profile_with_volumes([x, 2 * x, 5 * x, 2 * x])
    assert (p.value_area_low_row, p.value_area_high_row) == (2, 3)
    # value_area given as a float is read as the decimal it spells: still exactly 7x.
    p = profile_with_volumes([x, 2 * x, 5 * x, 2 * x], value_area=0.7)  # type: ignore[arg-type]
    assert (p.value_area_low_row, p.value_area_high_row) == (2, 3)


def test_value_area_upper_side_exhausted() -> None:
    # volumes [1, 2, 3, 10], POC is the top row 3. 70 %: target 11.2 -> row 2 (13) -> 2..3.
    p = profile_with_volumes([1, 2, 3, 10])
    assert (p.value_area_low_row, p.value_area_high_row) == (2, 3)
    # 90 %: target 14.4 -> row 2 (13), row 1 (15) -> 1..3.
    p = profile_with_volumes([1, 2, 3, 10], value_area=Decimal("0.9"))
    assert (p.value_area_low_row, p.value_area_high_row) == (1, 3)


def test_value_area_lower_side_exhausted_midway() -> None:
    # volumes [3, 10, 1, 1, 1], total 16. 90 %: target 14.4; POC row 1 (10);
    # above 1 < below 3 -> row 0: 13; below exhausted -> row 2: 14; row 3: 15 -> rows 0..3.
    p = profile_with_volumes([3, 10, 1, 1, 1], value_area=Decimal("0.9"))
    assert (p.value_area_low_row, p.value_area_high_row) == (0, 3)
    assert (p.val, p.vah) == (0, 400)


def test_value_area_passes_over_empty_rows() -> None:
    # volumes [4, 0, 10, 0, 0, 1], total 15, target 10.5; POC row 2;
    # above 0 < below 0? tie -> upper row 3 (0): 10; above 0 < below 0 tie -> row 4 (0): 10;
    # above 1 > below 0 -> row 5: 11 >= 10.5 -> rows 2..5.
    p = profile_with_volumes([4, 0, 10, 0, 0, 1])
    assert (p.value_area_low_row, p.value_area_high_row) == (2, 5)


def test_value_area_one_covers_all_rows() -> None:
    p = profile_with_volumes([5, 0, 0, 1, 7, 0, 2], value_area=Decimal("1"))
    assert (p.value_area_low_row, p.value_area_high_row) == (0, 6)
    assert (p.val, p.vah) == (0, 700)
    assert p.value_area_volume == p.total_volume == 15


def test_single_row_profile() -> None:
    p = profile_of([(1234, 5, False), (1299, 7, True)], 100)
    assert len(p.rows) == 1
    assert p.poc_row == p.value_area_low_row == p.value_area_high_row == 0
    assert (p.val, p.vah, p.poc_low, p.poc_high) == (1200, 1300, 1200, 1300)
    assert p.poc == Decimal("0.0000125")  # 1250 units


def test_default_value_area_is_70_percent() -> None:
    # volumes [3, 3, 4], total 10, target 7. POC row 2 (top); below -> row 1: 7 -> rows 1..2.
    # Were the default 0.8, row 0 would be added too.
    p = profile_with_volumes([3, 3, 4])
    assert (p.value_area_low_row, p.value_area_high_row) == (1, 2)


# --- input checks --------------------------------------------------------------------------


def test_rejects_empty_input() -> None:
    empty = np.array([], dtype=np.int64)
    with pytest.raises(ValueError):
        volume_profile(empty, empty, np.array([], dtype=np.bool_), 100)


@pytest.mark.parametrize("row_size", [0, -1])
def test_rejects_non_positive_row_size(row_size: int) -> None:
    with pytest.raises(ValueError):
        profile_of([(100, 1, False)], row_size)


@pytest.mark.parametrize("value_area", [Decimal("0"), Decimal("-0.1"), Decimal("1.01")])
def test_rejects_value_area_outside_unit_interval(value_area: Decimal) -> None:
    with pytest.raises(ValueError):
        profile_of([(100, 1, False)], 100, value_area)


def test_rejects_mismatched_columns_and_negative_quantity() -> None:
    with pytest.raises(ValueError):
        volume_profile(np.array([1, 2]), np.array([1]), np.array([True, False]), 10)
    with pytest.raises(ValueError):
        profile_of([(100, -1, False)], 100)


def test_rejects_float_prices() -> None:
    with pytest.raises(TypeError):
        volume_profile(np.array([1.5]), np.array([1]), np.array([False]), 10)


def test_rejects_too_many_rows() -> None:
    # Prices 0 and 10_000 with row_size 1 -> 10_001 rows.
    trades = [(0, 1, False), (10_000, 1, False)]
    price = np.array([t[0] for t in trades])
    qty = np.array([t[1] for t in trades])
    maker = np.array([t[2] for t in trades])
    with pytest.raises(ValueError):
        volume_profile(price, qty, maker, 1, max_rows=10_000)
    assert len(volume_profile(price, qty, maker, 1, max_rows=10_001).rows) == 10_001


# --- choose_row_size -----------------------------------------------------------------------


def test_choose_row_size_simple() -> None:
    # 0..999 in at most 10 rows: 50 gives 20 rows, 100 gives 10.
    assert choose_row_size(0, 999, 10) == 100
    # 0..1000 needs an 11th row at 100 (1000 // 100 = 10) -> 200 gives 6.
    assert choose_row_size(0, 1000, 10) == 200


def test_choose_row_size_btc_range() -> None:
    # 87000..88000 USDT, 24 rows, tick 0.01: 25 USDT gives 3520 - 3480 + 1 = 41 rows,
    # 50 USDT gives 1760 - 1740 + 1 = 21.
    low, high = parse_units("87000"), parse_units("88000")
    assert choose_row_size(low, high, 24, tick=parse_units("0.01")) == parse_units("50")


def test_choose_row_size_uses_2_5_steps_but_not_2_5_ticks() -> None:
    # 0..249 in 10 rows: 20 gives 13 rows, 25 gives 10 -> 25 (tick 1).
    assert choose_row_size(0, 249, 10) == 25
    # With tick 10, 25 is 2.5 ticks and is skipped -> 50 (5 rows).
    assert choose_row_size(0, 249, 10, tick=10) == 50
    # With tick 1, 2.5 units is not a whole unit: 0..9 in 4 rows -> 2 gives 5, 5 gives 2.
    assert choose_row_size(0, 9, 4) == 5


def test_choose_row_size_counts_row_alignment() -> None:
    # 95..104 is only 9 units wide but straddles 100: every nice size up to 100 puts 95 and
    # 104 in different rows (e.g. 50: rows 1 and 2), so a single row needs 200.
    assert choose_row_size(95, 104, 1) == 200
    # Two rows: 2 gives 52 - 47 + 1 = 6 rows, 5 gives 20 - 19 + 1 = 2.
    assert choose_row_size(95, 104, 2) == 5


def test_choose_row_size_single_price_is_tick() -> None:
    assert choose_row_size(12_345, 12_345, 1) == 1
    assert choose_row_size(parse_units("87000"), parse_units("87000"), 50, tick=10**6) == 10**6


def test_choose_row_size_result_is_never_above_rows() -> None:
    rng = random.Random(7)
    for _ in range(500):
        low = rng.randrange(0, 10**13)
        high = low + rng.randrange(0, 10 ** rng.randrange(1, 12))
        rows = rng.randrange(1, 200)
        tick = 10 ** rng.randrange(0, 7)
        size = choose_row_size(low, high, rows, tick)
        assert size % tick == 0
        assert high // size - low // size + 1 <= rows


@pytest.mark.parametrize(("low", "high", "rows", "tick"), [(10, 5, 3, 1), (0, 5, 0, 1), (0, 5, 3, 0)])
def test_choose_row_size_rejects_bad_input(low: int, high: int, rows: int, tick: int) -> None:
    with pytest.raises(ValueError):
        choose_row_size(low, high, rows, tick)


# --- liquidity vacuums ---------------------------------------------------------------------


def test_vacuums_widest_first_then_lower_price() -> None:
    # 17 rows, five of 50 at 0, 4, 9, 12, 16; total 250, mean 250/17 = 14.7, bound 2.94.
    # Thin runs: 1..3 (3 rows), 5..8 (4), 10..11 (2), 13..15 (3).
    volumes = [50, 0, 0, 0, 50, 0, 0, 0, 0, 50, 0, 0, 50, 0, 0, 0, 50]
    p = profile_with_volumes(volumes)
    got = liquidity_vacuums(p)
    assert got == [
        LiquidityVacuum(price_low=500, price_high=900, rows=4, volume=0, share=0.0),
        LiquidityVacuum(price_low=100, price_high=400, rows=3, volume=0, share=0.0),
        LiquidityVacuum(price_low=1300, price_high=1600, rows=3, volume=0, share=0.0),
    ]
    got2 = liquidity_vacuums(p, min_rows=2)
    assert [(v.price_low, v.rows) for v in got2] == [(500, 4), (100, 3), (1300, 3), (1000, 2)]
    assert liquidity_vacuums(p, min_rows=5) == []


def test_vacuums_exclude_edge_rows() -> None:
    # volumes [1, 0, 0, 100, 100, 100, 0, 0, 1]: total 302, 9 rows, bound 6.7.
    # Rows 0 and 8 are thin but are the lowest / highest traded rows: excluded,
    # so the runs are 1..2 and 6..7, two rows each.
    p = profile_with_volumes([1, 0, 0, 100, 100, 100, 0, 0, 1])
    assert liquidity_vacuums(p, min_rows=3) == []
    got = liquidity_vacuums(p, min_rows=2)
    assert [(v.price_low, v.price_high, v.rows) for v in got] == [(100, 300, 2), (600, 800, 2)]


def test_vacuum_volume_and_share() -> None:
    # volumes [50, 1, 1, 1, 50]: total 103, mean 20.6, bound 4.12 -> rows 1..3, volume 3.
    p = profile_with_volumes([50, 1, 1, 1, 50])
    (v,) = liquidity_vacuums(p)
    assert (v.price_low, v.price_high, v.rows, v.volume) == (100, 400, 3, 3)
    assert v.share == pytest.approx(3 / 103)


def test_vacuum_threshold_is_strict() -> None:
    # volumes [20, 2, 2, 2, 24]: total 50, 5 rows, mean 10; 0.2 * mean = 2 exactly.
    p = profile_with_volumes([20, 2, 2, 2, 24])
    assert liquidity_vacuums(p, threshold=0.2) == []  # 2 is not below 2
    assert [v.rows for v in liquidity_vacuums(p, threshold=0.21)] == [3]  # 2 < 2.1


def test_vacuum_mean_includes_empty_rows() -> None:
    # volumes [50, 3, 3, 3, 0, 0, 0, 50]: total 109 over 8 rows -> bound 0.2 * 13.625 = 2.725,
    # so the 3s are not thin and only rows 4..6 are. (Over the 5 traded rows the mean
    # would be 21.8, the bound 4.36 and the run 1..6.)
    p = profile_with_volumes([50, 3, 3, 3, 0, 0, 0, 50])
    got = liquidity_vacuums(p)
    assert [(v.price_low, v.price_high, v.rows) for v in got] == [(400, 700, 3)]


def test_vacuum_run_ending_next_to_top_edge() -> None:
    # volumes [50, 50, 0, 0, 0, 50]: run 2..4 ends just below the top row.
    p = profile_with_volumes([50, 50, 0, 0, 0, 50])
    assert [(v.price_low, v.price_high) for v in liquidity_vacuums(p)] == [(200, 500)]


def test_vacuums_reject_bad_arguments() -> None:
    p = profile_with_volumes([5, 0, 0, 0, 5])
    with pytest.raises(ValueError):
        liquidity_vacuums(p, min_rows=0)
    with pytest.raises(ValueError):
        liquidity_vacuums(p, threshold=-0.1)
    with pytest.raises(ValueError):
        liquidity_vacuums(p, threshold=float("nan"))


# --- against a slow Decimal reference ------------------------------------------------------


def to_decimal(units: int) -> Decimal:
    return Decimal(format_units(units))


@pytest.mark.parametrize(
    ("seed", "n", "row_size", "value_area", "qty_choices"),
    [
        (1, 3000, "0.5", "0.7", None),
        (2, 3000, "0.01", "0.7", None),
        (3, 2000, "1.23456789", "0.5", None),
        (4, 2000, "0.00000003", "0.95", None),  # odd number of units
        (5, 3000, "2.5", "1", None),
        (6, 400, "1", "0.7", ["0.001", "0.002"]),  # coarse quantities: many exact ties
        (7, 300, "0.25", "0.6", ["1"]),
    ],
)
def test_matches_decimal_reference(
    seed: int, n: int, row_size: str, value_area: str, qty_choices: list[str] | None
) -> None:
    rng = random.Random(seed)
    if row_size == "0.00000003":
        prices = [f"87650.{rng.randrange(0, 1000):08d}" for _ in range(n)]
    else:
        prices = [f"{rng.randrange(8_700_000, 8_702_000) / 100:.2f}" for _ in range(n)]
    if qty_choices is None:
        qtys = [f"{rng.randrange(1, 10**10) / 10**8:.8f}" for _ in range(n)]
    else:
        qtys = [rng.choice(qty_choices) for _ in range(n)]
    makers = [rng.random() < 0.5 for _ in range(n)]
    trades = list(zip(prices, qtys, makers, strict=True))

    ref = reference_profile(trades, row_size, value_area)
    got = volume_profile(
        np.array([parse_units(p) for p in prices], dtype=np.int64),
        np.array([parse_units(q) for q in qtys], dtype=np.int64),
        np.array(makers, dtype=np.bool_),
        parse_units(row_size),
        Decimal(value_area),
    )
    got_rows = [
        (
            r.index,
            to_decimal(r.price_low),
            to_decimal(r.price_high),
            to_decimal(r.volume),
            to_decimal(r.buy_volume),
            to_decimal(r.sell_volume),
            Decimal(r.trade_count),
        )
        for r in got.rows
    ]
    assert got_rows == ref["rows"]
    assert got.poc == ref["poc"]
    assert to_decimal(got.val) == ref["val"]
    assert to_decimal(got.vah) == ref["vah"]
    assert got.trade_count == n
    assert to_decimal(got.total_volume) == sum(Decimal(q) for q in qtys)

    # Vacuums by the rule, row by row, in exact fractions.
    vols = [r.volume for r in got.rows]
    bound = Fraction(1, 5) * Fraction(sum(vols), len(vols))
    thin = [0 < i < len(vols) - 1 and vols[i] < bound for i in range(len(vols))]
    runs = []
    i = 0
    while i < len(vols):
        if thin[i]:
            j = i
            while j + 1 < len(vols) and thin[j + 1]:
                j += 1
            if j - i + 1 >= 3:
                runs.append((j - i + 1, got.rows[i].price_low, got.rows[j].price_high))
            i = j + 1
        else:
            i += 1
    runs.sort(key=lambda r: (-r[0], r[1]))
    assert [(v.rows, v.price_low, v.price_high) for v in liquidity_vacuums(got)] == runs
