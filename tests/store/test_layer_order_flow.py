"""`footprint` and `market_profile` read from the aggregate layer answer exactly as from the range's trades.

Over a real RocksDB store with late prints, voids and young windows (`tests/store/test_layer.py`'s
tape): random ranges with ragged edges, intervals of whole minutes (the layer) and not (the
trades), and sessions cutting the range, at row sizes whose layer levels are read bucketed
(`MinuteLevels.bucketed`: a power of ten of ticks) and not; and over a long range, within a budget
that holds its layer and edges but not all its trades.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.store.conftest import BUSY_HOURS
from tests.store.synthetic import SYMBOL, T0, tape
from tests.store.test_layer import HOUR, NOW, same_arrays, stored, write_tape  # noqa: F401 (the fixture)
from tradetape.api.methods import footprint, market_profile
from tradetape.domain.aggregates import TimeBars, minute_levels, second_bars
from tradetape.domain.columns import TradeColumns
from tradetape.services.analytics.query_source import QuerySource
from tradetape.store.budget import ReadBudget, ReadTooLargeError
from tradetape.store.keys import SECOND_BARS, timed_key
from tradetape.store.reader import ShardReader
from tradetape.store.reads import read_minute_bars
from tradetape.store.writer import ShardWriter
from tradetape.testing import HeldTrades

SESSIONS = st.sampled_from(
    [
        None,
        {"tz": "America/New_York", "start": "19:10", "end": "20:35"},  # 00:10-01:35 UTC: cut at odd minutes
        {"tz": "UTC", "start": "00:45", "end": "02:00"},
        {"tz": "Asia/Kolkata", "start": "05:37", "end": "07:05"},  # 00:07-01:35 UTC, by a zone of half hours
    ]
)


def answers(source: Any, time_range: tuple[int, int], interval: str, period: str, session: Any) -> list[Any]:
    span = {"start": time_range[0], "end": time_range[1], "session": session}
    replies: list[Any] = []
    for method, request in (
        (footprint, footprint.FootprintRequest(interval=interval, rows=4, **span)),
        (footprint, footprint.FootprintRequest(interval=interval, row_size="0.05", imbalance=1.5, stacked=2, **span)),
        (footprint, footprint.FootprintRequest(interval=interval, row_size="0.3", imbalance=1.25, stacked=2, **span)),
        (footprint, footprint.FootprintRequest(interval=interval, row_size="2", imbalance=1.1, **span)),
        (market_profile, market_profile.MarketProfileRequest(period=period, **span)),
    ):
        try:
            replies.append(method.handle(source, SYMBOL, request, NOW).model_dump_json())  # type: ignore[attr-defined]
        except Exception as exc:  # a refusal must be the same refusal on both paths
            replies.append((type(exc).__name__, str(exc)))
    return replies


@pytest.fixture(scope="module")
def reader(stored: tuple[ShardWriter, TradeColumns]) -> Any:  # noqa: F811 (the fixture)
    store, _ = stored
    shard = ShardReader(store.path, cache_bytes=2**26)
    yield shard
    shard.close()


@pytest.mark.slow
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    start=st.integers(-5 * 60_000, 3 * HOUR),
    length=st.integers(1, 3 * HOUR + 10 * 60_000),
    unit=st.sampled_from([1, 997, 60_000]),
    interval=st.sampled_from(["1m", "5m", "7m", "30s", "90s"]),
    period=st.sampled_from(["30m", "5m", "45s"]),
    session=SESSIONS,
)
def test_footprint_and_market_profile_from_the_layer_equal_them_from_the_trades(
    stored: tuple[ShardWriter, TradeColumns],  # noqa: F811 (the fixture)
    reader: ShardReader,
    start: int,
    length: int,
    unit: int,
    interval: str,
    period: str,
    session: Any,
) -> None:
    _, kept = stored
    first = T0 + start - start % unit
    time_range = (first, first + max(length - length % unit, unit))
    source = QuerySource(reader, ReadBudget(2**30, 200, 200), SYMBOL)
    layered = answers(source, time_range, interval, period, session)
    assert layered == answers(HeldTrades(kept), time_range, interval, period, session)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    start=st.integers(-5 * 60_000, 3 * HOUR),
    length=st.integers(1, 3 * HOUR + 10 * 60_000),
    unit=st.sampled_from([1, 997, 60_000]),
    step=st.sampled_from([10**6, 10**7, 10**8, 10**9]),
)
def test_bucketed_levels_of_a_range_equal_those_of_its_trades(
    stored: tuple[ShardWriter, TradeColumns],  # noqa: F811 (the fixture)
    reader: ShardReader,
    start: int,
    length: int,
    unit: int,
    step: int,
) -> None:
    """Layers bucketed as they are decoded (and cached so), cut at the range's whole minutes, with its ragged edges,
    voids, late prints and young windows: the bucketed levels of the range's own trades."""
    _, kept = stored
    first = T0 + start - start % unit
    time_range = (first, first + max(length - length % unit, unit))
    expected = minute_levels(kept.between(*time_range))
    assert expected is not None
    for _ in range(2):  # the second time from the cache
        got = reader.minute_levels(SYMBOL, time_range, price_step=step)
        assert got is not None and same_arrays(got, expected.bucketed(step))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    start=st.integers(-5 * 60_000, 3 * HOUR),
    length=st.integers(1, 3 * HOUR + 10 * 60_000),
    unit=st.sampled_from([1, 997, 60_000]),
    minutes=st.sampled_from([1, 5, 7, 60]),
)
def test_minute_bars_of_a_range_roll_up_as_its_trades(
    stored: tuple[ShardWriter, TradeColumns],  # noqa: F811 (the fixture)
    reader: ShardReader,
    start: int,
    length: int,
    unit: int,
    minutes: int,
) -> None:
    """Segments' second bars rolled to a row a minute (and cached so), cut at the range's whole minutes, beside
    its ragged edges' seconds, voids, late prints and young windows: the bars of the range's own trades."""
    _, kept = stored
    first = T0 + start - start % unit
    time_range = (first, first + max(length - length % unit, unit))
    expected = second_bars(kept.between(*time_range)).rolled(minutes * 60_000)
    for _ in range(2):  # the second time from the cache
        got = reader.minute_bars(SYMBOL, time_range).rolled(minutes * 60_000)
        assert same_bars(got, expected)


