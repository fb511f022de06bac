"""USD-M's normal quantity (`nq`) at rest: kept exactly beside `q` in windows, segments and the aggregate layer, for
USD-M only (spot values are byte for byte what they were), unknown where a trade came without one."""

from __future__ import annotations

from pathlib import Path

import msgpack
import numpy as np
import pytest

from tests.store.synthetic import T0, tape, windows_of
from tradetape.domain.aggregates import minute_levels, second_bars
from tradetape.domain.columns import NormalQuantityUnknown, TradeColumns
from tradetape.domain.price_levels import PriceLevels
from tradetape.domain.trade import NO_NORMAL_QTY
from tradetape.store.codec import decode_window, encode_window
from tradetape.store.keys import MINUTE_LEVELS, SECOND_BARS, timed_key
from tradetape.store.layer import decode_normal_minute_levels, decode_normal_second_bars
from tradetape.store.reads import (
    read_all_trades,
    read_minute_bars,
    read_minute_levels,
    read_price_levels,
    read_second_bars,
    read_trades,
)
from tradetape.store.sealed import unseal
from tradetape.store.segments import decode_segment, encode_segment
from tradetape.store.writer import ShardWriter

HOUR = 3_600_000
UM = "um:BTCUSDT"


def with_nq(trades: TradeColumns, seed: int, *, unknown: float = 0.0) -> TradeColumns:
    """`trades` with an `nq` each: mostly `q`, some a part of it, some 0 (all RPI); a share `unknown` without one."""
    rng = np.random.default_rng(seed)
    kind = rng.random(len(trades))
    part = (trades.qty * rng.random(len(trades)) // 1_000 * 1_000).astype(np.int64)
    normal = np.where(kind < 0.8, trades.qty, np.where(kind < 0.95, part, 0))
    normal = np.where(rng.random(len(trades)) < unknown, NO_NORMAL_QTY, normal)
    return TradeColumns.of_arrays([*trades.arrays(), normal.astype(np.int64)])


def same(a: TradeColumns, b: TradeColumns) -> bool:
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a.arrays(), b.arrays(), strict=True))


def test_windows_and_segments_keep_nq_exactly_and_spot_values_are_unchanged() -> None:
    plain = tape(3_000, HOUR, seed=3)
    um = with_nq(plain, seed=4, unknown=0.01)
    for encode, decode in ((encode_window, decode_window), (encode_segment, decode_segment)):
        assert same(decode(encode(um)), um)
        back = decode(encode(plain))
        assert back.normal_qty is None and same(back, plain)
    spot_window, spot_segment = keys(unseal(encode_window(plain))), keys(encode_segment(plain))
    assert "nq" in keys(unseal(encode_window(um))) and "nz" in keys(encode_segment(um))
    assert {"nq", "nz", "nw", "ns"}.isdisjoint(spot_window | spot_segment), "spot values are what they were"


def keys(body: bytes) -> set[str]:
    return set(msgpack.unpackb(body, raw=False))


def write_live(store: ShardWriter, symbol: str, trades: TradeColumns) -> None:
    """Written in 10-minute chunks and rolled up as persist does, the last minute left in young windows."""
    end = int(trades.time.max()) + 1
    starts = trades.time - trades.time % 600_000
    for start in np.unique(starts).tolist():
        store.write(windows_of(symbol, trades.take(starts == start)))
        store.roll_up(symbol, min(start + 600_000, end - 60_000))


@pytest.fixture(scope="module")
def um_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[ShardWriter, TradeColumns]:
    store = ShardWriter(tmp_path_factory.mktemp("nq") / "shard")
    trades = with_nq(tape(20_000, 3 * HOUR, seed=7), seed=8)
    write_live(store, UM, trades)
    return store, trades


