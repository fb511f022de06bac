"""Vacuum details: deficit and impact, the last crossing, stop advice; profile nodes and default rows."""

from __future__ import annotations

import numpy as np

from tradetape.domain.profile import LiquidityVacuum, default_row_size, infer_tick, volume_nodes, volume_profile
from tradetape.domain.vacuums import deficit_pct, impact_class, last_crossing, suggest_stop


def vacuum(low: int, high: int, rows: int = 2, volume: int = 10) -> LiquidityVacuum:
    return LiquidityVacuum(price_low=low, price_high=high, rows=rows, volume=volume, share=0.0)


def test_deficit_and_impact_classes() -> None:
    assert deficit_pct(vacuum(0, 2, rows=2, volume=10), mean_row_volume=100.0) == 95.0
    assert [impact_class(d) for d in (95.0, 90.0, 80.0, 75.0, 40.0)] == [
        "severe", "severe", "high", "high", "moderate"
    ]
    assert deficit_pct(vacuum(0, 2), mean_row_volume=0.0) == 0.0


def test_last_crossing_is_the_last_passage_from_one_side_to_the_other() -> None:
    price = np.array([5, 12, 25, 14, 3, 8, 30, 26], dtype=np.int64)  # zone [10, 20)
    time = np.arange(len(price), dtype=np.int64) * 1000
    crossing = last_crossing(time, price, 10, 20)
    assert crossing is not None and (crossing.start, crossing.end, crossing.direction) == (5000, 6000, "up")
    down = last_crossing(time[:6], price[:6], 10, 20)
    assert down is not None and (down.start, down.end, down.direction) == (2000, 4000, "down")
    assert last_crossing(time[:2], price[:2], 10, 20) is None  # entered, never left across
    assert last_crossing(time, np.full(8, 15, dtype=np.int64), 10, 20) is None


def test_stops_go_one_row_past_the_nearest_vacuum_on_the_losing_side() -> None:
    zones = [vacuum(100, 130), vacuum(50, 70), vacuum(200, 240)]
    long = suggest_stop("long", 150, zones, row_size=10)
    assert long.stop == 90 and long.vacuum == zones[0]
    short = suggest_stop("short", 150, zones, row_size=10)
    assert short.stop == 250 and short.vacuum == zones[2]
    none = suggest_stop("long", 40, zones, row_size=10)
    assert none.stop is None and "no vacuum below" in none.reason


def test_nodes_are_local_peaks_and_troughs_around_the_mean() -> None:
    volumes = [5, 9, 5, 1, 5, 5, 20, 5, 5]
    price = np.repeat(np.arange(len(volumes), dtype=np.int64) * 10, 1)
    profile = volume_profile(price, np.array(volumes, dtype=np.int64), np.zeros(len(volumes), bool), 10)
    high, low = volume_nodes(profile)
    assert [row.index for row in high] == [6, 1]
    assert [row.index for row in low] == [3]


def test_default_rows_are_at_least_ten_ticks_and_at_most_a_hundred() -> None:
    tick = infer_tick(np.array([8_764_821_000_000, 8_764_822_000_000, 8_764_900_000_000], dtype=np.int64))
    assert tick == 1_000_000  # 0.01
    assert default_row_size(8_764_821_000_000, 8_764_822_000_000, tick) == 10 * tick
    wide = default_row_size(8_700_000_000_000, 8_800_000_000_000, tick)  # 1000 wide: 101 rows of 10, so 20
    assert wide == 2_000_000_000
    assert infer_tick(np.array([], dtype=np.int64)) == 1