@pytest.mark.parametrize("layerless_hour", [None, 1], ids=["every-layer", "middle-hour-without-its-layer"])
def test_minute_bars_join_young_windows_and_read_seconds_around_a_segment_without_its_layer(
    tmp_path: Path, layerless_hour: int | None
) -> None:
    """The young windows' seconds come after the last layer's minutes (joined as they are); a segment without its
    second bars among those with them (an upgrade under way) makes the read take second bars: the same bars."""
    trades = tape(20_000, 3 * HOUR, seed=11)
    store = ShardWriter(tmp_path / "shard")
    try:
        write_tape(store, trades)
        if layerless_hour is not None:
            store.db.delete(timed_key(SECOND_BARS, SYMBOL, T0 + layerless_hour * HOUR))
        for time_range in [(T0 + 1_234, NOW + 5_000), (T0 + 59_999, NOW), (T0 + HOUR, T0 + 2 * HOUR + 60_000)]:
            for minutes in (1, 5, 60):
                expected = second_bars(trades.between(*time_range)).rolled(minutes * 60_000)
                assert same_bars(read_minute_bars(store.db, SYMBOL, time_range).rolled(minutes * 60_000), expected)
    finally:
        store.close()


def same_bars(a: TimeBars, b: TimeBars) -> bool:
    return all(
        np.array_equal(np.asarray(getattr(a, name)), np.asarray(getattr(b, name)))
        for name in ("start", "open", "high", "low", "close", "trade_count")
    ) and (a.volume, a.buy_volume, a.quote) == (b.volume, b.buy_volume, b.quote)


@pytest.mark.parametrize(
    ("method", "request_"),
    [
        (footprint, footprint.FootprintRequest(interval="5m", row_size="0.5")),
        (footprint, footprint.FootprintRequest(interval="5m", row_size="0.5", session="utc-day")),
        (market_profile, market_profile.MarketProfileRequest(period="30m", row_size="0.1")),
        (market_profile, market_profile.MarketProfileRequest(period="30m", row_size="0.1", session="utc-day")),
    ],
    ids=["footprint", "footprint-session", "market_profile", "market_profile-session"],
)
def test_order_flow_over_a_long_range_decodes_only_its_ragged_edges(busy: Path, method: Any, request_: Any) -> None:
    """Before, `footprint` and `market_profile` decoded every trade of the range: within a budget that holds the
    range's layer and its two edge segments but not all its trades they were refused (`range_too_large`); now
    they are answered, as from the trades."""
    time_range = (T0 + 1_500, T0 + BUSY_HOURS * HOUR - 700)
    request = request_.model_copy(update={"start": time_range[0], "end": time_range[1]})
    reader = ShardReader(busy, cache_bytes=0)
    try:
        trades = reader.trades(SYMBOL, time_range)
        spec = method.METHOD
        # 9/10 of the trades' cost: this sparse tape (5.5 trades a second) holds a 1-second bar for every 5.5 trades
        budget = ReadBudget(len(trades) * spec.trade_bytes * 9 // 10, spec.trade_bytes, spec.level_bytes)
        with pytest.raises(ReadTooLargeError):
            reader.trades(SYMBOL, time_range, budget)
        answer = method.handle(QuerySource(reader, budget, SYMBOL), SYMBOL, request, NOW)
        assert answer == method.handle(HeldTrades(trades), SYMBOL, request, NOW)
        assert answer.trade_count == len(trades)
    finally:
        reader.close()


def test_a_footprint_reads_the_layer_bucketed_by_its_row_size(busy: Path) -> None:
    """Before, a footprint summed every (minute, price) level of its range (at a cent tick ~0.6 a trade, nearly the
    work of its trades); now it reads them bucketed by the largest power of ten dividing its row size, decoded so
    once and cached: a few levels a minute, and the same answer as from the trades."""
    time_range = (T0 + 1_500, T0 + BUSY_HOURS * HOUR - 700)
    request = footprint.FootprintRequest(interval="5m", row_size="0.5", start=time_range[0], end=time_range[1])
    reader = ShardReader(busy, cache_bytes=2**28)
    try:
        source = QuerySource(reader, ReadBudget(2**30, 200, 200), SYMBOL)
        answer = footprint.handle(source, SYMBOL, request, NOW)
        assert answer == footprint.handle(HeldTrades(reader.trades(SYMBOL, time_range)), SYMBOL, request, NOW)
        misses = reader.cache.misses
        bucketed = reader.minute_levels(SYMBOL, time_range, price_step=10**7)  # 0.1: the largest dividing 0.5
        assert reader.cache.misses == misses  # the footprint read (and cached) exactly these
        every = reader.minute_levels(SYMBOL, time_range)
        assert bucketed is not None and every is not None
        assert len(bucketed) * 4 < len(every)
        assert bucketed.trade_count.sum() == every.trade_count.sum() == answer.trade_count
    finally:
        reader.close()