@pytest.mark.parametrize(
    "time_range", [(T0 + 1_234, T0 + 3 * HOUR - 4_321), (T0 + HOUR, T0 + 2 * HOUR), None, (T0 + 59_999, T0 + 9_000_001)]
)
def test_the_layer_answers_normal_quantities_as_the_trades_do(
    um_store: tuple[ShardWriter, TradeColumns], time_range: tuple[int, int] | None
) -> None:
    store, trades = um_store
    held = read_all_trades(store.db, UM) if time_range is None else read_trades(store.db, UM, *time_range)
    assert same(held, trades if time_range is None else trades.between(*time_range))
    normal = held.normal()
    seconds, expected = read_second_bars(store.db, UM, time_range, quantity="normal"), second_bars(normal)
    assert all(np.array_equal(x, y) for x, y in zip(seconds.arrays(), expected.arrays(), strict=True))
    assert seconds.volume.ints() != second_bars(held).volume.ints(), "normal volume is not q's"
    if time_range is not None:  # rolled to whole minutes from a row a minute, as from the seconds
        rolled, expected_bars = (
            read_minute_bars(store.db, UM, time_range, quantity="normal").rolled(HOUR),
            expected.rolled(HOUR),
        )
        assert (rolled.volume, rolled.buy_volume, rolled.quote) == (
            expected_bars.volume,
            expected_bars.buy_volume,
            expected_bars.quote,
        )
        assert (
            rolled.open.tolist() == expected_bars.open.tolist()
            and rolled.close.tolist() == expected_bars.close.tolist()
        )
    levels, expected_levels = read_minute_levels(store.db, UM, time_range, quantity="normal"), minute_levels(normal)
    assert levels is not None and expected_levels is not None
    assert all(np.array_equal(x, y) for x, y in zip(levels.arrays(), expected_levels.arrays(), strict=True))
    prices = read_price_levels(store.db, UM, time_range, quantity="normal")
    expected_prices = PriceLevels.of_trades(normal)
    assert prices is not None and expected_prices is not None
    assert all(np.array_equal(x, y) for x, y in zip(prices.arrays(), expected_prices.arrays(), strict=True))


def test_a_segment_with_a_trade_without_nq_has_no_normal_figures(tmp_path: Path) -> None:
    """A USD-M hour holding one trade from a dump (no `nq`): its normal volume is unknown, never guessed."""
    store = ShardWriter(tmp_path / "shard")
    try:
        trades = with_nq(tape(2_000, HOUR, seed=9), seed=10)
        normal = trades.normal_qty
        assert normal is not None
        normal[700] = NO_NORMAL_QTY
        write_live(store, UM, trades)
        store.roll_up(UM, T0 + 2 * HOUR)
        for kind, decode in ((SECOND_BARS, decode_normal_second_bars), (MINUTE_LEVELS, decode_normal_minute_levels)):
            value = store.db.get(timed_key(kind, UM, T0))
            assert value is not None
            with pytest.raises(NormalQuantityUnknown):
                decode(value)
        for read in (read_second_bars, read_minute_levels, read_price_levels):
            with pytest.raises(NormalQuantityUnknown):
                read(store.db, UM, (T0, T0 + HOUR), quantity="normal")
        assert read_second_bars(store.db, UM, (T0, T0 + HOUR)).total_count == len(trades), "q is answered as ever"
    finally:
        store.close()


def test_spot_layer_values_are_byte_for_byte_those_without_nq(tmp_path: Path) -> None:
    trades = tape(3_000, HOUR, seed=11)
    stores = [ShardWriter(tmp_path / name) for name in ("spot", "um")]
    try:
        write_live(stores[0], "BTCUSDT", trades)
        write_live(stores[1], UM, with_nq(trades, seed=12))
        for kind in (SECOND_BARS, MINUTE_LEVELS):
            spot, um = stores[0].db.get(timed_key(kind, "BTCUSDT", T0)), stores[1].db.get(timed_key(kind, UM, T0))
            assert spot is not None and um is not None
            assert "rz" not in keys(unseal(spot)) and "rz" in keys(unseal(um))
            with pytest.raises(NormalQuantityUnknown):
                decode_normal_second_bars(spot) if kind == SECOND_BARS else decode_normal_minute_levels(spot)
    finally:
        for store in stores:
            store.close()
