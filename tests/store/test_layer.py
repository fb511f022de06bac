"""The aggregate layer in a real RocksDB: equal to the range's trades' aggregates for any range, voids kept out,
methods answering as from the trades, reads within budget, stores upgraded from format 3 while readable."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import msgpack
import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from tests.store.conftest import BUSY_HOURS
from tests.store.synthetic import SYMBOL, T0, same, tape, windows_of, write_rolled
from tests.store.test_voids import voided
from tradetape.api.errors import QueryError
from tradetape.api.methods import bars, coverage, flow, volume_profile, vwap
from tradetape.domain.aggregates import MinuteLevels, SecondBars, minute_levels, second_bars
from tradetape.domain.columns import TradeColumns
from tradetape.domain.price_levels import PriceLevels
from tradetape.domain.sums import SumOverflowError
from tradetape.services.analytics.query_source import QuerySource
from tradetape.services.analytics.service import AnalyticsService
from tradetape.settings import Settings
from tradetape.store.budget import ReadBudget, ReadTooLargeError
from tradetape.store.keys import (
    HISTOGRAM,
    LAYOUT_KEY,
    MINUTE_LEVELS,
    SECOND_BARS,
    SEGMENT,
    SUMMARY,
    WINDOW_SUMMARY,
    kind_prefix,
    prefix_end,
)
from tradetape.store.layer import recompressed_minute_levels
from tradetape.store.layout import read_layout
from tradetape.store.reader import ShardReader
from tradetape.store.reads import (
    read_all_trades,
    read_minute_levels,
    read_price_levels,
    read_second_bars,
    read_trades,
)
from tradetape.store.rocks import open_primary, scan
from tradetape.store.sealed import seal
from tradetape.store.segments import FORMAT_VERSION, decode_stored_segment
from tradetape.store.writer import ShardWriter
from tradetape.testing import HeldTrades

HOUR = 3_600_000
NOW = T0 + 3 * HOUR
LAYER_KINDS = (SECOND_BARS, MINUTE_LEVELS)


def jittered(trades: TradeColumns, seed: int) -> TradeColumns:
    """`trades` with some times moved back up to 3 s, so agg ids do not always rise with time (late prints)."""
    rng = np.random.default_rng(seed)
    late = rng.random(len(trades)) < 0.05
    time = trades.time - np.where(late, rng.integers(0, 3_000, len(trades)), 0)
    return TradeColumns(trades.agg_id, trades.price, trades.qty, trades.first_id, trades.last_id, time,
                        trades.buyer_maker)  # fmt: skip


def write_tape(store: ShardWriter, trades: TradeColumns) -> None:
    """Rolled up as persist does, the last minute left in young windows."""
    write_rolled(store, trades.take(trades.time < NOW - 60_000))
    store.write(windows_of(SYMBOL, trades.take(trades.time >= NOW - 60_000)))


Aggregates = SecondBars | MinuteLevels | PriceLevels


def bits(column: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    return column.view(np.int64) if column.dtype == np.float64 else column


def same_arrays(a: Aggregates | None, b: Aggregates | None) -> bool:
    """Equal columns, floats bit for bit."""
    assert a is not None and b is not None
    return len(a) == len(b) and all(
        np.array_equal(bits(x), bits(y)) for x, y in zip(a.arrays(), b.arrays(), strict=True)
    )


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ShardWriter, TradeColumns]]:
    """Three busy-ish hours with late prints and voids, rolled into segments, the last minute young."""
    trades = jittered(tape(40_000, 3 * HOUR, seed=5), seed=6)
    void = np.arange(len(trades)) % 997 == 3
    store = ShardWriter(tmp_path_factory.mktemp("layer") / "shard")
    write_tape(store, voided(trades, void))
    yield store, trades.take(~void)
    store.close()


UNITS = st.sampled_from([1, 7, 1_000, 60_000])


@pytest.mark.slow
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(start=st.integers(-5_000, 3 * HOUR + 5_000), length=st.integers(0, 3 * HOUR), unit=UNITS)
def test_layer_reads_equal_the_aggregates_of_the_range_trades(
    stored: tuple[ShardWriter, TradeColumns], start: int, length: int, unit: int
) -> None:
    store, _ = stored
    first = T0 + start - start % unit
    time_range = (first, first + length - length % unit)
    trades = read_trades(store.db, SYMBOL, *time_range)
    assert same_arrays(read_second_bars(store.db, SYMBOL, time_range), second_bars(trades))
    assert same_arrays(read_minute_levels(store.db, SYMBOL, time_range), minute_levels(trades))
    assert same_arrays(read_price_levels(store.db, SYMBOL, time_range), PriceLevels.of_trades(trades))


def test_the_whole_tape_and_intervals_roll_up_as_the_trades(stored: tuple[ShardWriter, TradeColumns]) -> None:
    store, kept = stored
    trades = read_all_trades(store.db, SYMBOL)
    assert len(trades) == len(kept)
    seconds = read_second_bars(store.db, SYMBOL, None)
    assert same_arrays(seconds, second_bars(kept))
    assert seconds.total_count == len(kept)
    levels = read_minute_levels(store.db, SYMBOL, None)
    assert levels is not None and same_arrays(levels, minute_levels(kept))
    for minutes in (1, 5, 60):  # per-interval levels for footprints: every (interval, price) summed exactly
        per = levels.per_interval(minutes * 60_000)
        expected: dict[tuple[int, int], int] = {}
        for t, p, q in zip(kept.time.tolist(), kept.price.tolist(), kept.qty.tolist(), strict=True):
            key = (t - t % (minutes * 60_000), p)
            expected[key] = expected.get(key, 0) + q
        keys = zip(per.time.tolist(), per.price.tolist(), strict=True)
        assert dict(zip(keys, per.volume.tolist(), strict=True)) == expected


def test_voids_never_enter_the_layer(tmp_path: Path) -> None:
    trades = tape(5_000, 2 * HOUR, seed=9)
    void = np.isin(np.arange(len(trades)), [0, 1_500, 2_222, 4_999])
    with_voids, plain = ShardWriter(tmp_path / "voids"), ShardWriter(tmp_path / "plain")
    try:
        write_rolled(with_voids, voided(trades, void))
        write_rolled(plain, trades.take(~void))
        for kind in LAYER_KINDS:
            prefix = kind_prefix(kind, SYMBOL)
            layer = scan(with_voids.db, prefix, prefix_end(prefix))
            assert layer and layer == scan(plain.db, prefix, prefix_end(prefix))
        seconds = read_second_bars(with_voids.db, SYMBOL, (T0 + 1_234, T0 + 2 * HOUR - 1))
        assert seconds.total_count == len(read_trades(with_voids.db, SYMBOL, T0 + 1_234, T0 + 2 * HOUR - 1))
    finally:
        with_voids.close()
        plain.close()


def replies(source: Any, time_range: tuple[int, int]) -> list[BaseModel]:
    span = {"start": time_range[0], "end": time_range[1]}
    return [
        bars.handle(source, SYMBOL, bars.BarsRequest(interval="1m", **span), NOW),
        bars.handle(source, SYMBOL, bars.BarsRequest(interval="7s", **span), NOW),
        flow.handle(source, SYMBOL, flow.FlowRequest(interval="5m", **span), NOW),
        vwap.handle(source, SYMBOL, vwap.VwapRequest(interval="1m", **span), NOW),
        volume_profile.handle(source, SYMBOL, volume_profile.VolumeProfileRequest(min_trades=1, **span), NOW),
    ]


@pytest.mark.parametrize(
    "time_range",
    [(T0 + 1_234, T0 + 3 * HOUR - 4_321), (T0 + HOUR, T0 + 2 * HOUR), (T0 + 59_999, NOW + 1), (T0 - HOUR, NOW)],
)
def test_methods_answer_from_the_layer_as_from_the_trades(
    stored: tuple[ShardWriter, TradeColumns], tmp_path: Path, time_range: tuple[int, int]
) -> None:
    store, kept = stored
    reader = ShardReader(store.path, cache_bytes=2**26)
    try:
        source = QuerySource(reader, ReadBudget(2**30, 100, 100), SYMBOL)
        assert [r.model_dump() for r in replies(source, time_range)] == [
            r.model_dump() for r in replies(HeldTrades(kept), time_range)
        ]
    finally:
        reader.close()


@pytest.mark.slow
def test_bars_over_a_long_range_decode_only_its_ragged_edges(busy: Path) -> None:
    """Before the layer, `bars`, `flow` and `vwap` decoded every trade of the range: within a budget that holds the
    range's second bars and its two edge segments but not all its trades, they were refused (`range_too_large`);
    now they are answered."""
    time_range = (T0 + 1_500, T0 + BUSY_HOURS * HOUR - 700)
    reader = ShardReader(busy, cache_bytes=0)
    try:
        trades = reader.trades(SYMBOL, time_range)
        budget = ReadBudget(max_bytes=len(trades) * bars.METHOD.trade_bytes - 1, trade_bytes=bars.METHOD.trade_bytes,
                            level_bytes=bars.METHOD.level_bytes)  # fmt: skip  # one byte short of the trades
        with pytest.raises(ReadTooLargeError):
            reader.trades(SYMBOL, time_range, budget)
        source = QuerySource(reader, budget, SYMBOL)
        request = {"start": time_range[0], "end": time_range[1]}
        assert bars.handle(source, SYMBOL, bars.BarsRequest(interval="1m", **request), NOW) == bars.handle(
            HeldTrades(trades), SYMBOL, bars.BarsRequest(interval="1m", **request), NOW
        )
        flow.handle(source, SYMBOL, flow.FlowRequest(interval="1m", **request), NOW)
        vwap.handle(source, SYMBOL, vwap.VwapRequest(interval="1m", **request), NOW)
        rows = bars.METHOD.level_bytes
        with pytest.raises(ReadTooLargeError) as refused:  # the layer's rows count: ~36,000 seconds, over 10,000
            reader.second_bars(SYMBOL, time_range, ReadBudget(max_bytes=10_000 * rows, trade_bytes=1, level_bytes=rows))
        assert refused.value.levels >= 30_000
    finally:
        reader.close()


def _as_format_3(path: Path, keep: int = 0) -> None:
    """The store as format 3 left it (no layer, no window summaries), but for the first `keep` segments' layers (an
    upgrade cut short)."""
    db = open_primary(path)
    try:
        for kind in LAYER_KINDS:
            prefix = kind_prefix(kind, SYMBOL)
            for key, _ in scan(db, prefix, prefix_end(prefix))[keep:]:
                db.delete(key)
        prefix = kind_prefix(WINDOW_SUMMARY, SYMBOL)
        for key, _ in scan(db, prefix, prefix_end(prefix)):
            db.delete(key)
        db.put(LAYOUT_KEY, seal(msgpack.packb({"v": 3, "segment_ms": HOUR})))
    finally:
        db.close()


@pytest.mark.slow
def test_a_format_3_store_stays_readable_and_gets_its_layer_when_the_writer_opens_it(
    busy_copy: Path, caplog: pytest.LogCaptureFixture
) -> None:
    busy = busy_copy
    time_range = (T0 + 1_500, T0 + 2 * HOUR - 700)

    def answers() -> list[dict[str, Any]]:
        reader = ShardReader(busy, cache_bytes=0)
        try:
            source = QuerySource(reader, ReadBudget(2**30, 100, 100), SYMBOL)
            end = T0 + BUSY_HOURS * HOUR  # the young windows (summarised from format 7 on) and an edge of them
            young = coverage.CoverageRequest(start=end - 90_500, end=end - 20_500)
            found = [*replies(source, time_range), coverage.handle(source, SYMBOL, young, NOW)]
            return [r.model_dump() for r in found]
        finally:
            reader.close()

    before = answers()
    for keep in (1, 0):  # one segment's layer built before a kill, then none: upgrades cut short, or not begun
        _as_format_3(busy, keep)
        db = open_primary(busy)
        try:
            assert read_layout(db) == (3, HOUR)
            prefix = kind_prefix(SECOND_BARS, SYMBOL)
            assert len(scan(db, prefix, prefix_end(prefix))) == keep
        finally:
            db.close()
        assert answers() == before  # readers decode the trades of a segment without a layer

    caplog.set_level(logging.INFO, logger="tradetape.store.migration")
    ShardWriter(busy).close()
    messages = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert messages == [
        "store upgrade started: building the aggregate layer",
        "store upgraded: aggregate layer built",
        "store upgraded: window summaries written",
    ]
    db = open_primary(busy)
    try:
        assert read_layout(db) == (FORMAT_VERSION, HOUR) == (7, HOUR)
        for kind in LAYER_KINDS:
            prefix = kind_prefix(kind, SYMBOL)
            assert len(scan(db, prefix, prefix_end(prefix))) == BUSY_HOURS
    finally:
        db.close()
    assert answers() == before
    caplog.clear()
    ShardWriter(busy).close()  # upgraded once: nothing more to build
    assert [r for r in caplog.records if r.name == "tradetape.store.migration"] == []


def test_a_segment_whose_sums_pass_2_126_keeps_no_layer_and_its_queries_are_refused(tmp_path: Path) -> None:
    """Hostile but valid trades (quantities near int64, prices far apart in one second) are stored like any other;
    their segment keeps no layer, the other segments do, and a query over them is `range_too_large`."""
    normal = tape(2_000, HOUR, seed=3)
    ids = np.arange(10**6, 10**6 + 3, dtype=np.int64)
    huge = TradeColumns(ids, np.array([2**40, 2**61, 2**62], dtype=np.int64), np.full(3, 2**62, dtype=np.int64),
                        ids, ids, np.full(3, T0 + HOUR + 500, dtype=np.int64), np.zeros(3, dtype=np.bool_))  # fmt: skip
    store = ShardWriter(tmp_path / "shard")
    try:
        write_rolled(store, TradeColumns.concat([normal, huge]))
        assert len(read_all_trades(store.db, SYMBOL)) == 2_003
        for kind in LAYER_KINDS:
            prefix = kind_prefix(kind, SYMBOL)
            assert [key[-13:] for key, _ in scan(store.db, prefix, prefix_end(prefix))] == [str(T0).encode()]
        assert read_second_bars(store.db, SYMBOL, (T0, T0 + HOUR)).total_count == 2_000
        with pytest.raises(SumOverflowError):
            read_second_bars(store.db, SYMBOL, (T0, T0 + 2 * HOUR))
    finally:
        store.close()
    service = AnalyticsService(Settings(data_dir=tmp_path, symbols=(SYMBOL,)), SimpleNamespace(max_payload=2**20))  # type: ignore[arg-type]
    reader = ShardReader(tmp_path / "shard")
    try:
        source = QuerySource(reader, ReadBudget(2**30, 100, 100), SYMBOL)
        body = orjson.dumps({"start": T0, "end": T0 + 2 * HOUR, "interval": "1m"})
        with pytest.raises(QueryError) as refused:
            service.answer(bars.METHOD, SYMBOL, body, source)
        assert refused.value.code == "range_too_large"
        first_hour = orjson.dumps({"start": T0, "end": T0 + HOUR, "interval": "1m"})
        assert orjson.loads(service.answer(bars.METHOD, SYMBOL, first_hour, source))["trade_count"] == 2_000
    finally:
        reader.close()
        service._reader.close()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(st.tuples(st.integers(1, 400), st.integers(0, 90_000), st.booleans()), min_size=1, max_size=6),
    st.integers(0, 2**16),
)
def test_a_segment_grown_roll_up_by_roll_up_equals_the_same_trades_written_whole(
    tmp_path_factory: pytest.TempPathFactory, steps: list[tuple[int, int, bool]], seed: int
) -> None:
    """Live roll-ups append their trades to a segment as a block of their own and grow its summary, histogram and
    layer from the stored ones (late trades into seconds it holds take the merged trades instead): the trades,
    summary, histogram and layer equal those of the same trades imported at once, computed whole."""
    base = tmp_path_factory.mktemp("grown")
    live, whole = ShardWriter(base / "live"), ShardWriter(base / "whole")
    try:
        written: list[TradeColumns] = []
        next_id, clock = 1_000, T0
        for count, span_ms, late in steps:
            start = T0 + (seed % 50) * 1_000 if late and written else clock  # late: back into what was rolled up
            part = tape(count, span_ms + 1, seed=seed + next_id, first_id=next_id, start_ms=start)
            next_id += count
            clock = max(clock, int(part.time.max()) + 1)
            live.write(windows_of(SYMBOL, part))
            live.roll_up(SYMBOL, clock + 1_000)
            written.append(part)
        trades = TradeColumns.concat(written)
        whole.import_trades(SYMBOL, trades, roll_up_before_ms=clock + 1_000)
        for kind in (SEGMENT, SUMMARY, HISTOGRAM, SECOND_BARS, MINUTE_LEVELS):
            prefix = kind_prefix(kind, SYMBOL)
            grown = scan(live.db, prefix, prefix_end(prefix))
            computed = scan(whole.db, prefix, prefix_end(prefix))
            if kind == SEGMENT:  # blocks here, one body there
                assert [key for key, _ in grown] == [key for key, _ in computed]
                for (_, ours), (_, theirs) in zip(grown, computed, strict=True):
                    assert same(decode_stored_segment(ours), decode_stored_segment(theirs))
            elif kind == MINUTE_LEVELS:  # written fast while the hour is open: as at rest once recompressed
                assert [(key, recompressed_minute_levels(value)) for key, value in grown] == computed
            else:
                assert grown == computed, kind
        assert same(read_all_trades(live.db, SYMBOL), trades)
    finally:
        live.close()
        whole.close()
