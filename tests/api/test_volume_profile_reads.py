"""What `volume_profile` reads from a real store: with a `row_size`, the layer's minute levels bucketed into its rows
(a few levels a minute), never a level per distinct price; answers equal to the profile of the range's trades."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.store.synthetic import SYMBOL, T0, rolled_store, tape
from tradetape.api.methods import liquidity_vacuums, volume_profile
from tradetape.domain.aggregates import MinuteLevels
from tradetape.domain.columns import TradeColumns
from tradetape.domain.decimals import parse_units
from tradetape.domain.footprint import level_step
from tradetape.domain.price_levels import PriceLevels
from tradetape.services.analytics.query_source import QuerySource
from tradetape.store.budget import ReadBudget
from tradetape.store.reader import ShardReader
from tradetape.testing import HeldTrades

HOUR = 3_600_000
MINUTE = 60_000
NOW = T0 + 4 * HOUR
AN_HOUR = (T0 + 25 * MINUTE + 1_234, T0 + 85 * MINUTE + 77)
"""One hour cutting two segments at ragged milliseconds: no segment inside, both edges ragged."""


class ReadsSeen(QuerySource):
    """The worker's own source over a real reader, noting each read a handler makes."""

    def __init__(self, reader: ShardReader) -> None:
        super().__init__(reader, ReadBudget(2**30, 100, 100), SYMBOL)
        self.seen: list[tuple[str, int]] = []

    def trades(self, symbol: str, time_range: tuple[int, int] | None) -> TradeColumns:
        found = super().trades(symbol, time_range)
        self.seen.append(("trades", len(found)))
        return found

    def price_levels(self, symbol: str, time_range: tuple[int, int] | None) -> PriceLevels | None:
        found = super().price_levels(symbol, time_range)
        self.seen.append(("price_levels", -1 if found is None else len(found)))
        return found

    def minute_levels(
        self, symbol: str, time_range: tuple[int, int] | None, price_step: int = 1
    ) -> MinuteLevels | None:
        found = super().minute_levels(symbol, time_range, price_step)
        self.seen.append((f"minute_levels/{price_step}", -1 if found is None else len(found)))
        return found


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ShardReader, TradeColumns]]:
    trades = tape(40_000, 3 * HOUR, seed=5)
    reader = ShardReader(rolled_store(tmp_path_factory.mktemp("profile") / "shard", trades), cache_bytes=2**26)
    try:
        yield reader, trades
    finally:
        reader.close()


@pytest.mark.parametrize("row_size", ["0.05", "0.25", "1", "0.07", "0.01"])
def test_a_profile_of_rows_reads_the_minute_levels_bucketed_into_them(
    stored: tuple[ShardReader, TradeColumns], row_size: str
) -> None:
    """Before: every profile merged the range's per-price levels (each minute's, then the segments'), 15,311
    levels for the bench's hour where 206 bucketed ones hold the same rows; now a `row_size` reads those."""
    reader, trades = stored
    source = ReadsSeen(reader)
    request = volume_profile.VolumeProfileRequest(start=AN_HOUR[0], end=AN_HOUR[1], row_size=row_size, min_trades=1)
    reply = volume_profile.handle(source, SYMBOL, request, NOW)
    assert reply == volume_profile.handle(HeldTrades(trades), SYMBOL, request, NOW)
    step = level_step(parse_units(row_size))
    [(read, levels)] = source.seen
    assert read == f"minute_levels/{step}"
    distinct_prices = len(PriceLevels.of_trades(reader.trades(SYMBOL, AN_HOUR)) or PriceLevels.empty())
    if step > parse_units("0.01"):  # coarser than the tick: fewer levels than the hour has prices
        assert levels < distinct_prices
    vacuums = liquidity_vacuums.LiquidityVacuumsRequest(start=AN_HOUR[0], end=AN_HOUR[1], row_size=row_size)
    assert liquidity_vacuums.handle(ReadsSeen(reader), SYMBOL, vacuums, NOW) == liquidity_vacuums.handle(
        HeldTrades(trades), SYMBOL, vacuums, NOW
    )


@pytest.mark.parametrize(
    ("time_range", "read"),
    [(AN_HOUR, "minute_levels/1"), ((T0 + HOUR, T0 + 3 * HOUR), "minute_levels/1"), ((T0 - HOUR, NOW), "price_levels")],
)
def test_a_profile_without_a_row_size_reads_exact_prices(
    stored: tuple[ShardReader, TradeColumns], time_range: tuple[int, int], read: str
) -> None:
    """Its row size comes from the prices' tick and span, so it reads them exact: over a short range the plain
    minute levels (not merged per price first), over a longer one the per-price levels (whole segments'
    histograms)."""
    reader, trades = stored
    source = ReadsSeen(reader)
    request = volume_profile.VolumeProfileRequest(start=time_range[0], end=time_range[1], min_trades=1)
    held = HeldTrades(trades)
    assert volume_profile.handle(source, SYMBOL, request, NOW) == volume_profile.handle(held, SYMBOL, request, NOW)
    assert [seen for seen, _ in source.seen] == [read]
